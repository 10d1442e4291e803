"""LlmManager: task routing, load balancing, failover, batches and usage over many instances.

One request flows: resolve its task and messages (bad input fails here, before anything is
sent) -> candidates = enabled instances serving the task -> the strategy orders them -> the
provider builds the HTTP request -> the transport sends it -> the provider parses the answer or
classifies the failure -> the failure's kind decides: give up (the request itself is wrong),
fail over to the next candidate, or, when every candidate has failed, wait and start a new
round, within ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from flyllm.errors import (
    AllAttemptsFailedError,
    ConfigurationError,
    FlyLLMError,
    InvalidRequestError,
    NoInstanceAvailableError,
    ProviderError,
)
from flyllm.instance import LlmInstance
from flyllm.params import merge_params, validate_params, validate_provider_params
from flyllm.providers import get_provider, requires_key, resolve_provider_type
from flyllm.providers.base import Completion, Endpoint, HttpRequest
from flyllm.resilience import PERMANENT_KINDS, RetryPolicy
from flyllm.strategies import Strategy, make_strategy
from flyllm.streaming import LlmStream
from flyllm.transport import Timeouts, Transport
from flyllm.types import GenerationRequest, LlmResponse, Message, ProviderType, TaskDefinition
from flyllm.usage import InstanceUsage, format_usage_table

__all__ = ["LlmManager"]

_log = logging.getLogger("flyllm")

BASE_URL_ENV = {
    ProviderType.OPENAI: "OPENAI_BASE_URL",
    ProviderType.ANTHROPIC: "ANTHROPIC_BASE_URL",
    ProviderType.GOOGLE: "GOOGLE_GEMINI_BASE_URL",
    ProviderType.MISTRAL: "MISTRAL_BASE_URL",
}
"""Environment variables that move a provider's default base URL, as the official SDKs read
them (OPENAI_BASE_URL, ANTHROPIC_BASE_URL, GOOGLE_GEMINI_BASE_URL; MISTRAL_BASE_URL is ours)."""
_ROLES = frozenset({"system", "user", "assistant"})
DEFAULT_MAX_CONCURRENCY = 64


@dataclass(slots=True)
class _Plan:
    """A request resolved and validated, ready for the attempt loop."""

    messages: tuple[Message, ...]
    task: TaskDefinition | None
    params: dict[str, Any]
    provider_params: dict[str, dict[str, Any]]
    max_attempts: int
    candidates: Sequence[LlmInstance]


class LlmManager:
    """Routes generation requests over provider instances with failover.

    ``strategy`` is a name from ``flyllm.strategies.STRATEGIES`` or a Strategy object;
    ``max_attempts`` bounds the attempts per request (overridable per request); ``timeout`` and
    ``connect_timeout`` bound each attempt in seconds; ``max_concurrency`` is batch_generate's
    default bound. Use ``async with LlmManager(...) as manager`` or call ``aclose()``.
    """

    def __init__(
        self,
        strategy: str | Strategy = "least_recently_used",
        max_attempts: int = 3,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(
                f"max_attempts must be a positive integer, got {max_attempts!r}"
            )
        self.strategy = make_strategy(strategy)
        self.max_attempts = max_attempts
        self.max_concurrency = max_concurrency
        self.retry_policy = retry_policy or RetryPolicy()
        self._transport = Transport(Timeouts(total=timeout, connect=connect_timeout, read=timeout))
        self._instances: dict[int, LlmInstance] = {}
        self._tasks: dict[str, TaskDefinition] = {}
        self._by_task: dict[str, list[LlmInstance]] = {}
        self._all: list[LlmInstance] = []
        self._next_id = 0
        self._selection_seq = 0

    # -- set-up ------------------------------------------------------------------------------

    def define_task(self, task: TaskDefinition) -> None:
        """Register a task. The same name again with other parameters is a ConfigurationError."""
        if not isinstance(task, TaskDefinition):
            raise ConfigurationError(f"expected a TaskDefinition, got {task!r}")
        if not task.name or not isinstance(task.name, str):
            raise ConfigurationError("a task needs a non-empty name")
        known = self._tasks.get(task.name)
        if known is not None:
            if known != task:
                raise ConfigurationError(
                    f"task {task.name!r} is already defined with other parameters "
                    f"({dict(known.parameters)!r} vs {dict(task.parameters)!r})"
                )
            return
        try:
            params = validate_params(task.parameters)
            provider_params = _provider_params(task.provider_params)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"task {task.name!r}: {exc}") from None
        self._tasks[task.name] = TaskDefinition(task.name, params, provider_params)
        self._by_task.setdefault(task.name, [])

    def add_provider(
        self,
        provider: ProviderType | str,
        api_key: str,
        model: str,
        tasks: Iterable[TaskDefinition | str] = (),
        enabled: bool = True,
        *,
        base_url: str | None = None,
        name: str | None = None,
        weight: float = 1.0,
        parameters: Mapping[str, Any] | None = None,
        provider_params: Mapping[str, Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        api_version: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> int:
        """Add an instance and return its id (0, 1, 2... in order of adding).

        ``tasks`` are TaskDefinitions (registered here) or names of tasks already defined.
        ``base_url`` follows the official SDK's convention for the provider; ``headers`` are
        sent with every request of this instance; ``api_version`` picks the provider's API
        version (Anthropic "2023-06-01" by default, Google "v1" by default); ``options`` carry
        provider-specific addressing.
        """
        ptype = resolve_provider_type(provider)
        impl = get_provider(ptype)
        if not isinstance(model, str) or not model:
            raise ConfigurationError("add_provider needs a model name")
        if not isinstance(api_key, str):
            raise ConfigurationError(f"the api_key for {ptype.value} {model} must be a string")
        if not api_key and requires_key(ptype):
            raise ConfigurationError(f"the api_key for {ptype.value} {model} is empty")
        env_name = BASE_URL_ENV.get(ptype)
        url = base_url or (os.environ.get(env_name) if env_name else None) or impl.default_base_url
        if not url:
            raise ConfigurationError(f"{ptype.value} instances need a base_url")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ConfigurationError(f"weight must be a number >= 0, got {weight!r}")
        task_names = self._register_tasks(tasks)
        instance_id = self._next_id
        label = name or f"{ptype.value}/{model}#{instance_id}"
        try:
            params = validate_params(parameters)
            pparams = _provider_params(provider_params)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"instance {label!r}: {exc}") from None
        endpoint = Endpoint(
            model, api_key, url.rstrip("/"), api_version, dict(headers or {}), dict(options or {})
        )
        instance = LlmInstance(
            instance_id, label, ptype, impl, endpoint, frozenset(task_names), bool(enabled),
            float(weight), params, pparams,
        )  # fmt: skip
        self._next_id += 1
        self._instances[instance_id] = instance
        self._all.append(instance)
        for task_name in task_names:
            self._by_task[task_name].append(instance)
        return instance_id

    def _register_tasks(self, tasks: Iterable[TaskDefinition | str]) -> list[str]:
        if isinstance(tasks, str | TaskDefinition):
            tasks = [tasks]
        names: list[str] = []
        for task in tasks:
            if isinstance(task, TaskDefinition):
                self.define_task(task)
                names.append(task.name)
            elif isinstance(task, str) and task in self._tasks:
                names.append(task)
            else:
                raise ConfigurationError(
                    f"unknown task {task!r}: pass a TaskDefinition or define_task() it first"
                )
        return names

    def _instance(self, instance_id: int) -> LlmInstance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise ConfigurationError(f"no instance with id {instance_id}") from None

    def enable_instance(self, instance_id: int) -> None:
        """Let requests go to this instance again."""
        self._instance(instance_id).enabled = True

    def disable_instance(self, instance_id: int) -> None:
        """Send no new request to this instance (requests in flight finish)."""
        self._instance(instance_id).enabled = False

    def remove_instance(self, instance_id: int) -> None:
        """Forget this instance; its id is never reused. Its usage leaves token_usage()."""
        instance = self._instances.pop(instance_id, None)
        if instance is None:
            raise ConfigurationError(f"no instance with id {instance_id}")
        instance.enabled = False
        self._all = [i for i in self._all if i is not instance]
        for task_name in instance.tasks:
            self._by_task[task_name] = [i for i in self._by_task[task_name] if i is not instance]

    @property
    def instances(self) -> tuple[LlmInstance, ...]:
        """The instances, in order of adding."""
        return tuple(self._all)

    @property
    def tasks(self) -> Mapping[str, TaskDefinition]:
        """The defined tasks by name."""
        return dict(self._tasks)

    # -- generation --------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> LlmResponse:
        """Answer one request. Raises on failure: InvalidRequestError or
        NoInstanceAvailableError before sending; the request's own error (BadRequestError,
        ContextLengthError, ContentFilterError...) as is; AllAttemptsFailedError when every
        allowed attempt failed."""
        response = await self._answer(request)
        if not response.success:
            assert response.exception is not None
            raise response.exception
        return response

    async def generate_sequentially(
        self, requests: Iterable[GenerationRequest]
    ) -> list[LlmResponse]:
        """Answer the requests one after another; one LlmResponse each, in order. Never raises
        for one request's failure."""
        return [await self._answer(r) for r in requests]

    async def batch_generate(
        self, requests: Iterable[GenerationRequest], max_concurrency: int | None = None
    ) -> list[LlmResponse]:
        """Answer the requests in parallel, at most ``max_concurrency`` at once; one LlmResponse
        each, in input order. Never raises for one request's failure. Memory stays bounded by
        the concurrency, not the batch size: workers pull the next request as they finish."""
        batch = list(requests)
        limit = self.max_concurrency if max_concurrency is None else max_concurrency
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidRequestError(f"max_concurrency must be a positive integer, got {limit!r}")
        results: list[LlmResponse | None] = [None] * len(batch)
        indices = iter(range(len(batch)))

        async def worker() -> None:
            for i in indices:
                results[i] = await self._answer(batch[i])

        workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(batch)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return [r for r in results if r is not None]

    def stream(self, request: GenerationRequest) -> LlmStream:
        """Stream one request: ``async with manager.stream(req) as stream: async for chunk in
        stream``. Bad input raises here, before anything is sent; provider errors raise while
        iterating (failing over first when no text has reached the caller yet)."""
        return LlmStream(self, self._plan(request))

    async def _answer(self, request: GenerationRequest) -> LlmResponse:
        """The response for one request, failed or not; never raises a FlyLLMError."""
        start = time.perf_counter()
        try:
            plan = self._plan(request)
        except FlyLLMError as exc:
            return _failed(exc, 0, time.perf_counter() - start)
        return await self._run(plan, start)

    def _plan(self, request: GenerationRequest) -> _Plan:
        if not isinstance(request, GenerationRequest):
            raise InvalidRequestError(f"expected a GenerationRequest, got {type(request).__name__}")
        messages = _messages(request)
        task: TaskDefinition | None = None
        if request.task is not None:
            task = self._tasks.get(request.task)
            if task is None:
                known = ", ".join(sorted(self._tasks)) or "none"
                raise NoInstanceAvailableError(
                    f"unknown task {request.task!r}; defined tasks: {known}"
                )
            candidates: Sequence[LlmInstance] = self._by_task[request.task]
        else:
            candidates = self._all
        if not any(c.enabled for c in candidates):
            what = f"task {request.task!r}" if request.task else "requests without a task"
            raise NoInstanceAvailableError(f"no enabled instance serves {what}")
        max_attempts = self.max_attempts if request.max_attempts is None else request.max_attempts
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidRequestError(
                f"max_attempts must be a positive integer, got {max_attempts!r}"
            )
        try:
            params = validate_params(request.params)
            provider_params = _provider_params(request.provider_params)
        except (TypeError, ValueError, ConfigurationError) as exc:
            raise InvalidRequestError(f"bad parameter: {exc}") from None
        return _Plan(messages, task, params, provider_params, max_attempts, candidates)

    async def _run(self, plan: _Plan, start: float) -> LlmResponse:
        loop = _AttemptLoop(self, plan)
        while (instance := await loop.next_instance()) is not None:
            try:
                completion = await self._attempt(instance, plan)
            except ProviderError as err:
                if not loop.failed(err):
                    return _failed(err, loop.attempts, time.perf_counter() - start)
                continue
            return LlmResponse(
                content=completion.content,
                success=True,
                provider=instance.provider_type.value,
                model=completion.model or instance.endpoint.model,
                instance_id=instance.id,
                usage=completion.usage,
                finish_reason=completion.finish_reason,
                raw_finish_reason=completion.raw_finish_reason,
                latency=time.perf_counter() - start,
                attempts=loop.attempts,
            )
        return _failed(loop.exhausted(), loop.attempts, time.perf_counter() - start)

    def _build(self, instance: LlmInstance, plan: _Plan, *, stream: bool = False) -> HttpRequest:
        """The instance's HTTP request for the plan, parameters merged for its provider."""
        ptype = instance.provider_type.value
        task = plan.task
        params = merge_params(
            instance.parameters,
            task.parameters if task else None,
            plan.params,
            instance.provider_params.get(ptype),
            task.provider_params.get(ptype) if task else None,
            plan.provider_params.get(ptype),
        )
        http_request = instance.provider.build(
            instance.endpoint, plan.messages, params, stream=stream
        )
        if http_request.notes:
            instance.note_once(http_request.notes)
        return http_request

    async def _attempt(self, instance: LlmInstance, plan: _Plan) -> Completion:
        """One attempt on one instance: build, send, parse, record."""
        http_request = self._build(instance, plan)
        stats = instance.stats
        stats.in_flight += 1
        t0 = time.perf_counter()
        try:
            response = await self._transport.send(http_request)
            completion = instance.provider.parse(response)
        except ProviderError as err:
            record_failure(instance, err, time.perf_counter() - t0)
            raise
        finally:
            stats.in_flight -= 1
        latency = time.perf_counter() - t0
        stats.record_success(latency, completion.usage)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "attempt instance=%d provider=%s model=%s status=%d latency=%.3fs",
                instance.id, instance.provider_type.value, instance.model, response.status, latency,
            )  # fmt: skip
        return completion

    # -- usage and lifecycle -----------------------------------------------------------------

    def token_usage(self) -> list[InstanceUsage]:
        """Each instance's token totals, requests and failures, in order of adding."""
        return [
            InstanceUsage(
                id=i.id,
                name=i.name,
                provider=i.provider_type.value,
                model=i.model,
                prompt_tokens=i.stats.prompt_tokens,
                completion_tokens=i.stats.completion_tokens,
                total_tokens=i.stats.total_tokens,
                requests=i.stats.requests,
                failures=i.stats.failures,
                cached_tokens=i.stats.cached_tokens,
                average_latency=i.stats.latency_avg,
            )
            for i in self._all
        ]

    def print_token_usage(self, file: TextIO | None = None) -> None:
        """Print the usage table (``--- Token Usage Statistics ---``)."""
        print(format_usage_table(self.token_usage()), file=file or sys.stdout)

    async def aclose(self) -> None:
        """Close the connection pool. The manager can be used again afterwards (it reopens)."""
        await self._transport.aclose()

    async def __aenter__(self) -> LlmManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _AttemptLoop:
    """The order of attempts for one request, shared by generate and stream.

    Each attempt takes the strategy's first choice among the candidates not yet tried; when
    every candidate has failed once and attempts remain, a new round starts over those that may
    heal, after the retry policy's wait. ``failed`` says whether to go on after an error.
    """

    __slots__ = ("_manager", "_out", "_plan", "_rounds", "_tried", "attempts", "errors")

    def __init__(self, manager: LlmManager, plan: _Plan) -> None:
        self._manager = manager
        self._plan = plan
        self._tried: set[int] = set()
        self._out: set[int] = set()
        self._rounds = 0
        self.attempts = 0
        self.errors: list[ProviderError] = []

    async def next_instance(self) -> LlmInstance | None:
        """The instance for the next attempt, stamped as selected; None when none is left."""
        plan = self._plan
        if self.attempts >= plan.max_attempts:
            return None
        pool = [c for c in plan.candidates if c.enabled and c.id not in self._tried]
        if not pool:
            # Every candidate failed once: a new round over those that may heal, after a
            # backoff (or the server's hint), instead of hammering them at once.
            pool = [c for c in plan.candidates if c.enabled and c.id not in self._out]
            if not pool:
                return None
            self._rounds += 1
            self._tried = set(self._out)
            hint = self.errors[-1].retry_after if self.errors else None
            await self._manager.retry_policy.wait(self._rounds, hint)
        manager = self._manager
        instance = manager.strategy.order(pool)[0]
        manager._selection_seq += 1
        instance.stats.last_selected = manager._selection_seq
        self._tried.add(instance.id)
        self.attempts += 1
        return instance

    def failed(self, err: ProviderError) -> bool:
        """Record a failed attempt; True to go on, False when the error is the request's own."""
        self.errors.append(err)
        if not err.retryable:
            return False
        if err.kind in PERMANENT_KINDS and err.instance_id is not None:
            self._out.add(err.instance_id)
        if self.attempts < self._plan.max_attempts:
            _log.warning("failing over after attempt %d: %s", self.attempts, err)
        return True

    def exhausted(self) -> FlyLLMError:
        """The error when attempts or candidates ran out."""
        if not self.errors:
            return NoInstanceAvailableError("no enabled instance left for this request")
        return AllAttemptsFailedError(self.errors)


