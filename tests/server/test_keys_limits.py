"""Virtual keys' limits through the gateway, with the openai SDK as the client: rpm, tpm,
max_concurrent and budgets refused at the right point with Retry-After, in the memory store
and in Redis; concurrency released on every way out; expiry; keys without limits never reach
the ledger."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from flyllm.emulator.faults import Fault
from flyllm.pricing import ModelPrice
from flyllm.server import GatewaySettings, KeyRing, VirtualKey, hash_key, new_key
from flyllm.server.ledger import Booking, KeyLedger, MemoryLedger, Refusal
from flyllm.server.redis_ledger import RedisLedger
from tests.server.conftest import GatewayFactory, Served

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
PRICE = {"openai-model": ModelPrice(input_per_mtok=100_000.0, output_per_mtok=100_000.0)}


def keyed(**limits: Any) -> tuple[str, GatewaySettings]:
    """A fresh key (built at run time, never printed) and settings holding only it."""
    key = new_key()
    entry = VirtualKey(name="team-a", sha256=hash_key(key), **limits)
    return key, GatewaySettings(keys=KeyRing([entry]))


def client(served: Served, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[KeyLedger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    store = RedisLedger(request.getfixturevalue("redis_url"), namespace="t:" + uuid.uuid4().hex)
    yield store
    await store.aclose()


async def start(
    gateway: GatewayFactory, ledger: KeyLedger, settings: GatewaySettings, **options: Any
) -> Served:
    served = await gateway("openai", settings=settings, **options)
    served.gateway.gate.ledger = ledger
    return served


async def settled(ledger: KeyLedger) -> None:
    if isinstance(ledger, RedisLedger):
        await ledger.flush()


async def test_rpm_refuses_the_third_request_with_retry_after(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(rpm=2)
    served = await start(gateway, ledger, settings)
    async with client(served, key) as sdk:
        for _ in range(2):
            await sdk.chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert 50 <= int(caught.value.response.headers["Retry-After"]) <= 60
    assert "2 requests per minute" in caught.value.message
    assert key not in caught.value.message and hash_key(key) not in caught.value.message
    assert served.emulators["openai"].stats()["requests"] == 2  # the refused one never left


async def test_tpm_counts_the_estimate_then_the_real_usage(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(tpm=700)
    served = await start(gateway, ledger, settings)
    async with client(served, key) as sdk:
        with pytest.raises(openai.BadRequestError) as never:  # 1 + 1000 > 700, ever
            await sdk.chat.completions.create(model="chat", messages=HI, max_tokens=1000)
        assert never.value.code == "tokens_over_limit"
        # Booked at 601 (1 + max_tokens 600), settled at the real usage (a few dozen tokens):
        await sdk.chat.completions.create(model="chat", messages=HI, max_tokens=600)
        await settled(ledger)
        await sdk.chat.completions.create(model="chat", messages=HI, max_tokens=600)
        # Nothing settles a booking still running: hold 601 directly, then the next is over.
        vk = served.gateway.settings.keys.lookup(key)
        assert vk is not None
        held = await ledger.admit(vk, 601)
        assert isinstance(held, Booking)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI, max_tokens=600)
    assert "700 tokens per minute" in caught.value.message
    assert 50 <= int(caught.value.response.headers["Retry-After"]) <= 60


async def test_max_concurrent_is_held_for_a_whole_stream_and_released_when_it_ends(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(max_concurrent=1)
    served = await start(gateway, ledger, settings, emulator_options={"chunk_delay_ms": 5})
    async with client(served, key) as sdk:
        stream = await sdk.chat.completions.create(model="chat", messages=HI, stream=True)
        async for _ in stream:
            break  # the stream is running
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
        assert caught.value.response.headers["Retry-After"] == "1"
        assert "max_concurrent" in caught.value.message
        async for _ in stream:
            pass
        await settled(ledger)
        await sdk.chat.completions.create(model="chat", messages=HI)


async def test_max_concurrent_is_released_when_the_client_disconnects(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(max_concurrent=1)
    served = await start(gateway, ledger, settings, emulator_options={"chunk_delay_ms": 50})
    body = {"model": "chat", "messages": HI, "stream": True}
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        url = served.url + "/v1/chat/completions"
        response = await session.post(url, json=body, headers=headers)
        await response.content.readline()  # the first event: the stream is running
        response.close()  # the client leaves mid-stream
    await _until_admitted(served, key, ledger)


async def test_max_concurrent_is_released_when_a_waiting_client_gives_up(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(max_concurrent=1)
    served = await start(gateway, ledger, settings, emulator_options={"latency_ms": 2000})
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.post(served.url + "/v1/chat/completions", headers=headers,
                               json={"model": "chat", "messages": HI},
                               timeout=aiohttp.ClientTimeout(total=0.3))  # fmt: skip
    await _until_admitted(served, key, ledger)  # long before the upstream's 2 s


async def test_max_concurrent_is_released_when_the_call_fails(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(max_concurrent=1)
    served = await start(gateway, ledger, settings, max_attempts=1)
    served.emulators["openai"].set_faults([Fault("unauthorized")])
    async with client(served, key) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
    assert caught.value.status_code == 502
    await _until_admitted(served, key, ledger)  # at once: the failed call's slot is free


async def _until_admitted(served: Served, key: str, ledger: KeyLedger) -> None:
    vk = served.gateway.settings.keys.lookup(key)
    assert vk is not None
    for _ in range(50):  # at most 1 s
        await settled(ledger)
        found = await ledger.admit(vk, 1)
        if isinstance(found, Booking):
            return
        assert found == Refusal("max_concurrent", 1.0)
        await asyncio.sleep(0.02)
    raise AssertionError("the slot of the disconnected stream was never released")


async def test_budget_refuses_once_spent_until_the_period_ends(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(budget_usd=1.0, budget_period="day")
    served = await start(gateway, ledger, settings, prices=PRICE)  # each answer: several USD
    async with client(served, key) as sdk:
        answer = await sdk.chat.completions.create(model="chat", messages=HI)
        await settled(ledger)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
    assert answer.usage is not None
    vk = served.gateway.settings.keys.lookup(key)
    assert vk is not None
    expected = (answer.usage.prompt_tokens + answer.usage.completion_tokens) * 0.1
    assert await ledger.spent(vk) == pytest.approx(expected)
    assert caught.value.code == "insufficient_quota"
    now = dt.datetime.now(dt.timezone.utc)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    wait = int(caught.value.response.headers["Retry-After"])
    assert abs(wait - (midnight - now).total_seconds()) < 5


async def test_an_unpriced_answer_spends_a_budgeted_key(gateway: GatewayFactory) -> None:
    key, settings = keyed(budget_usd=100.0)
    served = await gateway("openai", settings=settings)  # "openai-model" has no price
    async with client(served, key) as sdk:
        await sdk.chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
    assert caught.value.code == "insufficient_quota"


async def test_an_expired_key_is_refused_with_401(gateway: GatewayFactory) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    key, settings = keyed(expires=past)
    served = await gateway("openai", settings=settings)
    async with client(served, key) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
        with pytest.raises(openai.AuthenticationError):
            await sdk.models.list()
    assert "expired" in caught.value.message
    assert served.emulators["openai"].stats()["requests"] == 0
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    key, settings = keyed(expires=future)
    served = await gateway("openai", settings=settings)
    async with client(served, key) as sdk:
        await sdk.chat.completions.create(model="chat", messages=HI)


class _Refuses(MemoryLedger):
    async def admit(self, key: VirtualKey, tokens: int, cost: float = 0.0) -> Booking | Refusal:
        raise AssertionError("a key without limits reached the ledger")


async def test_a_key_without_limits_never_reaches_the_ledger(gateway: GatewayFactory) -> None:
    key, settings = keyed(tasks=frozenset({"chat"}))
    served = await start(gateway, _Refuses(), settings)
    async with client(served, key) as sdk:
        await sdk.chat.completions.create(model="chat", messages=HI)
        stream = await sdk.chat.completions.create(model="chat", messages=HI, stream=True)
        async for _ in stream:
            pass


async def test_redis_down_refuses_limited_keys_with_503_and_serves_the_others(
    gateway: GatewayFactory,
) -> None:
    limited, free = new_key(), new_key()
    ring = KeyRing([
        VirtualKey(name="limited", sha256=hash_key(limited), rpm=100),
        VirtualKey(name="free", sha256=hash_key(free)),
    ])  # fmt: skip
    down = RedisLedger("redis://127.0.0.1:1/0", timeout=0.2)  # nothing listens on port 1
    served = await start(gateway, down, GatewaySettings(keys=ring))
    async with client(served, limited) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.chat.completions.create(model="chat", messages=HI)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["Retry-After"] == "1"
    assert "limits" in caught.value.message
    async with client(served, free) as sdk:
        await sdk.chat.completions.create(model="chat", messages=HI)
    assert served.emulators["openai"].stats()["requests"] == 1


async def test_embeddings_are_held_to_the_keys_rpm_and_budget(
    gateway: GatewayFactory, ledger: KeyLedger
) -> None:
    key, settings = keyed(rpm=2, budget_usd=1000.0)
    served = await start(gateway, ledger, settings, task="embed", prices=PRICE)
    async with client(served, key) as sdk:
        first = await sdk.embeddings.create(model="embed", input=["one text", "two texts"])
        await sdk.embeddings.create(model="embed", input="three")
        await settled(ledger)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.embeddings.create(model="embed", input="four")
    assert caught.value.code == "rate_limit_exceeded"
    vk = served.gateway.settings.keys.lookup(key)
    assert vk is not None
    assert first.usage.prompt_tokens > 0
    assert await ledger.spent(vk) > first.usage.prompt_tokens * 0.1 * 0.99  # both were booked
    assert served.emulators["openai"].stats()["requests"] == 2
