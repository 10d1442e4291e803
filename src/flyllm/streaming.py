"""Streamed answers with failover before the first chunk.

An error before any text reached the caller fails over like generate(); after the first chunk
it raises (no duplicated or spliced text), carrying the partial content; either way
``response`` then holds the failed LlmResponse. Leaving the block, ``aclose()`` or cancelling
the task closes that connection at once and frees the instance's slot.

The attempts are driven by flyllm._engine, the same driver as generate()'s.
A stream never iterated holds nothing (no connection, no slot: the attempt starts on the first
``__anext__``). A stream dropped mid-way without ``aclose()`` is closed as soon as its last
reference goes: the generator does not refer back to its LlmStream, so CPython's reference
counting finalises it at once and the event loop runs its ``aclose()`` on its next turn, which
frees the slot and closes the connection. What remains: while the caller still holds a
reference (a variable, a traceback kept alive), nothing can know the stream is abandoned; on
interpreters without reference counting (PyPy) it waits for a garbage collection.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from flyllm._engine import Engine, Outcome
from flyllm.routing.attempts import Plan
from flyllm.types import LlmResponse, StreamChunk

__all__ = ["LlmStream"]


class LlmStream:
    """One streamed request: iterate it for StreamChunks (``text`` is the delta; the last chunk
    carries ``finish_reason`` and ``usage``); ``response`` is the whole LlmResponse once the
    stream has ended (a failed one, ``success=False`` with the error and the partial content,
    when it ended in an error). Use ``async with`` (or ``aclose()``) to close it early."""

    def __init__(self, engine: Engine, plan: Plan) -> None:
        self._engine = engine
        self._plan = plan
        self._gen: AsyncGenerator[StreamChunk, None] | None = None
        self._outcome = Outcome()  # shared with the generator, which must not refer back here

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
            self._gen = self._engine.run(self._plan, self._outcome, stream=True)
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Close the connection now (the provider stops generating); safe to call twice."""
        if self._gen is not None:
            await self._gen.aclose()

    async def __aenter__(self) -> LlmStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
