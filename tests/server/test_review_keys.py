"""Review of the gateway's key books: a stream the client leaves after reading its text must
still cost the key (else disconnecting before the last event gives every token away), and the
x-flyllm-* headers each answer path documents."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from flyllm.pricing import ModelPrice
from flyllm.server import GatewaySettings, KeyRing, VirtualKey, hash_key, new_key
from tests.server.conftest import GatewayFactory

PRICE = {"openai-model": ModelPrice(input_per_mtok=100_000.0, output_per_mtok=100_000.0)}
STREAM = {
    "model": "chat",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
    "max_tokens": 100,
}


async def test_a_stream_left_after_its_text_costs_the_key_its_estimate(
    gateway: GatewayFactory,
) -> None:
    key = new_key()
    entry = VirtualKey(name="team-a", sha256=hash_key(key), budget_usd=1000.0, tpm=10_000)
    settings = GatewaySettings(keys=KeyRing([entry]))
    served = await gateway(
        "openai", settings=settings, prices=PRICE, emulator_options={"chunk_delay_ms": 30}
    )
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            served.url + "/v1/chat/completions", json=STREAM, headers=headers
        )
        for _ in range(3):  # the role chunk and some text: the upstream is generating
            await response.content.readuntil(b"\n\n")
        response.close()  # the client leaves before the usage arrives
    ledger = served.gateway.gate.ledger
    for _ in range(100):
        if await ledger.spent(entry) > 0:
            break
        await asyncio.sleep(0.02)
    # The estimate: prompt "hi" (1 token) + max_tokens 100, at 0.1 USD a token.
    assert await ledger.spent(entry) >= 100 * 0.1


async def test_a_client_that_stops_reading_a_stream_frees_its_slot(
    gateway: GatewayFactory,
) -> None:
    key = new_key()
    entry = VirtualKey(name="team-a", sha256=hash_key(key), max_concurrent=1)
    settings = GatewaySettings(keys=KeyRing([entry]), send_timeout=0.3)
    served = await gateway("openai", settings=settings, emulator_options={"reply_tokens": 20_000})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # full after a few chunks
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", _port(served.url)))
    body = json.dumps({**STREAM, "max_tokens": 20_000}).encode()
    sock.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )  # and never reads a byte of the answer
    statuses = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
            for _ in range(50):  # 5 s at most; the watch needs two looks 0.3 s apart
                await asyncio.sleep(0.1)
                short = {**STREAM, "stream": False, "max_tokens": 5}
                async with session.post(served.url + "/v1/chat/completions", json=short) as r:
                    statuses.append(r.status)
                if r.status == 200:
                    break
    finally:
        sock.close()
    assert statuses[0] == 429  # the stalled stream held the slot at first
    assert statuses[-1] == 200  # then the gateway ended it and freed the slot


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_an_unpriced_stream_left_after_its_text_spends_a_budgeted_key(
    gateway: GatewayFactory,
) -> None:
    """As an unpriced answer does (test_keys_limits.py): no price, no way to check the budget."""
    key = new_key()
    entry = VirtualKey(name="team-a", sha256=hash_key(key), budget_usd=100.0)
    settings = GatewaySettings(keys=KeyRing([entry]))
    served = await gateway("openai", settings=settings, emulator_options={"chunk_delay_ms": 30})
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            served.url + "/v1/chat/completions",
            json=STREAM,
            headers={"Authorization": f"Bearer {key}"},
        )
        for _ in range(3):
            await response.content.readuntil(b"\n\n")
        response.close()
    ledger = served.gateway.gate.ledger
    for _ in range(50):
        if await ledger.spent(entry) > 0:
            break
        await asyncio.sleep(0.02)
    assert await ledger.spent(entry) == 100.0
