"""Review of the gateway's secrets: an upstream that echoes the provider key in its error
body (some proxies and self-hosted servers do) must not hand it to the caller, nor may the
caller's virtual key or its hash appear in any answer, header, /metrics or log line at DEBUG."""

from __future__ import annotations

import asyncio
import logging
import secrets

import aiohttp
import pytest
from aiohttp import web

from flyllm import LlmManager, TaskDefinition
from flyllm.server import Gateway, GatewaySettings, KeyRing, VirtualKey, hash_key, new_key
from flyllm.server.run import run_gateway


async def _echoing_upstream(provider_key: str) -> web.AppRunner:
    """An OpenAI-compatible upstream whose every error repeats the key it was sent."""

    async def fail(request: web.Request) -> web.Response:
        sent = request.headers.get("Authorization", "")
        message = f"upstream broke for {sent} (key {provider_key})"
        return web.json_response(
            {"error": {"message": message, "type": "server_error"}}, status=500
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", fail)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_no_key_reaches_the_caller_or_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider_key = "sk-proj-" + secrets.token_hex(24)
    virtual = new_key()
    upstream = await _echoing_upstream(provider_key)
    manager = LlmManager(max_attempts=2)
    manager.define_task(TaskDefinition("chat"))
    port = upstream.addresses[0][1]
    manager.add_provider(
        "openai", provider_key, "m", ["chat"], base_url=f"http://127.0.0.1:{port}/v1"
    )
    entry = VirtualKey(name="team-a", sha256=hash_key(virtual), rpm=100)
    runner = web.AppRunner(Gateway(manager, GatewaySettings(keys=KeyRing([entry]))).application())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    seen: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
            for stream in (False, True):
                async with session.post(
                    url + "/v1/chat/completions",
                    json={**body, "stream": stream},
                    headers={"Authorization": f"Bearer {virtual}"},
                ) as response:
                    assert response.status == 502
                    seen += [await response.text(), str(dict(response.headers))]
            async with session.get(url + "/metrics") as response:
                seen.append(await response.text())
    finally:
        await runner.cleanup()
        await manager.aclose()
        await upstream.cleanup()
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "upstream broke" in everything  # the upstream's message did come through
    for secret in (provider_key, provider_key[8:], virtual, hash_key(virtual)):
        assert secret not in everything


async def test_a_header_aiohttp_cannot_parse_is_not_logged_with_its_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    virtual = new_key()
    entry = VirtualKey(name="team-a", sha256=hash_key(virtual))
    manager = LlmManager()
    stop = asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    gateway = Gateway(manager, GatewaySettings(keys=KeyRing([entry])))
    served = asyncio.create_task(
        run_gateway(gateway, "127.0.0.1", 0, ready=bound.set_result, stop=stop)
    )
    port = await asyncio.wait_for(bound, 10)
    answers = []
    try:
        for line in (
            f"Authorization: Bearer {virtual}\x01",  # a control character: InvalidHeader
            f"Authorization: Bearer {virtual} " + "a" * 9000,  # over 8190 bytes: LineTooLong
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{line}\r\n\r\n".encode())
            answers.append(await asyncio.wait_for(reader.read(), 5))
            writer.close()
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)
        await manager.aclose()
    assert all(answer.startswith(b"HTTP/1.0 400") for answer in answers)
    assert "not valid HTTP" in caplog.text  # said, once a request, without its bytes
    assert virtual not in caplog.text
    assert virtual[:20] not in caplog.text
