"""The engine: the one driver of a request's attempts, streamed or not.

``Engine.run`` drives every request: the attempt loop (flyllm.routing.attempts) picks and books an
instance, the provider builds the HTTP request, the transport sends it (or opens the stream),
the provider parses the answer or classifies the failure, and the outcome is recorded on the
instance, counted, reported to the hooks and frees capacity. The order is the same for both
kinds of request:

    per attempt   success (answer read whole, connection released) -> succeeded
                  a ProviderError -> failed (fail over, or end the request)
                  another FlyLLMError (e.g. a request a provider cannot build) -> abandoned
    per request   finish once: success, failed response, crash (typed), or cancelled

A stream differs only in how the answer is consumed: its chunks are yielded as they come, and
once text has reached the caller a failure ends the request (no failover, no spliced text),
carrying the partial content. ``generate()`` drives the same generator, which then yields
nothing.

The generator never refers to the LlmStream that iterates it, so an abandoned stream is closed
by reference counting (see flyllm.streaming), not by a garbage collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any, Literal, Protocol

from flyllm._images import ImageFetcher
from flyllm._output import read_output
from flyllm._transport import Transport
from flyllm._wire import decoder_for
from flyllm.errors import (
    FlyLLMError,
    ProviderError,
    StreamInterruptedError,
    StructuredOutputError,
)
from flyllm.observe.events import Event, Hook
from flyllm.params import merge_params
from flyllm.providers.base import NON_SSE_LINE, Completion, Delta, HttpRequest
from flyllm.routing.attempts import Attempt, AttemptLoop, Plan, unexpected_error
from flyllm.routing.instance import LlmInstance
from flyllm.routing.resilience import RetryPolicy
from flyllm.routing.state import StateStore
from flyllm.routing.strategies import Strategy, make_strategy
from flyllm.types import ErrorKind, LlmResponse, StreamChunk, TaskDefinition, Usage

__all__ = ["Engine", "Outcome", "Settings"]

_log = logging.getLogger("flyllm")


class Settings(Protocol):
    """The manager's settings the engine reads on every request (users may change them at
    any time): LlmManager satisfies it."""

    strategy: Strategy
    retry_policy: RetryPolicy
    connect_timeout: float
    read_timeout: float
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    max_image_bytes: int


class Outcome:
    """A request's final ``response``, shared by its caller (an LlmStream, or ``complete``)
    and the driving generator; ``None`` until the request has an answer or has failed. While
    it runs, the attempt's parsed ``completion`` and response ``headers`` land here too."""

    __slots__ = ("completion", "headers", "response")

    def __init__(self) -> None:
        self.response: LlmResponse | None = None
        self.completion: Completion | None = None
        self.headers: Mapping[str, str] = {}


_CountTask = Callable[[TaskDefinition | None, int, Usage | None], None]


