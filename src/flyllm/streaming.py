"""Streamed answers with failover before the first chunk.

An error before any text reached the caller fails over like generate(); after the first chunk
it raises (no duplicated or spliced text), carrying the partial content. Leaving the block,
``aclose()`` or cancelling the task closes that connection at once; an abandoned stream is
closed by the event loop when its generator is collected.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from flyllm.attempts import Attempt, AttemptLoop, Plan
from flyllm.errors import FlyLLMError, ProviderError, StreamInterruptedError
from flyllm.sse import decoder_for
from flyllm.types import ErrorKind, LlmResponse, StreamChunk

if TYPE_CHECKING:
    from flyllm.manager import LlmManager

__all__ = ["LlmStream"]


class LlmStream:
    """One streamed request: iterate it for StreamChunks (``text`` is the delta; the last chunk
    carries ``finish_reason`` and ``usage``); ``response`` is the whole LlmResponse once the
    stream has ended. Use ``async with`` (or ``aclose()``) to close it early."""

    def __init__(self, manager: LlmManager, plan: Plan) -> None:
        self._manager = manager
        self._plan = plan
        self._gen: AsyncGenerator[StreamChunk, None] | None = None
        self._response: LlmResponse | None = None

    @property
    def response(self) -> LlmResponse:
        """The joined answer, usage and finish reason; available once the stream has ended."""
        if self._response is None:
            raise RuntimeError("the stream has not ended yet: iterate it to the end first")
        return self._response

    def __aiter__(self) -> LlmStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the connection now (the provider stops generating); safe to call twice."""
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> LlmStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[StreamChunk, None]:
        start = time.perf_counter()
        loop = AttemptLoop(self._manager, self._plan, stream=True)
        while not isinstance(attempt := await loop.next(), FlyLLMError):
            parts: list[str] = []
            try:
                async for chunk in self._attempt(attempt, loop, parts):
                    yield chunk
            except ProviderError as err:
                if parts:  # text reached the caller: no failover, no spliced answer
                    err.partial_content = "".join(parts)
                    loop.failed(attempt, err, may_go_on=False)
                if parts or not loop.failed(attempt, err):
                    loop.finish(False, err.kind.value, time.perf_counter() - start)
                    raise
                continue
            except BaseException:  # closed early or cancelled
                if self._response is None:
                    loop.abandoned(attempt)
                raise
            response = self._response
            assert response is not None
            latency = time.perf_counter() - start
            self._response = dataclasses.replace(response, latency=latency, attempts=loop.attempts)
            loop.finish(True, None, latency)
            return
        loop.finish(
            False, attempt.kind.value if attempt.kind else None, time.perf_counter() - start
        )
        raise attempt

    async def _attempt(
        self, attempt: Attempt, loop: AttemptLoop, parts: list[str]
    ) -> AsyncGenerator[StreamChunk, None]:
        manager, instance = self._manager, attempt.instance
        http_request = manager._build(attempt, self._plan, stream=True)
        provider, ptype, model = instance.provider, instance.provider_type.value, instance.model
        async with manager._transport.open_stream(http_request, attempt.timeouts) as (head, body):
            if head.status >= 300:
                raise provider.classify_error(head)
            parser, decoder = provider.stream_parser(), decoder_for(provider.stream_framing)
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
        model = completion.model or model
        self._response = LlmResponse(
            content=completion.content,
            success=True,
            provider=ptype,
            model=model,
            instance_id=instance.id,
            usage=completion.usage,
            finish_reason=completion.finish_reason,
            raw_finish_reason=completion.raw_finish_reason,
        )
        yield StreamChunk("", instance.id, ptype, model, completion.finish_reason, completion.usage)