def record_failure(instance: LlmInstance, err: ProviderError, latency: float) -> None:
    """Stamp the error with its instance, count it, log the attempt at debug level."""
    err.instance_id = instance.id
    err.provider = err.provider or instance.provider_type.value
    instance.stats.record_failure()
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug(
            "attempt instance=%d provider=%s model=%s status=%s kind=%s latency=%.3fs",
            instance.id, err.provider, instance.model, err.status, err.kind.value, latency,
        )  # fmt: skip


def _messages(request: GenerationRequest) -> tuple[Message, ...]:
    """The conversation to send: system prompt, messages, then the prompt as a user turn."""
    out: list[Message] = []
    if request.system is not None:
        if not isinstance(request.system, str):
            raise InvalidRequestError("system must be a string")
        out.append(Message("system", request.system))
    if request.messages is not None:
        if isinstance(request.messages, str | bytes) or not isinstance(request.messages, Sequence):
            raise InvalidRequestError("messages must be a sequence of Message")
        for i, m in enumerate(request.messages):
            if not isinstance(m, Message):
                raise InvalidRequestError(f"messages[{i}] must be a Message, got {m!r}")
            if m.role not in _ROLES:
                raise InvalidRequestError(
                    f"messages[{i}] has role {m.role!r}; valid roles: system, user, assistant"
                )
            if not isinstance(m.content, str):
                raise InvalidRequestError(f"messages[{i}].content must be a string")
            out.append(m)
    if request.prompt is not None:
        if not isinstance(request.prompt, str):
            raise InvalidRequestError(
                f"prompt must be a string, got {type(request.prompt).__name__}"
            )
        out.append(Message("user", request.prompt))
    if not any(m.role != "system" for m in out):
        if request.messages is not None and request.prompt is None:
            raise InvalidRequestError("the conversation is empty: messages has no user turn")
        raise InvalidRequestError("the request has neither a prompt nor messages")
    return tuple(out)


def _provider_params(
    provider_params: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """Validated provider_params keyed by canonical provider name ("gemini" -> "google")."""
    checked = validate_provider_params(provider_params)
    return {resolve_provider_type(name).value: params for name, params in checked.items()}


def _failed(exc: FlyLLMError, attempts: int, latency: float) -> LlmResponse:
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
