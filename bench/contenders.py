"""The contenders: the same work done by a bare aiohttp loop, by flyllm and by LiteLLM's Router.

Each contender is built from the same :class:`~bench.wire.Target` list (one deployment per
emulated instance) and offers the same two operations: a batch of non-streamed requests and a
batch of streams, each under a concurrency bound. Request ``i`` always carries the prompt
``"prompt {i}"``, so every contender asks for the same answers. Latency is measured from the
moment a request gets its concurrency slot to its answer (queueing excluded); a failed
request counts as a failure, whatever the contender did before giving up.

    bare     the floor: one pooled aiohttp session, round-robin over the targets, the body
             built and the answer parsed by hand (:mod:`bench.wire`); no routing, no retry.
    flyllm   ``LlmManager(strategy, max_attempts)`` with one instance per target;
             ``batch_generate(requests, max_concurrency=N)`` and ``manager.stream(request)``.
    litellm  ``Router(model_list, routing_strategy="simple-shuffle", num_retries)``, one
             deployment per target (:mod:`bench.litellm_client`, imported only when asked for).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from bench.core import BatchResult, StreamResult, run_pool
from bench.wire import (
    TOOL,
    Target,
    content_of,
    request_for,
    stream_delta,
    tool_calls_of,
    tool_prompt,
)
from flyllm import FlyLLMError, GenerationRequest, LlmManager

__all__ = ["CONTENDERS", "Contender", "Options", "make_contender"]

CONTENDERS = ("bare", "flyllm", "litellm")
"""The contenders' names, in the order the tables show them."""


@dataclass(frozen=True, slots=True)
class Options:
    """How every contender is configured: reply length bound, attempts per request (the
    first try included), and flyllm's strategy (``random`` mirrors LiteLLM's simple-shuffle)."""

    max_tokens: int = 64
    max_attempts: int = 3
    strategy: str = "random"
    tools: bool = False
    """Offer one tool on every request and require a call (the tools scenario): a request
    succeeds only when its answer holds a call."""


class Contender(Protocol):
    """One client under test."""

    name: str

    async def batch(self, start: int, count: int, concurrency: int) -> BatchResult:
        """Answer requests ``start``..``start + count - 1``, at most ``concurrency`` at once."""
        ...

    async def streams(self, start: int, count: int, concurrency: int) -> StreamResult:
        """Stream requests ``start``..``start + count - 1``, at most ``concurrency`` at once."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class BareClient:
    """The floor: hand-built requests over one pooled aiohttp session, round-robin."""

    name = "bare"

    def __init__(self, targets: Sequence[Target], options: Options) -> None:
        self._targets = list(targets)
        self._options = options
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    async def batch(self, start: int, count: int, concurrency: int) -> BatchResult:
        """POST each request to the next target in turn; a non-200 answer is a failure. The
        answers are kept until the batch ends, as any batch's caller keeps them."""
        session, targets, out = self._get_session(), self._targets, BatchResult()
        max_tokens, tools = self._options.max_tokens, self._options.tools
        answers: list[object] = [None] * count

        async def one(i: int) -> None:
            n = start + i
            target = targets[n % len(targets)]
            prompt = tool_prompt(n) if tools else f"prompt {n}"
            url, headers, body = request_for(target, prompt, max_tokens, tools=tools)
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    out.failures += 1
                    return
            if tools:
                calls = tool_calls_of(target.provider, raw)
                if not calls:
                    out.failures += 1
                    return
                answers[i] = calls
            else:
                answers[i] = content_of(target.provider, raw)
            out.latencies.append(time.perf_counter() - t0)
            out.successes += 1

        await run_pool(count, concurrency, one)
        return out

    async def streams(self, start: int, count: int, concurrency: int) -> StreamResult:
        """Read each OpenAI stream line by line and decode every ``data:`` event."""
        session, targets, out = self._get_session(), self._targets, StreamResult()
        max_tokens = self._options.max_tokens

        async def one(i: int) -> None:
            n = start + i
            target = targets[n % len(targets)]
            url, headers, body = request_for(target, f"prompt {n}", max_tokens, stream=True)
            t0 = time.perf_counter()
            first: float | None = None
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    await resp.read()
                    out.failures += 1
                    return
                async for line in resp.content:
                    if stream_delta(line):
                        out.chunks += 1
                        if first is None:
                            first = time.perf_counter() - t0
            if first is not None:
                out.ttfc.append(first)
            out.successes += 1

        await run_pool(count, concurrency, one)
        return out

    async def aclose(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


class FlyllmClient:
    """flyllm: one instance per target, its batch API and its stream API."""

    name = "flyllm"

    def __init__(self, targets: Sequence[Target], options: Options) -> None:
        self._tools = options.tools
        self.manager = LlmManager(strategy=options.strategy, max_attempts=options.max_attempts)
        for target in targets:
            self.manager.add_provider(
                target.provider,
                "bench",
                target.model,
                base_url=target.base_url,
                parameters={"max_tokens": options.max_tokens},
            )

    async def batch(self, start: int, count: int, concurrency: int) -> BatchResult:
        """One ``batch_generate`` call over all the requests."""
        if self._tools:
            from flyllm import Tool  # here, so older snapshots without tools still run the rest

            tool = Tool(str(TOOL["name"]), str(TOOL["description"]), TOOL["parameters"])
            requests = [
                GenerationRequest(tool_prompt(start + i), tools=[tool], tool_choice="required")
                for i in range(count)
            ]
        else:
            requests = [GenerationRequest(prompt=f"prompt {start + i}") for i in range(count)]
        responses = await self.manager.batch_generate(requests, max_concurrency=concurrency)
        out = BatchResult()
        for r in responses:
            if r.success and (not self._tools or r.tool_calls):
                out.successes += 1
                out.latencies.append(r.latency)
            else:
                out.failures += 1
        return out

    async def streams(self, start: int, count: int, concurrency: int) -> StreamResult:
        """``async with manager.stream(request)`` per stream, under the same bound."""
        manager, out = self.manager, StreamResult()

        async def one(i: int) -> None:
            t0 = time.perf_counter()
            first: float | None = None
            try:
                async with manager.stream(GenerationRequest(prompt=f"prompt {start + i}")) as s:
                    async for chunk in s:
                        if chunk.text:
                            out.chunks += 1
                            if first is None:
                                first = time.perf_counter() - t0
            except FlyLLMError:
                out.failures += 1
                return
            if first is not None:
                out.ttfc.append(first)
            out.successes += 1

        await run_pool(count, concurrency, one)
        return out

    async def aclose(self) -> None:
        """Close the manager's connection pool."""
        await self.manager.aclose()


def make_contender(name: str, targets: Sequence[Target], options: Options) -> Contender:
    """The contender called ``name``, configured for ``targets``."""
    if name == "bare":
        return BareClient(targets, options)
    if name == "flyllm":
        return FlyllmClient(targets, options)
    if name == "litellm":
        from bench.litellm_client import LiteLLMClient

        return LiteLLMClient(targets, options)
    raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")
