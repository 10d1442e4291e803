"""Shared pieces of the hostile suite: loopback servers that misbehave, and a budget.

Every hostile case runs inside ``budget(seconds=..., megabytes=...)``: the wall time and the
growth of the process's peak resident memory (VmHWM, reset at the start through
``/proc/self/clear_refs``) must stay within it, so "bounded memory and time" is asserted, not
hoped for. Servers bind to 127.0.0.1 on a free port and stop with the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


@dataclass(slots=True)
class Spent:
    """What a budgeted block used: wall seconds and peak RSS growth in MiB."""

    seconds: float = 0.0
    megabytes: float = 0.0


@contextlib.contextmanager
def budget(*, seconds: float, megabytes: float) -> Iterator[Spent]:
    """Fail the test if the block takes longer than ``seconds`` or raises the process's peak
    resident memory by more than ``megabytes`` over its resident size at the start."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    start_rss = _status_kb("VmRSS")
    spent = Spent()
    started = time.monotonic()
    yield spent
    spent.seconds = time.monotonic() - started
    spent.megabytes = (_status_kb("VmHWM") - start_rss) / 1024
    assert spent.seconds <= seconds, f"took {spent.seconds:.2f} s, budget {seconds} s"
    assert spent.megabytes <= megabytes, f"peak RSS grew {spent.megabytes:.1f} MiB > {megabytes}"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[str]:
    """An aiohttp server answering every path with ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[str]:
    """A TCP server that hands each connection to ``handler`` as it is (for byte-level abuse:
    headers one byte at a time, bodies that never end); yields its base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            tasks.discard(task)
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers a client sent (the body is left unread)."""
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
def hostile_budget() -> Callable[..., contextlib.AbstractContextManager[Spent]]:
    """``budget`` as a fixture, for tests that prefer not to import from conftest."""
    return budget
