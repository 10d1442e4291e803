"""The gateway as ``flyllm serve`` runs it (``run_gateway``), against hostile and leaving
clients: body limit, header timeout, disconnects that must close the upstream at once, and the
health routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
import pytest

from flyllm import BreakerPolicy, LlmManager, TaskDefinition
from flyllm.emulator import Emulator
from flyllm.server import Gateway, GatewaySettings
from flyllm.server.run import head_timeout_warning, run_gateway

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Running:
    """A gateway served by run_gateway in the test's loop, over one openai emulator."""

    url: str
    manager: LlmManager
    emulator: Emulator


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serving() -> AsyncIterator[Start]:
    """``await serving(settings=..., latency_ms=...)``: emulator options as keywords."""
    async with AsyncExitStack() as stack:

        async def start(
            settings: GatewaySettings | None = None,
            instances: int = 1,
            manager_options: dict[str, Any] | None = None,
            **emulator_options: Any,
        ) -> Running:
            emu = await stack.enter_async_context(Emulator("openai", **emulator_options))
            manager = LlmManager(**(manager_options or {}))
            stack.push_async_callback(manager.aclose)
            manager.define_task(TaskDefinition("chat"))
            for _ in range(instances):
                manager.add_provider("openai", "k", "m", ["chat"], base_url=emu.base_url)
            stop = asyncio.Event()
            bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            served = asyncio.create_task(
                run_gateway(Gateway(manager, settings), "127.0.0.1", 0, ready=bound.set_result,
                            stop=stop)
            )  # fmt: skip

            async def finish() -> None:
                stop.set()
                await asyncio.wait_for(served, 10)

            stack.push_async_callback(finish)
            port = await asyncio.wait_for(bound, 10)
            return Running(f"http://127.0.0.1:{port}", manager, emu)

        yield start


async def until(check: Callable[[], bool], seconds: float = 10.0) -> float:
    """Wait until ``check()`` holds; how long it took (fails past ``seconds``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not within {seconds} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_body_over_the_limit_is_413_in_openai_shape(serving: Start) -> None:
    run = await serving(GatewaySettings(max_body_bytes=2048))
    async with openai.AsyncOpenAI(base_url=run.url + "/v1", api_key="unused") as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x" * 4000}]
            )
        small = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x" * 1000}]
        )
    assert caught.value.status_code == 413
    assert "over 2048 bytes" in caught.value.message
    assert small.choices[0].message.content
    async with aiohttp.ClientSession() as session:

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until the limit
            for _ in range(10):
                yield b" " * 1024

        async with session.post(run.url + "/v1/chat/completions", data=chunks()) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
    assert run.emulator.stats()["requests"] == 1  # only the small one went upstream


async def test_a_slowloris_head_is_cut_after_header_timeout(serving: Start) -> None:
    run = await serving(GatewaySettings(header_timeout=0.5))
    port = int(run.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    closed_after = None
    for _ in range(100):  # one byte of a header every 50 ms: never a complete head
        try:
            writer.write(b"X")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(100), 0.05)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            data = b""
        assert data == b"", data  # nothing is answered: the connection is just closed
        closed_after = time.monotonic() - started
        break
    writer.close()
    assert closed_after is not None and 0.4 < closed_after < 3.0
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(silent_reader.read(), 3) == b""  # sends nothing: cut too
    silent.close()
    async with (
        aiohttp.ClientSession() as session,  # the server itself is fine
        session.post(run.url + "/v1/chat/completions", json=CHAT) as resp,
    ):
        assert resp.status == 200


def test_an_aiohttp_too_old_to_time_the_first_head_is_named() -> None:
    assert head_timeout_warning("3.14.4") is None and head_timeout_warning("4.0.0a1") is None
    warning = head_timeout_warning("3.13.5")
    assert warning is not None and "aiohttp>=3.14.4" in warning


async def test_a_client_leaving_mid_stream_closes_the_upstream_stream(serving: Start) -> None:
    run = await serving(chunk_delay_ms=20, reply_tokens=500)  # about 10 s of stream
    tasks_before = len(asyncio.all_tasks())
    async with aiohttp.ClientSession() as session:
        resp = await session.post(run.url + "/v1/chat/completions", json={**CHAT, "stream": True})
        assert resp.status == 200
        events = 0
        async for line in resp.content:
            events += line.startswith(b"data: ")
            if events == 3:
                break
        assert run.emulator.stats()["streams_started"] == 1
        resp.close()  # the client leaves: its connection closes
        left = time.monotonic()
        stats = run.emulator.stats
        await until(lambda: stats()["streams_cancelled"] == 1 and stats()["open_connections"] == 0)
        assert time.monotonic() - left < 1.0
    assert stats()["streams_completed"] == 0 and stats()["in_flight"] == 0
    await until(lambda: len(asyncio.all_tasks()) == tasks_before)


async def test_a_client_leaving_before_the_answer_cancels_the_upstream(serving: Start) -> None:
    run = await serving(latency_ms=10_000)
    stats = run.emulator.stats
    tasks_before = len(asyncio.all_tasks())
    async with aiohttp.ClientSession() as session:
        call = asyncio.create_task(session.post(run.url + "/v1/chat/completions", json=CHAT))
        await until(lambda: stats()["in_flight"] == 1)
        call.cancel()  # the client gives up: aiohttp closes its connection
        left = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await call
        await until(lambda: stats()["in_flight"] == 0 and stats()["open_connections"] == 0)
        assert time.monotonic() - left < 1.0
    assert run.manager.instance_health()[0].state == "closed"  # not the instance's fault
    await until(lambda: len(asyncio.all_tasks()) == tasks_before)


async def test_healthz_and_readyz_follow_the_instances(serving: Start) -> None:
    run = await serving(
        instances=2, manager_options={"max_attempts": 1, "breaker": BreakerPolicy(1)}
    )
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> tuple[int, Any]:
            async with session.get(run.url + path) as resp:
                return resp.status, await resp.json()

        assert await get("/healthz") == (200, {"status": "ok"})
        assert await get("/readyz") == (200, {"ready": True, "instances": 2})
        run.emulator.schedule("rate_limit", retry_after=30)  # one instance cools down
        async with session.post(run.url + "/v1/chat/completions", json=CHAT) as resp:
            assert resp.status in (429, 503)
        health = run.manager.instance_health
        assert sorted(h.state for h in health()) == ["closed", "cooling"]
        assert await get("/readyz") == (200, {"ready": True, "instances": 2})  # back soon
        run.emulator.schedule("server_error")  # the other one's circuit opens
        async with session.post(run.url + "/v1/chat/completions", json=CHAT) as resp:
            assert resp.status in (502, 503)
        assert sorted(h.state for h in health()) == ["cooling", "open"]
        assert await get("/readyz") == (200, {"ready": True, "instances": 1})
        run.manager.disable_instance(next(h.id for h in health() if h.state == "cooling"))
        assert await get("/readyz") == (503, {"ready": False, "instances": 0})
        assert await get("/healthz") == (200, {"status": "ok"})
