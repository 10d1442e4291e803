"""The hostile suite's own tools work: the budget catches overruns, the servers serve."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.hostile.conftest import budget, http_server, raw_server, read_request_head


def test_budget_catches_memory_growth() -> None:
    with pytest.raises(AssertionError, match="peak RSS"), budget(seconds=10, megabytes=20):
        hog = bytearray(80 * 1024 * 1024)
        hog[::4096] = b"x" * len(hog[::4096])  # touch every page so it is resident
        del hog


def test_budget_catches_slowness() -> None:
    with pytest.raises(AssertionError, match="took"), budget(seconds=0.05, megabytes=100):
        import time

        time.sleep(0.1)


async def test_servers_answer() -> None:
    async def hello(request: web.Request) -> web.StreamResponse:
        return web.Response(text="hi")

    async def raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nraw")
        await writer.drain()

    async with (
        http_server(hello) as url,
        raw_server(raw) as raw_url,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(url + "/x") as resp:
            assert await resp.text() == "hi"
        async with session.get(raw_url + "/y") as resp:
            assert await resp.text() == "raw"
