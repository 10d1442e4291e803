"""Streamed answers with failover before the first chunk.

An error before any text reached the caller fails over like generate(); after the first chunk
it raises (no duplicated or spliced text), carrying the partial content; either way
``response`` then holds the failed LlmResponse. Leaving the block, ``aclose()`` or cancelling
the task closes that connection at once and frees the instance's slot.

A stream never iterated holds nothing (no connection, no slot: the attempt starts on the first
``__anext__``). A stream dropped mid-way without ``aclose()`` is closed as soon as its last
reference goes: the generator does not refer back to its LlmStream, so CPython's reference
counting finalises it at once and the event loop runs its ``aclose()`` on its next turn, which
frees the slot and closes the connection. What remains: while the caller still holds a
reference (a variable, a traceback kept alive), nothing can know the stream is abandoned; on
interpreters without reference counting (PyPy) it waits for a garbage collection.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Literal

from flyllm.attempts import Attempt, AttemptLoop, Plan, unexpected_error
from flyllm.errors import FlyLLMError, ProviderError, StreamInterruptedError
from flyllm.sse import decoder_for
from flyllm.types import ErrorKind, LlmResponse, StreamChunk

if TYPE_CHECKING:
    from flyllm.manager import LlmManager

__all__ = ["LlmStream"]


class _Outcome:
    """The stream's final response, shared by the LlmStream and its generator (which must not
    refer to the LlmStream: that cycle would keep an abandoned stream open until a GC)."""

    __slots__ = ("response",)

    def __init__(self) -> None:
        self.response: LlmResponse | None = None


class LlmStream:
    """One streamed request: iterate it for StreamChunks (``text`` is the delta; the last chunk
    carries ``finish_reason`` and ``usage``); ``response`` is the whole LlmResponse once the
    stream has ended (a failed one, ``success=False`` with the error and the partial content,
    when it ended in an error). Use ``async with`` (or ``aclose()``) to close it early."""

    def __init__(self, manager: LlmManager, plan: Plan) -> None:
        self._manager = manager
        self._plan = plan
        self._gen: AsyncGenerator[StreamChunk, None] | None = None
        self._outcome = _Outcome()

    @property
    def response(self) -> LlmResponse:
        """The joined answer, usage and finish reason, or the failed response; available once
        the stream has ended."""
        response = self._outcome.response
        if response is None:
            raise RuntimeError("the stream has not ended yet: iterate it to the end first")
        return response

    def __aiter__(self) -> LlmStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._gen is None:
            self._gen = _run(self._manager, self._plan, self._outcome)
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the connection now (the provider stops generating); safe to call twice."""
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> LlmStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _run(
    manager: LlmManager, plan: Plan, outcome: _Outcome
) -> AsyncGenerator[StreamChunk, None]:
    """The request's chunks over its attempts; its end (success, error or the caller leaving)
    is recorded on ``outcome`` and reported once."""
    start = time.perf_counter()
    loop = AttemptLoop(manager, plan, stream=True)
    try:
        async with aclosing(_attempts(manager, plan, loop, outcome)) as chunks:
            async for chunk in chunks:
                yield chunk
        _complete(outcome, loop, start)
    except FlyLLMError as err:
        outcome.response = loop.failed_response(err, start)
        raise
    except Exception as exc:  # nothing may escape the typed tree
        typed = loop.crashed(exc)
        outcome.response = loop.failed_response(typed, start)
        raise typed from exc
    except BaseException:  # closed early or cancelled
        if outcome.response is not None:  # the caller left after the last chunk
            _complete(outcome, loop, start)
        else:
            loop.cancelled(start)
        raise


def _complete(outcome: _Outcome, loop: AttemptLoop, start: float) -> None:
    response = outcome.response
    assert response is not None
    latency = time.perf_counter() - start
    outcome.response = dataclasses.replace(response, latency=latency, attempts=loop.attempts)
    loop.finish(True, None, latency)


async def _attempts(
    manager: LlmManager, plan: Plan, loop: AttemptLoop, outcome: _Outcome
) -> AsyncGenerator[StreamChunk, None]:
    while not isinstance(attempt := await loop.next(), FlyLLMError):
        parts: list[str] = []
        try:
            async with aclosing(_attempt(manager, plan, attempt, loop, parts, outcome)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except ProviderError as err:
            if parts:  # text reached the caller: no failover, no spliced answer
                err.partial_content = "".join(parts)
                loop.failed(attempt, err, may_go_on=False)
                raise
            if not loop.failed(attempt, err):
                raise
            continue
        except FlyLLMError:  # e.g. a provider refusing to build this request
            loop.abandoned(attempt)
            raise
        return
    raise attempt


async def _attempt(
    manager: LlmManager,
    plan: Plan,
    attempt: Attempt,
    loop: AttemptLoop,
    parts: list[str],
    outcome: _Outcome,
) -> AsyncGenerator[StreamChunk, None]:
    instance = attempt.instance
    http_request = manager._build(attempt, plan, stream=True)
    provider, ptype, model = instance.provider, instance.provider_type.value, instance.model
    phase: Literal["send", "read"] = "send"
    status: int | None = None
    try:
        async with manager._transport.open_stream(http_request, attempt.timeouts) as (head, body):
            phase, status = "read", head.status  # the answer has begun
            if head.status >= 300:
                raise provider.classify_error(head, instance.endpoint)
            parser = provider.stream_parser(instance.endpoint)
            decoder = decoder_for(provider.stream_framing)
            try:
                async for data in body:
                    events = decoder.feed(data)
                    if events:  # only whole events hold off the read timeout
                        body.progress()
                    for event in events:
                        text = parser.feed(event)
                        if text:
                            parts.append(text)
                            yield StreamChunk(text, instance.id, ptype, model)
            except ProviderError as err:
                if err.kind is not ErrorKind.CONNECTION:
                    raise
                raise StreamInterruptedError(
                    f"the stream broke off: {err.message}", status=head.status
                ) from err
            for event in decoder.close():
                text = parser.feed(event)
                if text:
                    parts.append(text)
                    yield StreamChunk(text, instance.id, ptype, model)
            completion = parser.finish()
            loop.succeeded(attempt, completion.usage, head.headers, completion.content)
    except FlyLLMError:
        raise
    except Exception as exc:  # e.g. RecursionError on a deeply nested event
        raise unexpected_error(exc, phase, status, instance) from exc
    outcome.response = LlmResponse(
        content=completion.content,
        success=True,
        provider=ptype,
        model=model,
        served_model=completion.model,
        instance_id=instance.id,
        usage=completion.usage,
        finish_reason=completion.finish_reason,
        raw_finish_reason=completion.raw_finish_reason,
    )
    yield StreamChunk("", instance.id, ptype, model, completion.finish_reason, completion.usage)
