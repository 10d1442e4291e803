"""The attempt loop: which instance each attempt of one request goes to, and when to wait.

Shared by generate() and stream(), and driven by the engine (flyllm._engine). It works over a
small ``AttemptEngine`` interface, not over the manager, so that it can be tested with fake
instances and a fake clock. Per attempt it takes the strategy's first choice among the
candidates that are ready now (enabled, not tried yet for this request, circuit not open, not
cooling down, within their rate limits), trying the request's task first and then its fallback
tasks in order. When nothing is ready it waits, never longer than needed: until the earliest
cooling instance is ready or a new round over instances that failed transiently may start
(after a backoff or the server's hint), whichever comes first, and only within the request's
deadline and the retry policy's maximum wait; otherwise it gives up at once, saying when the
earliest instance will be ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from flyllm._display import mask_urls
from flyllm._wire import Timeouts
from flyllm.errors import (
    AllAttemptsFailedError,
    FlyLLMError,
    InvalidRequestError,
    MalformedResponseError,
    NoInstanceAvailableError,
    ProviderConnectionError,
    ProviderError,
)
from flyllm.observe.events import Event, EventKind, Hook
from flyllm.params import OutputFormat, ToolSet
from flyllm.providers._common import clip, redact_secrets, scrub
from flyllm.providers.base import Endpoint
from flyllm.providers.headroom import spent_for
from flyllm.routing.instance import LlmInstance
from flyllm.routing.resilience import PERMANENT_KINDS, RetryPolicy
from flyllm.routing.state import Booking, StateStore
from flyllm.routing.strategies import Strategy
from flyllm.types import ErrorKind, LlmResponse, Message, TaskDefinition, Usage

__all__ = [
    "Attempt",
    "AttemptEngine",
    "AttemptLoop",
    "Plan",
    "Tier",
    "failure_response",
    "unexpected_error",
]

_log = logging.getLogger("flyllm")

LONG_WAIT = 1.0
"""Seconds of waiting past which a request says so at INFO (and in its wait event)."""


@dataclass(slots=True, frozen=True)
class Tier:
    """One task of the request's chain (its own task, then fallbacks) and its instances."""

    task: TaskDefinition | None
    candidates: Sequence[LlmInstance]


@dataclass(slots=True)
class Plan:
    """A request resolved and validated, ready for the attempt loop."""

    messages: tuple[Message, ...]
    tiers: tuple[Tier, ...]
    params: dict[str, Any]
    provider_params: dict[str, dict[str, Any]]
    max_attempts: int
    tokens: int  # estimated prompt + completion tokens, for tokens-per-minute limits
    estimate: tuple[int, int]  # (prompt, completion) tokens, for the lowest_cost strategy
    deadline: float | None = None  # monotonic time by which the request must be answered
    connect_timeout: float | None = None
    read_timeout: float | None = None
    tools: ToolSet | None = None
    output: OutputFormat | None = None
    image_urls: bool = False  # an image by URL: the engine may download it (flyllm._images)


@dataclass(slots=True)
class Attempt:
    """One attempt: the instance, the task it serves it for, the merged parameters to send,
    and its rate-limit booking."""

    instance: LlmInstance
    task: TaskDefinition | None
    level: int
    number: int
    params: dict[str, Any]
    timeouts: Timeouts
    booking: Booking
    started: float


class AttemptEngine(Protocol):
    """What the attempt loop needs from the engine that drives it (flyllm._engine.Engine; a
    fake in the unit tests), so that it never reaches into the manager:

    - ``store`` books instances and records outcomes; ``strategy`` is the one in force now
      (the manager's may be reassigned); ``retry_policy`` paces new rounds and bounds waits;
      ``default_timeouts`` the manager's (connect, read) for instances without their own;
    - ``hooks`` the hooks listening (events are built only when there is one), ``emit`` reports
      an event; ``count_task(task, instance_id, usage)`` counts an attempt (usage None: failed);
    - ``clock`` monotonic seconds, ``sleep``, ``wait_for_capacity(timeout)`` until a running
      request ends, ``notify_capacity`` when one ends; ``params_for`` the merged parameters;
      ``next_request_id`` and ``next_selection`` the id and least-recently-used stamp sources.

    Members called on every attempt are plain attributes where they can be: each layer of
    calls costs on the hot path."""

    @property
    def store(self) -> StateStore: ...
    @property
    def strategy(self) -> Strategy: ...
    @property
    def retry_policy(self) -> RetryPolicy: ...
    @property
    def default_timeouts(self) -> tuple[float, float]: ...
    @property
    def hooks(self) -> Sequence[Hook]: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def count_task(self) -> Callable[[TaskDefinition | None, int, Usage | None], None]: ...
    @property
    def next_request_id(self) -> Callable[[], int]: ...
    @property
    def next_selection(self) -> Callable[[], int]: ...
    async def sleep(self, seconds: float) -> None: ...
    async def wait_for_capacity(self, timeout: float) -> None: ...
    def notify_capacity(self) -> None: ...
    def emit(self, event: Event) -> None: ...
    def params_for(
        self, instance: LlmInstance, task: TaskDefinition | None, plan: Plan
    ) -> dict[str, Any]: ...