class Engine:
    """Drives attempts for one manager: the ``AttemptEngine`` its attempt loops work over,
    and the one driver (``run``) of non-streamed and streamed requests."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        transport: Transport,
        hooks: list[Hook],
        count_task: _CountTask,
    ) -> None:
        self._settings = settings
        self.store = store
        self.transport = transport
        self.hooks = hooks  # the manager's list: hooks added later are seen
        self.count_task = count_task
        # Bound once, like the store's: the clock of a manager's whole life.
        self.clock = settings.clock
        self.next_request_id = itertools.count(1).__next__
        self.next_selection = itertools.count(1).__next__
        self._broken_hooks: set[int] = set()
        self._capacity: asyncio.Event | None = None  # set when a running attempt ends
        self._seen: object = None  # the manager's strategy object last seen, and its form
        self._strategy: Strategy | None = None

    # -- the AttemptEngine interface --------------------------------------------------------

    @property
    def strategy(self) -> Strategy:
        """The manager's strategy now, in the one signature (re-read when reassigned)."""
        current = self._settings.strategy
        if current is not self._seen or self._strategy is None:
            self._strategy = make_strategy(current)
            self._seen = current
        return self._strategy

    @property
    def retry_policy(self) -> RetryPolicy:
        """The manager's retry policy."""
        return self._settings.retry_policy

    @property
    def default_timeouts(self) -> tuple[float, float]:
        """The manager's (connect, read) timeouts."""
        return self._settings.connect_timeout, self._settings.read_timeout

    async def sleep(self, seconds: float) -> None:
        """The manager's sleep (injectable, so tests of waits run instantly)."""
        await self._settings.sleep(seconds)

    def emit(self, event: Event) -> None:
        """Call every hook; one that raises is logged once and never breaks a request."""
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                if id(hook) not in self._broken_hooks:
                    self._broken_hooks.add(id(hook))
                    _log.exception("hook %r raised; it keeps being called", hook)

    async def wait_for_capacity(self, timeout: float) -> None:
        """Wait until a running attempt ends (or ``timeout`` seconds pass)."""
        if self._capacity is None:
            self._capacity = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._capacity.wait(), max(timeout, 0.0))

    def notify_capacity(self) -> None:
        """Wake the requests waiting for capacity."""
        event = self._capacity
        if event is not None:
            self._capacity = None
            event.set()

    def params_for(
        self, instance: LlmInstance, task: TaskDefinition | None, plan: Plan
    ) -> dict[str, Any]:
        """The parameters for this instance: instance < task < request, then the same layers'
        provider_params for its provider. Cached per task when the request brings none (the
        providers only read them)."""
        cacheable = not plan.params and not plan.provider_params
        if cacheable:
            cached = instance.param_cache.get(task.name if task else None)
            if cached is not None:
                return cached
        ptype = instance.provider_type.value
        merged = merge_params(
            instance.parameters,
            task.parameters if task else None,
            plan.params,
            instance.provider_params.get(ptype),
            task.provider_params.get(ptype) if task else None,
            plan.provider_params.get(ptype),
        )
        if cacheable:
            instance.param_cache[task.name if task else None] = merged
        return merged

    # -- the driver ---------------------------------------------------------------------------

    async def complete(self, plan: Plan, start: float) -> LlmResponse:
        """The request's response, failed or not; raises only when the caller leaves (the
        request then ends as "cancelled", its attempt in flight freed)."""
        outcome = Outcome()
        try:
            await self.run(plan, outcome, stream=False, start=start).__anext__()
        except (StopAsyncIteration, FlyLLMError):  # it yields nothing; its end is recorded
            response = outcome.response
        else:
            response = None
        assert response is not None
        return response

    async def run(
        self, plan: Plan, outcome: Outcome, *, stream: bool, start: float | None = None
    ) -> AsyncGenerator[StreamChunk, None]:
        """THE driver of one request: attempt after attempt until one succeeds or the loop
        gives up, yielding the chunks (none unless ``stream``). Each attempt's outcome is
        recorded once, in one order; the request's end (success, error or the caller leaving)
        is recorded on ``outcome`` and reported once; a failure then raises a FlyLLMError."""
        if start is None:
            start = time.perf_counter()
        loop = AttemptLoop(self, plan, stream=stream)
        images = (
            ImageFetcher(self.transport, self._settings.max_image_bytes)
            if plan.image_urls
            else None
        )
        try:
            while not isinstance(attempt := await loop.next(), FlyLLMError):
                parts: list[str] = []  # the text that reached the caller
                try:
                    if images is None:  # the common case: no image by URL
                        http_request = self._build(attempt, plan, stream=stream)
                    else:
                        sent = await _with_images(images, plan, attempt)
                        http_request = self._build(attempt, sent, stream=stream)
                    if stream:  # closed with this generator, not at a GC
                        chunks = self._read_stream(attempt, http_request, outcome, parts)
                        async with aclosing(chunks):
                            async for chunk in chunks:
                                yield chunk
                    else:
                        await self._send(attempt, http_request, outcome)
                    completion = outcome.completion
                    assert completion is not None
                    # A step that calls offered tools is not the answer yet: not checked.
                    stepped = plan.tools is not None and completion.tool_calls
                    checked = plan.output is not None and not stepped
                    parsed = _parsed(plan, completion, attempt.instance) if checked else None
                except ProviderError as err:
                    if _failed(loop, attempt, err, parts):
                        continue
                    raise
                except FlyLLMError:  # e.g. a provider refusing to build this request
                    loop.abandoned(attempt)
                    raise
                loop.succeeded(attempt, completion.usage, outcome.headers, completion.content)
                response = _response(attempt.instance, completion, start, loop.attempts)
                outcome.response = response
                if parsed is not None:
                    outcome.response = dataclasses.replace(response, parsed=parsed)
                if stream:
                    yield _last_chunk(attempt.instance, completion)
                _complete(outcome, loop, start, stream)
                return
            raise attempt
        except FlyLLMError as err:
            outcome.response = loop.failed_response(err, start)
            raise
        except Exception as exc:  # nothing may escape the typed tree
            typed = loop.crashed(exc)
            outcome.response = loop.failed_response(typed, start)
            raise typed from exc
        except BaseException:  # closed early or cancelled
            if outcome.response is not None:  # the caller left after the last chunk
                _complete(outcome, loop, start, stream)
            else:
                loop.cancelled(start)
            raise

    def _build(self, attempt: Attempt, plan: Plan, *, stream: bool = False) -> HttpRequest:
        """The attempt's HTTP request; raises only FlyLLMErrors."""
        instance = attempt.instance
        try:
            http_request = instance.provider.build(
                instance.endpoint,
                plan.messages,
                attempt.params,
                stream=stream,
                tools=plan.tools,
                output=plan.output,
            )
        except FlyLLMError:
            raise
        except Exception as exc:
            raise unexpected_error(exc, "build", None, instance) from exc
        if http_request.notes:
            instance.note_once(http_request.notes)
        return http_request

    async def _send(self, attempt: Attempt, http_request: HttpRequest, answer: Outcome) -> None:
        """Send the request and parse the answer into ``answer`` (raises the classified
        ProviderError; anything else as the typed error of the phase it came from)."""
        instance = attempt.instance
        try:
            response = await self.transport.send(http_request, attempt.timeouts)
        except FlyLLMError:
            raise
        except Exception as exc:
            raise unexpected_error(exc, "send", None, instance) from exc
        try:
            answer.completion = instance.provider.parse(response, instance.endpoint)
        except FlyLLMError:
            raise
        except Exception as exc:  # e.g. RecursionError on deeply nested JSON
            raise unexpected_error(exc, "read", response.status, instance) from exc
        answer.headers = response.headers

    async def _read_stream(
        self, attempt: Attempt, http_request: HttpRequest, answer: Outcome, parts: list[str]
    ) -> AsyncGenerator[StreamChunk, None]:
        """Open the stream and yield its text chunks; the completion goes into ``answer`` once
        the stream has ended and its connection is released. Every text yielded is appended
        to ``parts`` first (a later failure carries them as the partial content)."""
        instance = attempt.instance
        provider, ptype, model = instance.provider, instance.provider_type.value, instance.model
        phase: Literal["send", "read"] = "send"
        status: int | None = None
        try:
            async with self.transport.open_stream(http_request, attempt.timeouts) as (head, body):
                phase, status = "read", head.status  # the answer has begun
                if head.status >= 300:
                    raise provider.classify_error(head, instance.endpoint)
                parser = provider.stream_parser(instance.endpoint)
                decoder = decoder_for(provider.stream_framing)
                try:
                    async for data in body:
                        events = decoder.feed(data)
                        # Only whole events hold off the read timeout: not the pseudo-events of
                        # lines that are not SSE (kept for Gemini's bare JSON errors).
                        if events and any(e.event != NON_SSE_LINE for e in events):
                            body.progress()
                        for event in events:
                            out = parser.feed(event)
                            if out:
                                yield _chunk(out, parts, instance.id, ptype, model)
                except ProviderError as err:
                    if err.kind is not ErrorKind.CONNECTION:
                        raise
                    raise StreamInterruptedError(
                        f"the stream broke off: {err.message}", status=head.status
                    ) from err
                for event in decoder.close():
                    out = parser.feed(event)
                    if out:
                        yield _chunk(out, parts, instance.id, ptype, model)
                answer.completion, answer.headers = parser.finish(), head.headers
        except FlyLLMError:
            raise
        except Exception as exc:  # e.g. RecursionError on a deeply nested event
            raise unexpected_error(exc, phase, status, instance) from exc


