"""Fixtures for driving LlmManager against the emulator on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import pytest
from aiohttp import web

from flyllm import LlmManager
from flyllm.emulator import Emulator

EmulatorFactory = Callable[..., Awaitable[Emulator]]
ServerFactory = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]


class VirtualTime:
    """Real monotonic time plus the waits the manager asked for, which pass instantly."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        # Concurrent sleepers share one timeline: waking at T moves the clock to T once.
        self.sleeps.append(seconds)
        self.offset = max(self.offset, self.clock() + seconds - time.monotonic())
        await asyncio.sleep(0)


SLEEPS: list[float] = []


def vectors_close(got: Sequence[float], want: Sequence[float]) -> bool:
    """Whether an embedding equals the expected one within float32 rounding."""
    return len(got) == len(want) and all(abs(a - b) < 1e-6 for a, b in zip(got, want, strict=True))


def body(emu: Emulator) -> dict[str, Any]:
    """The JSON body of the last request the emulator received."""
    sent = emu.requests[-1].json
    assert isinstance(sent, dict), sent
    return sent


@pytest.fixture
async def emulators() -> AsyncIterator[EmulatorFactory]:
    """Start emulators on demand; all are stopped at the end of the test."""
    async with AsyncExitStack() as stack:

        async def start(provider: str, **kwargs: Any) -> Emulator:
            return await stack.enter_async_context(Emulator(provider=provider, **kwargs))

        yield start


@pytest.fixture
async def aiohttp_server_factory() -> AsyncIterator[ServerFactory]:
    """Serve one handler for every path on loopback; yields a function returning its URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def manager() -> AsyncIterator[LlmManager]:
    """A manager whose waits pass instantly (recorded in SLEEPS)."""
    virtual = VirtualTime()
    virtual.sleeps = SLEEPS
    SLEEPS.clear()
    async with LlmManager(clock=virtual.clock, sleep=virtual.sleep, read_timeout=5.0) as m:
        yield m


@contextmanager
def emulator_in_thread(provider: str, **kwargs: Any) -> Iterator[Emulator]:
    """An emulator serving from its own thread, so that the caller's loop may block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emu = Emulator(provider=provider, **kwargs)
    asyncio.run_coroutine_threadsafe(emu.start(), loop).result()
    try:
        yield emu
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
