"""The key ledger's rules, the same in memory and in Redis: each limit refuses at the right
point with the right wait, bookings settle, and the memory store's windows move with time."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flyllm.errors import ConfigurationError
from flyllm.server.errors import GatewayError
from flyllm.server.keys import VirtualKey, hash_key, new_key
from flyllm.server.ledger import (
    Booking,
    KeyLedger,
    MemoryLedger,
    Refusal,
    budget_period,
    ledger_for,
)
from flyllm.server.redis_ledger import RedisLedger


def make_key(**limits: Any) -> VirtualKey:
    return VirtualKey(name="team-" + uuid.uuid4().hex[:8], sha256=hash_key(new_key()), **limits)


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[KeyLedger]:
    if request.param == "memory":
        yield MemoryLedger()
        return
    url = request.getfixturevalue("redis_url")
    store = RedisLedger(url, namespace="t:" + uuid.uuid4().hex)
    yield store
    await store.aclose()


async def admitted(ledger: KeyLedger, key: VirtualKey, tokens: int = 10) -> Booking:
    found = await ledger.admit(key, tokens)
    assert isinstance(found, Booking), found
    return found


async def refused(ledger: KeyLedger, key: VirtualKey, tokens: int = 10) -> Refusal:
    found = await ledger.admit(key, tokens)
    assert isinstance(found, Refusal), found
    return found


async def settled(ledger: KeyLedger) -> None:
    if isinstance(ledger, RedisLedger):
        await ledger.flush()


async def test_rpm_refuses_the_request_past_the_limit_with_the_wait_of_the_window(
    ledger: KeyLedger,
) -> None:
    key = make_key(rpm=3)
    for _ in range(3):
        ledger.settle(await admitted(ledger, key), 10, 0.0)
    refusal = await refused(ledger, key)
    assert refusal.reason == "rpm"
    assert refusal.retry_after is not None and 50 <= refusal.retry_after <= 60
    other = make_key(rpm=3)  # limits are per key
    await admitted(ledger, other)


async def test_tpm_books_the_estimate_and_settles_with_the_real_tokens(ledger: KeyLedger) -> None:
    key = make_key(tpm=1000)
    first = await admitted(ledger, key, 600)
    refusal = await refused(ledger, key, 500)  # 600 booked + 500 > 1000
    assert refusal.reason == "tpm" and refusal.retry_after is not None
    assert 50 <= refusal.retry_after <= 60
    ledger.settle(first, 100, 0.0)  # it used 100 of the 600 booked: room again
    await settled(ledger)
    await admitted(ledger, key, 500)
    too_large = await refused(ledger, key, 1001)
    assert too_large == Refusal("tpm", None)  # can never pass: no retry


async def test_max_concurrent_is_held_until_settled(ledger: KeyLedger) -> None:
    key = make_key(max_concurrent=2)
    one = await admitted(ledger, key)
    await admitted(ledger, key)
    assert await refused(ledger, key) == Refusal("max_concurrent", 1.0)
    ledger.settle(one, 0, 0.0)
    await settled(ledger)
    await admitted(ledger, key)
    assert (await refused(ledger, key)).reason == "max_concurrent"


async def test_budget_refuses_once_spent_until_the_period_ends(ledger: KeyLedger) -> None:
    key = make_key(budget_usd=1.0, budget_period="day")
    first = await admitted(ledger, key)
    second = await admitted(ledger, key)  # admitted while spend is under the budget
    ledger.settle(first, 10, 0.6)
    await settled(ledger)
    await admitted(ledger, key)  # 0.6 < 1.0
    ledger.settle(second, 10, 0.6)
    await settled(ledger)
    assert await ledger.spent(key) == pytest.approx(1.2)
    refusal = await refused(ledger, key)
    assert refusal.reason == "budget"
    now = dt.datetime.now(dt.timezone.utc)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert refusal.retry_after == pytest.approx((midnight - now).total_seconds(), abs=5)


async def test_a_refusal_books_nothing(ledger: KeyLedger) -> None:
    key = make_key(rpm=1, max_concurrent=5)
    await admitted(ledger, key)
    for _ in range(3):
        await refused(ledger, key)
    # Four in flight would be allowed by max_concurrent: only one is held.
    four = make_key(max_concurrent=1, rpm=1)
    await admitted(ledger, four)
    assert (await refused(ledger, four)).reason == "max_concurrent"


async def test_concurrent_admissions_never_pass_the_limit(ledger: KeyLedger) -> None:
    key = make_key(rpm=7)
    found = await asyncio.gather(*(ledger.admit(key, 1) for _ in range(30)))
    assert sum(isinstance(f, Booking) for f in found) == 7


def test_the_memory_window_slides_with_the_clock() -> None:
    now = [1_000_000.5]
    ledger = MemoryLedger(clock=lambda: now[0])
    key = make_key(rpm=2)
    tokens = make_key(tpm=100)

    async def run() -> None:
        await admitted(ledger, key)
        now[0] += 10
        await admitted(ledger, key)
        refusal = await refused(ledger, key)
        assert refusal.reason == "rpm"
        assert refusal.retry_after == pytest.approx(49.5)  # the first leaves at +59.5
        now[0] += 49.5
        await admitted(ledger, key)
        assert (await refused(ledger, key)).retry_after == pytest.approx(10)  # then +10 leaves
        await admitted(ledger, tokens, 60)
        now[0] += 30
        await admitted(ledger, tokens, 30)
        refusal = await refused(ledger, tokens, 20)
        assert refusal.reason == "tpm" and refusal.retry_after == pytest.approx(30)
        await admitted(ledger, tokens, 10)  # exactly 100
        now[0] += 29.9
        assert (await refused(ledger, tokens, 20)).reason == "tpm"
        now[0] += 0.1
        await admitted(ledger, tokens, 20)

    asyncio.run(run())


def test_budget_periods_are_utc_calendar_days_and_months() -> None:
    t = dt.datetime(2027, 12, 31, 23, 59, 30, tzinfo=dt.timezone.utc).timestamp()
    assert budget_period("day", t) == ("2027-12-31", t + 30)
    assert budget_period("month", t) == ("2027-12", t + 30)
    feb = dt.datetime(2028, 2, 10, tzinfo=dt.timezone.utc).timestamp()
    march = dt.datetime(2028, 3, 1, tzinfo=dt.timezone.utc).timestamp()
    assert budget_period("month", feb) == ("2028-02", march)
    assert budget_period("month", t) == ("2027-12", t + 30)  # the cache follows the clock back


def test_the_memory_budget_resets_with_the_period() -> None:
    now = [dt.datetime(2027, 1, 31, 23, 0, tzinfo=dt.timezone.utc).timestamp()]
    ledger = MemoryLedger(clock=lambda: now[0])
    key = make_key(budget_usd=0.5, budget_period="month")

    async def run() -> None:
        ledger.settle(await admitted(ledger, key), 10, 0.5)
        refusal = await refused(ledger, key)
        assert refusal.reason == "budget" and refusal.retry_after == pytest.approx(3600)
        now[0] += 3600
        await admitted(ledger, key)

    asyncio.run(run())


async def test_a_redis_outage_refuses_limited_keys_with_503() -> None:
    store = RedisLedger("redis://127.0.0.1:1/0", timeout=0.2)  # nothing listens on port 1
    try:
        with pytest.raises(GatewayError) as caught:
            await store.admit(make_key(rpm=5), 10)
        assert caught.value.status == 503 and caught.value.retry_after == 1.0
        assert "127.0.0.1" not in caught.value.message
    finally:
        await store.aclose()


def test_ledger_for_reads_the_state_url() -> None:
    assert isinstance(ledger_for(None), MemoryLedger)
    assert isinstance(ledger_for("memory"), MemoryLedger)
    assert isinstance(ledger_for("redis://127.0.0.1:6379/0"), RedisLedger)
    with pytest.raises(ConfigurationError, match="redis://"):
        ledger_for("postgres://user:secret@db/x")
    try:
        ledger_for("postgres://user:secret@db/x")
    except ConfigurationError as exc:
        assert "secret" not in str(exc)


def test_response_cost_uses_the_instances_price() -> None:
    from flyllm import LlmManager, LlmResponse, TaskDefinition, Usage
    from flyllm.pricing import ModelPrice

    manager = LlmManager(prices={"priced": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)})
    priced = manager.add_provider("openai", "k", "priced", [TaskDefinition("chat")])
    unpriced = manager.add_provider("openai", "k", "no-such-model-anywhere", ["chat"])
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000, total_tokens=1_500_000)
    answer = LlmResponse(content="x", success=True, instance_id=priced, usage=usage)
    assert priced == 0 and manager.response_cost(answer) == pytest.approx(6.0)
    other = LlmResponse(content="x", success=True, instance_id=unpriced, usage=usage)
    assert manager.response_cost(other) is None
    assert manager.response_cost(LlmResponse(content="", success=False)) is None
    manager.remove_instance(priced)
    assert manager.response_cost(answer) is None


async def test_an_absurd_max_tokens_is_a_bounded_estimate(ledger: KeyLedger) -> None:
    from flyllm import GenerationRequest
    from flyllm.server.ledger import MAX_ESTIMATE, estimate_tokens

    request = GenerationRequest(prompt="hi", params={"max_tokens": 10**30})
    tokens = estimate_tokens(request, None)
    assert tokens == MAX_ESTIMATE
    key = make_key(rpm=5)  # no tpm: the estimate is still booked in the window
    ledger.settle(await admitted(ledger, key, tokens), 10, 0.0)
    await settled(ledger)
    await admitted(ledger, key, tokens)
    assert estimate_tokens(GenerationRequest(prompt="x" * 400), 100) == 201
    assert estimate_tokens(GenerationRequest(prompt="x" * 400), None) == 357


async def test_running_calls_reserve_their_estimated_cost(ledger: KeyLedger) -> None:
    key = make_key(budget_usd=1.0)
    first = await ledger.admit(key, 10, 0.6)
    assert isinstance(first, Booking) and first.reserved == 0.6
    await admitted_at(ledger, key, 0.6)  # 0.6 reserved < 1.0
    assert await ledger.admit(key, 10, 0.6) == Refusal("budget_in_flight", 1.0)
    ledger.settle(first, 10, 0.1)  # it cost less than reserved: 0.1 spent + 0.6 reserved
    await settled(ledger)
    await admitted_at(ledger, key, 0.6)
    assert (await ledger.admit(key, 10, 0.01)) == Refusal("budget_in_flight", 1.0)
    assert await ledger.spent(key) == pytest.approx(0.1)


async def admitted_at(ledger: KeyLedger, key: VirtualKey, cost: float) -> Booking:
    found = await ledger.admit(key, 10, cost)
    assert isinstance(found, Booking), found
    return found