async def _with_images(images: ImageFetcher, plan: Plan, attempt: Attempt) -> Plan:
    """The plan as this attempt's provider gets it: the image URLs it does not take
    downloaded (once per request) and sent as bytes."""
    instance = attempt.instance
    messages = await images.conversation(
        plan.messages,
        instance.provider.accepts_image_url,
        attempt.timeouts,
        instance.provider_type.value,
    )
    return plan if messages is plan.messages else dataclasses.replace(plan, messages=messages)


def _chunk(
    out: str | Delta, parts: list[str], instance_id: int, ptype: str, model: str
) -> StreamChunk:
    """The chunk for what one event added; its text is appended to ``parts`` first (a
    tool-call piece appends its text too, even '': anything that reached the caller rules out
    a failover that would splice two answers)."""
    if type(out) is str:  # the common case: plain text
        parts.append(out)
        return StreamChunk(out, instance_id, ptype, model)
    assert isinstance(out, Delta)
    parts.append(out.text)
    return StreamChunk(out.text, instance_id, ptype, model, tool_calls=out.tool_calls)


def _failed(loop: AttemptLoop, attempt: Attempt, err: ProviderError, parts: list[str]) -> bool:
    """Record a failed attempt; True to go on. Once text reached the caller, no failover (no
    spliced answer): the error carries the partial content."""
    if not parts:
        return loop.failed(attempt, err)
    err.partial_content = "".join(parts)  # the text only; tool-call pieces are not content
    loop.failed(attempt, err, may_go_on=False)
    return False