class AttemptLoop:
    """Hands out attempts for one request and records their outcomes on the instances."""

    __slots__ = (
        "_current",
        "_done",
        "_e",
        "_out",
        "_plan",
        "_request_id",
        "_rounds",
        "_stream",
        "_told",
        "_tried",
        "_used",
        "_waiting_since",
        "attempts",
        "errors",
    )

    def __init__(self, engine: AttemptEngine, plan: Plan, *, stream: bool = False) -> None:
        self._e = engine
        self._plan = plan
        self._stream = stream
        self._request_id = engine.next_request_id()
        self._tried: set[int] = set()
        self._out: set[int] = set()  # permanent failures: not again for this request
        self._used = [0] * len(plan.tiers)  # attempts per task of the chain
        self._rounds = 0
        self.attempts = 0
        self.errors: list[ProviderError] = []
        self._current: Attempt | None = None  # booked, no outcome recorded yet
        self._done = False  # request_end reported
        self._waiting_since: float | None = None  # this stretch of waiting began
        self._told = False  # the stretch was logged (waits over a second)

    async def next(self) -> Attempt | FlyLLMError:
        """The next attempt, already booked on its instance; or the error to give up with."""
        e, plan = self._e, self._plan
        while True:
            now = e.clock()
            if plan.deadline is not None and now >= plan.deadline:
                return self._give_up("the request's deadline passed")
            ready, levels, ready_at, soonest = self._choose(now)
            if ready:
                store = e.store
                if not store.shared:  # local readiness was just checked: no await needed
                    return self._book(ready[0], levels[0], now)
                index, wait = await store.acquire(ready, plan.tokens)
                if index is not None:
                    return self._book(ready[index], levels[index], e.clock())
                ready_at = min(ready_at, now + wait)  # other processes hold them
                soonest = soonest or ready[0]
            retry_at = self._round_at(now)
            wait_until = min(ready_at, retry_at)
            if wait_until == float("inf") and soonest is None and retry_at == float("inf"):
                return self._give_up("")
            limit = now + e.retry_policy.max_wait
            if plan.deadline is not None:
                limit = min(limit, plan.deadline)
            if wait_until > limit and wait_until != float("inf"):
                return self._give_up(self._earliest_note(now))
            reason = "cooldown"
            if retry_at != float("inf") and retry_at <= ready_at:
                self._rounds += 1
                self._tried = set(self._out)
                reason = "backoff"
            if self._waiting_since is None:
                self._waiting_since = now
            if wait_until == float("inf"):
                # Until a running request ends: unknown, so told once a second has passed.
                seconds = limit - now
                if not self._told and now - self._waiting_since < LONG_WAIT:
                    seconds = min(seconds, self._waiting_since + LONG_WAIT - now)
                    message = None
                else:
                    message = self._tell(now, seconds, "capacity")
                self._event("wait", wait=seconds, reason="capacity", message=message)
                await e.wait_for_capacity(seconds)  # a running request must end first
            elif wait_until > now:
                seconds = wait_until - now
                message = self._tell(now, seconds, reason) if seconds > LONG_WAIT else None
                self._event("wait", wait=seconds, reason=reason, message=message)
                await e.sleep(seconds)

    def _tell(self, now: float, seconds: float, reason: str) -> str | None:
        """Log a long wait at INFO (once per stretch of waiting), so that it never looks like a
        hang; returns the line, which the wait event carries too."""
        if self._told:
            return None
        self._told = True
        if reason == "capacity":
            how = f"until a running request ends (at most {seconds:.1f} s)"
        else:
            until = time.strftime("%H:%M:%S", time.localtime(time.time() + seconds))
            why = "before retrying" if reason == "backoff" else "for a cooling instance"
            how = f"{seconds:.1f} s, until {until}, {why}"
        states = "; ".join(self._states(now)) or "no candidate left"
        message = f"request {self._request_id} waits {how}: {states}"
        _log.info("%s", message)
        return message

    def _states(self, now: float) -> list[str]:
        """Why each candidate of the request cannot take it now."""
        seen: set[int] = set()
        out: list[str] = []
        for tier in self._plan.tiers:
            for c in tier.candidates:
                if c.id in seen or not c.enabled:
                    continue
                seen.add(c.id)
                out.append(
                    f"instance {c.id} ({c.name}) {_why_not_ready(c, now, self._plan.tokens)}"
                )
        return out

    def _choose(self, now: float) -> tuple[list[LlmInstance], list[int], float, LlmInstance | None]:
        """(the instances ready now in preference order: by tier, then by the strategy; their
        tiers; the earliest time an untried one is ready; that one). A local store takes the
        first; a shared one the first that other processes have not filled meanwhile."""
        plan, tried, out = self._plan, self._tried, self._out
        earliest, soonest = float("inf"), None
        chosen: list[LlmInstance] = []
        levels: list[int] = []
        shared = self._e.store.shared
        strategy = self._e.strategy
        for level, tier in enumerate(plan.tiers):
            if self._used[level] >= plan.max_attempts:
                continue
            ready = []
            for c in tier.candidates:
                if not c.enabled or c.id in tried or c.id in out:
                    continue
                at = c.ready_at(now, plan.tokens)
                if at is None:
                    continue  # can never fit its token limit
                if at <= now:
                    ready.append(c)
                elif at < earliest or soonest is None:
                    earliest, soonest = at, c
            if ready:
                ordered = strategy.order(ready, plan.estimate)
                chosen += ordered
                levels += [level] * len(ordered)
                if not shared:
                    break  # the first tier with a ready instance decides
        return chosen, levels, earliest, soonest

    def _round_at(self, now: float) -> float:
        """When a new round over the instances that failed transiently may start."""
        plan, out = self._plan, self._out
        for level, tier in enumerate(plan.tiers):
            if self._used[level] >= plan.max_attempts:
                continue
            if any(c.enabled and c.id in self._tried and c.id not in out for c in tier.candidates):
                hint = self.errors[-1].retry_after if self.errors else None
                return now + self._e.retry_policy.delay(self._rounds + 1, hint)
        return float("inf")

    def _book(self, instance: LlmInstance, level: int, now: float) -> Attempt:
        e, plan = self._e, self._plan
        booking = e.store.begin(instance, now, plan.tokens, e.next_selection())
        self._tried.add(instance.id)
        self._used[level] += 1
        self.attempts += 1
        if plan.deadline is None and plan.connect_timeout is None and plan.read_timeout is None:
            timeouts = instance.default_timeouts
        else:
            connect, read = e.default_timeouts
            timeouts = Timeouts(
                plan.connect_timeout or instance.connect_timeout or connect,
                plan.read_timeout or instance.read_timeout or read,
                None if plan.deadline is None else max(plan.deadline - now, 0.001),
            )
        task = plan.tiers[level].task
        params = e.params_for(instance, task, plan)
        attempt = Attempt(
            instance, task, level, self.attempts, params, timeouts, booking, time.perf_counter()
        )
        if e.hooks:
            self._attempt_event("attempt_start", attempt, messages=plan.messages)
        self._current = attempt
        self._waiting_since, self._told = None, False
        return attempt

    def _event(self, kind: EventKind, **fields: Any) -> None:
        e = self._e
        if e.hooks:
            task = self._plan.tiers[0].task
            e.emit(
                Event(
                    kind=kind,
                    request_id=self._request_id,
                    time=time.time(),
                    task=task.name if task else None,
                    stream=self._stream,
                    **fields,
                )
            )

    def _attempt_event(self, kind: EventKind, attempt: Attempt, **fields: Any) -> None:
        instance = attempt.instance
        self._e.emit(
            Event(
                kind=kind,
                request_id=self._request_id,
                time=time.time(),
                task=attempt.task.name if attempt.task else None,
                stream=self._stream,
                attempt=attempt.number,
                instance_id=instance.id,
                instance_name=instance.name,
                provider=instance.provider_type.value,
                model=instance.model,
                params=attempt.params,
                **fields,
            )
        )

    def finish(
        self, success: bool, error_kind: str | None, latency: float, reason: str | None = None
    ) -> None:
        """Report the request's end to the hooks, once."""
        if self._done:
            return
        self._done = True
        if self._e.hooks:
            self._event(
                "request_end", success=success, error_kind=error_kind, latency=latency,
                attempt=self.attempts, reason=reason,
            )  # fmt: skip

    def cancelled(self, start: float) -> None:
        """The caller left (a cancelled task, a stream closed early): free the attempt in
        flight and report the request's end with reason "cancelled"."""
        if self._current is not None:
            self.abandoned(self._current)
        self.finish(False, None, time.perf_counter() - start, reason="cancelled")

    def crashed(self, exc: Exception) -> FlyLLMError:
        """An exception no layer classified: free the attempt in flight; the typed error to
        fail the request with (a FlyLLMError as it is)."""
        current = self._current
        if current is not None:
            self.abandoned(current)
        if isinstance(exc, FlyLLMError):
            return exc
        return unexpected_error(exc, "request", None, current.instance if current else None)

    def succeeded(
        self, attempt: Attempt, usage: Usage, headers: Mapping[str, str], content: str = ""
    ) -> float:
        """Record a success on the instance; returns the attempt's latency in seconds."""
        instance = attempt.instance
        latency = time.perf_counter() - attempt.started
        wait = spent_for(headers, self._plan.tokens, time.time)
        e = self._e
        hold_until = e.clock() + wait if wait else None
        self._current = None
        e.store.succeeded(attempt.booking, latency, usage, hold_until)
        e.count_task(attempt.task, instance.id, usage)
        e.notify_capacity()
        if e.hooks:
            self._attempt_event(
                "attempt_end", attempt, success=True, status=200, latency=latency, usage=usage,
                content=content, health=instance.breaker.state,
            )  # fmt: skip
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "attempt %d instance=%d provider=%s model=%s status=ok latency=%.3fs",
                attempt.number, instance.id, instance.provider_type.value, instance.model,
                latency,
            )  # fmt: skip
        return latency

    def failed(self, attempt: Attempt, err: ProviderError, *, may_go_on: bool = True) -> bool:
        """Record a failed attempt; True to go on, False when the error is the request's own
        (and no fallback task can take it) or ``may_go_on`` is False (a stream that already
        gave text)."""
        instance = attempt.instance
        scrub(err, instance.endpoint)  # last net: no key, one bounded line, whatever raised it
        err.instance_id = instance.id
        err.provider = err.provider or instance.provider_type.value
        e = self._e
        self._current = None
        e.store.failed(attempt.booking, err.kind, err.retry_after)
        e.count_task(attempt.task, instance.id, None)
        e.notify_capacity()
        self.errors.append(err)
        if e.hooks:
            self._attempt_event(
                "attempt_end", attempt, success=False, error_kind=err.kind.value,
                status=err.status, latency=time.perf_counter() - attempt.started,
                health=instance.breaker.state,
            )  # fmt: skip
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "attempt %d instance=%d provider=%s model=%s status=%s kind=%s latency=%.3fs",
                attempt.number, instance.id, err.provider, instance.model, err.status,
                err.kind.value, time.perf_counter() - attempt.started,
            )  # fmt: skip
        if err.kind is ErrorKind.UNSUPPORTED:  # learned: skipped by requests that need it
            instance.lose_capability(getattr(err, "feature", ""))
        if not may_go_on:
            return False
        if not err.retryable:
            return self._fall_back(attempt, err)
        if err.kind in PERMANENT_KINDS or err.kind is ErrorKind.UNSUPPORTED:
            self._out.add(instance.id)
        _log.warning("failing over after attempt %d: %s", attempt.number, err)
        return True

    def abandoned(self, attempt: Attempt) -> None:
        """The caller left during the attempt (cancelled, or a stream closed early), or it
        never went out. Once per attempt: an attempt already recorded is left alone."""
        if attempt is not self._current:
            return
        instance = attempt.instance
        e = self._e
        self._current = None
        e.store.abandoned(attempt.booking)
        e.notify_capacity()
        if e.hooks:
            self._attempt_event(
                "attempt_end", attempt, success=False, reason="abandoned",
                latency=time.perf_counter() - attempt.started, health=instance.breaker.state,
            )  # fmt: skip

    def _fall_back(self, attempt: Attempt, err: ProviderError) -> bool:
        """A request error ends the request, unless a fallback task can take it: a too-long
        prompt always may, a content-filter refusal when the task allows it."""
        task = attempt.task
        allowed = err.kind is ErrorKind.CONTEXT_LENGTH or (
            err.kind is ErrorKind.CONTENT_FILTER
            and task is not None
            and task.fallback_on_content_filter
        )
        if not allowed or attempt.level + 1 >= len(self._plan.tiers):
            return False
        for level in range(attempt.level + 1):
            self._used[level] = self._plan.max_attempts  # this task cannot take it
        fallback = self._plan.tiers[attempt.level + 1].task
        _log.warning("falling back to task %r after: %s", fallback and fallback.name, err)
        return True

    def _earliest_note(self, now: float) -> str:
        """Which instance is ready first, and when, for an error message."""
        best: tuple[float, LlmInstance] | None = None
        for tier in self._plan.tiers:
            for c in tier.candidates:
                if c.enabled and c.id not in self._out:
                    at = c.ready_at(now, self._plan.tokens)
                    if at is not None and (best is None or at < best[0]):
                        best = (at, c)
        if best is None or best[0] == float("inf"):
            return "every candidate is busy or cooling down"
        return _ready_note(best[1], best[0] - now)

    def failed_response(self, err: FlyLLMError, start: float) -> LlmResponse:
        """The request's failed LlmResponse (reported to the hooks)."""
        latency = time.perf_counter() - start
        self.finish(False, err.kind.value if err.kind else None, latency)
        return failure_response(err, self.attempts, latency)

    def _give_up(self, why: str) -> FlyLLMError:
        if self.errors:
            return AllAttemptsFailedError(self.errors, note=why)
        return NoInstanceAvailableError(why or "no enabled instance left for this request")


