"""Review of the Redis ledger: an admission whose reply never arrives (the socket timed out,
or the client left and cancelled the handler while Redis answered) must not leave its
concurrency slot and reservation booked in Redis for ``booking_ttl`` (15 minutes by default:
a key with ``max_concurrent = 1`` would be locked out that long)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flyllm.server import VirtualKey
from flyllm.server.errors import GatewayError
from flyllm.server.ledger import Booking, MemoryLedger
from flyllm.server.redis_ledger import RedisLedger

KEY = VirtualKey(name="team-a", sha256="0" * 64, max_concurrent=1, budget_usd=1.0)


@pytest.fixture
async def ledger(redis_url: str) -> AsyncIterator[RedisLedger]:
    store = RedisLedger(redis_url, namespace="t:" + uuid.uuid4().hex)
    yield store
    await store.aclose()


def _lose_the_reply(ledger: RedisLedger, then: Any) -> asyncio.Event:
    """The admission script runs in Redis, then ``then()`` happens instead of the reply."""
    script = ledger._admit
    ran = asyncio.Event()

    async def admit(**kwargs: Any) -> Any:
        await script(**kwargs)
        ran.set()
        return await then()

    ledger._admit = admit
    return ran


async def test_a_lost_reply_releases_the_slot(ledger: RedisLedger) -> None:
    real = ledger._admit

    async def timeout() -> Any:
        raise asyncio.TimeoutError

    _lose_the_reply(ledger, timeout)
    with pytest.raises(GatewayError) as caught:
        await ledger.admit(KEY, 10, 0.5)
    assert caught.value.status == 503
    ledger._admit = real
    await ledger.flush()
    assert isinstance(await ledger.admit(KEY, 10, 0.5), Booking)


async def test_a_cancelled_admission_releases_the_slot(ledger: RedisLedger) -> None:
    real = ledger._admit
    ran = _lose_the_reply(ledger, asyncio.Event().wait)
    waiting = asyncio.ensure_future(ledger.admit(KEY, 10, 0.5))
    await asyncio.wait_for(ran.wait(), 5)
    waiting.cancel()  # the client left during the admission
    with pytest.raises(asyncio.CancelledError):
        await waiting
    ledger._admit = real
    await ledger.flush()
    assert isinstance(await ledger.admit(KEY, 10, 0.5), Booking)


async def test_a_call_settled_after_midnight_keeps_the_new_days_spend() -> None:
    """A call admitted before midnight and settled after it counts in its own day; the new
    day's spend, booked meanwhile, must stay (it was deleted: the budget reset mid-day)."""
    now = [dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=dt.timezone.utc).timestamp()]
    ledger = MemoryLedger(clock=lambda: now[0])
    key = VirtualKey(name="team-a", sha256="0" * 64, budget_usd=10.0, budget_period="day")
    late = await ledger.admit(key, 10, 1.0)
    now[0] += 20  # 2027-02-01 00:00:19
    early = await ledger.admit(key, 10, 1.0)
    assert isinstance(late, Booking) and isinstance(early, Booking)
    ledger.settle(early, 10, 6.0)
    ledger.settle(late, 10, 1.0)
    assert await ledger.spent(key) == 6.0