def _parsed(plan: Plan, completion: Completion, instance: LlmInstance) -> Any:
    """The answer's structured value (the request has a ``response_format``); a
    StructuredOutputError when the text is not the JSON asked for."""
    assert plan.output is not None
    value, errors = read_output(completion.content, plan.output)
    if completion.tool_calls:  # and no tools offered: calls cannot stand for the JSON
        names = ", ".join(sorted({c.name[:64] for c in completion.tool_calls})[:5])
        errors = [f"the answer calls tools ({names}), but the request offered none"]
    if errors:
        raise StructuredOutputError(
            f"the answer is not the JSON {plan.output.name!r} asks for: {'; '.join(errors)}",
            raw_text=completion.content,
            errors=errors,
            status=200,
            provider=instance.provider_type.value,
            request_id=completion.request_id,
        )
    return value


def _last_chunk(instance: LlmInstance, completion: Completion) -> StreamChunk:
    """A stream's closing chunk: no text, the finish reason and the usage."""
    ptype = instance.provider_type.value
    return StreamChunk(
        "", instance.id, ptype, instance.model, completion.finish_reason, completion.usage
    )


def _response(
    instance: LlmInstance, completion: Completion, start: float, attempts: int
) -> LlmResponse:
    return LlmResponse(
        content=completion.content,
        success=True,
        provider=instance.provider_type.value,
        model=instance.endpoint.model,
        served_model=completion.model,
        instance_id=instance.id,
        usage=completion.usage,
        finish_reason=completion.finish_reason,
        raw_finish_reason=completion.raw_finish_reason,
        latency=time.perf_counter() - start,
        attempts=attempts,
        tool_calls=completion.tool_calls,
        provider_data=completion.provider_data,
    )


def _complete(outcome: Outcome, loop: AttemptLoop, start: float, stream: bool) -> None:
    """Report the request's success once; a stream's latency runs to its end (the caller
    read its last chunk), so it is taken again."""
    response = outcome.response
    assert response is not None
    latency = response.latency
    if stream:
        latency = time.perf_counter() - start
        outcome.response = dataclasses.replace(response, latency=latency)
    loop.finish(True, None, latency)