def _why_not_ready(instance: LlmInstance, now: float, tokens: int) -> str:
    breaker, limiter = instance.breaker, instance.limiter
    left = breaker.cooldown_left(now)
    if left > 0:
        state = "cooling" if breaker.state == "closed" else f"circuit {breaker.state}"
        return f"{state} ({breaker.reason or 'backoff'}) for {left:.1f} s"
    if breaker.state == "half_open" and breaker.probing:
        return "circuit half-open, its one probe in flight"
    at = limiter.ready_at(now, tokens, instance.stats.in_flight)
    if at is None:
        return f"cannot take a request of ~{tokens} tokens (tpm {limiter.tpm})"
    if at == float("inf"):
        return f"at its concurrency limit ({limiter.max_concurrent} in flight)"
    if at > now:
        return f"at its rate limit for {at - now:.1f} s"
    return "failed this request, ready for the next round"


def _ready_note(instance: LlmInstance, seconds: float) -> str:
    return (
        f"every candidate is cooling down or at its rate limit; the earliest, instance "
        f"{instance.id} ({instance.name}), is ready in {seconds:.1f} s, past what this request "
        f"may wait"
    )


def unexpected_error(
    exc: BaseException,
    phase: Literal["build", "send", "read", "request"],
    status: int | None = None,
    instance: LlmInstance | None = None,
    *,
    endpoint: Endpoint | None = None,
) -> FlyLLMError:
    """An exception that escaped every classification below (a RecursionError on deeply nested
    JSON, a TypeError in a provider module...) as the typed error its phase means, with the
    cause chained: building the request -> InvalidRequestError (the request fails); sending it
    -> ProviderConnectionError and reading the answer -> MalformedResponseError (both fail
    over); anywhere else -> InvalidRequestError naming it a bug to report. The message quotes
    the exception without the secrets of the ``instance`` (or ``endpoint``) it came from, with
    every URL in it masked, on one bounded line."""
    endpoint = instance.endpoint if instance is not None else endpoint
    detail = f"{type(exc).__name__}: {exc}"
    if endpoint is not None:
        detail = redact_secrets(detail, endpoint.secrets)
    detail = clip(mask_urls(detail), 200)
    err: FlyLLMError
    if phase == "build":
        err = InvalidRequestError(f"the request could not be built: {detail}")
    elif phase == "send":
        err = ProviderConnectionError(f"the request could not be sent: {detail}", status=status)
    elif phase == "read":
        err = MalformedResponseError(f"the answer could not be read: {detail}", status=status)
    else:
        err = InvalidRequestError(
            f"flyllm could not handle this request: {detail} (a bug in flyllm, or in a "
            f"strategy, state store or hook plugged into it; please report it)"
        )
    err.__cause__ = exc
    return err


def failure_response(exc: FlyLLMError, attempts: int, latency: float) -> LlmResponse:
    """The failed LlmResponse for an error: readable ``error``, ``error_kind``, the exception."""
    kind = exc.kind.value if exc.kind is not None else None
    instance_id = exc.instance_id if isinstance(exc, ProviderError) else None
    provider = exc.provider if isinstance(exc, ProviderError) else None
    return LlmResponse(
        content=getattr(exc, "partial_content", None) or "",
        success=False,
        provider=provider,
        instance_id=instance_id,
        latency=latency,
        attempts=attempts,
        error=str(exc),
        error_kind=kind,
        exception=exc,
    )
