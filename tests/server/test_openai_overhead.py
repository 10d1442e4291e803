"""``x-flyllm-overhead-ms``: the gateway's own time, outside the manager call, so neither the
upstream's latency nor a retry's wait shows in it; on plain answers, streams and
embeddings."""

from __future__ import annotations

from typing import Any

import openai

from tests.server.conftest import GatewayFactory

HI: Any = [{"role": "user", "content": "hi"}]
UPSTREAM_MS = 300.0


async def test_overhead_leaves_out_the_upstream_and_retries(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    emu = served.emulators["openai"]
    emu.set_latency(UPSTREAM_MS, 0)
    emu.schedule("server_error")  # one failed attempt, then the retry answers
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused") as c:
        plain = await c.chat.completions.with_raw_response.create(model="chat", messages=HI)
        stream = await c.chat.completions.with_raw_response.create(
            model="chat", messages=HI, stream=True
        )
        async for _ in stream.parse():
            pass
    assert plain.headers["x-flyllm-attempts"] == "2"
    for raw in (plain, stream):
        overhead = float(raw.headers["x-flyllm-overhead-ms"])
        assert 0 < overhead < UPSTREAM_MS / 3, overhead


async def test_embeddings_carry_the_overhead_header(gateway: GatewayFactory) -> None:
    served = await gateway("openai", task="embed")
    served.emulators["openai"].set_latency(UPSTREAM_MS, 0)
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused") as c:
        raw = await c.embeddings.with_raw_response.create(model="embed", input=["a", "b"])
    assert 0 < float(raw.headers["x-flyllm-overhead-ms"]) < UPSTREAM_MS / 3
    assert raw.headers["x-flyllm-provider"] == "openai"
