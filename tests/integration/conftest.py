"""Fixtures for driving LlmManager against the emulator on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import pytest

from flyllm import LlmManager, RetryPolicy
from flyllm.emulator import Emulator

EmulatorFactory = Callable[..., Awaitable[Emulator]]


async def _no_sleep(seconds: float) -> None:
    SLEEPS.append(seconds)


SLEEPS: list[float] = []


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
async def manager() -> AsyncIterator[LlmManager]:
    """A manager whose retry waits are recorded in SLEEPS instead of slept."""
    SLEEPS.clear()
    async with LlmManager(retry_policy=RetryPolicy(sleep=_no_sleep), timeout=5.0) as m:
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
