"""RedisLedger: virtual keys' limits and budgets shared by every gateway process on one Redis.

Admission is one server-side script (check every limit, then book, atomically: two processes
can never both take the last slot); settlement is another, written in the background so the
handler never waits for it. The rules are those of flyllm.server.ledger; windows use Redis's
clock (one clock for every process), budget periods the gateway's UTC wall clock.

Redis down, slow or refusing: requests of keys WITH limits are refused with 503 (fail-closed:
a budget that cannot be checked is not enforced otherwise, and per-process fallbacks would
multiply every limit by the number of processes); keys without limits never touch Redis and
go on. A settlement that cannot be written is lost: its concurrency slot expires after
``booking_ttl`` seconds, its spend is not counted. Requires the ``flyllm[redis]`` extra.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from flyllm.routing.redis_state import redis_client
from flyllm.server.errors import GatewayError
from flyllm.server.keys import VirtualKey
from flyllm.server.ledger import WINDOW, Booking, Refusal, budget_period

__all__ = ["RedisLedger"]

_log = logging.getLogger("flyllm")

# KEYS: window hash (fields r<second>, t<second>), in-flight zset, spend of the period,
# reservations zset (booking id by expiry) and hash (booking id -> USD).
# ARGV: rpm, tpm, max concurrent (0: none), budget (-1: none), tokens, booking id, booking ttl,
# seconds until the period ends, window seconds, cost to reserve.
# Returns {reason ('' admitted), retry after (-1: never), window second booked (0: none)}.
_ADMIT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1e6
local rpm, tpm, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, tokens, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[7])
local window = tonumber(ARGV[9])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxc then return {'max_concurrent', '1', 0} end
end
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  if spent >= budget then return {'budget', ARGV[8], 0} end
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
    redis.call('HDEL', KEYS[5], gone)  -- a crashed process's reservation, past its ttl
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local reserved = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[5])) do reserved = reserved + tonumber(v) end
  if spent + reserved >= budget then return {'budget_in_flight', '1', 0} end
end
local booked = 0
if rpm > 0 or tpm > 0 then
  if tpm > 0 and tokens > tpm then return {'tpm', '-1', 0} end
  local raw = redis.call('HGETALL', KEYS[1])
  local secs, r, tk, rsum, tsum = {}, {}, {}, 0, 0
  for j = 1, #raw, 2 do
    local kind, s, v = string.sub(raw[j], 1, 1), tonumber(string.sub(raw[j], 2)), tonumber(raw[j+1])
    if s <= sec - window then
      redis.call('HDEL', KEYS[1], raw[j])
    elseif kind == 'r' then
      rsum = rsum + v
      r[s] = v
      table.insert(secs, s)
    else
      tsum = tsum + v
      tk[s] = v
    end
  end
  local function fits()
    return (rpm == 0 or rsum + 1 <= rpm) and (tpm == 0 or tsum + tokens <= tpm)
  end
  if not fits() then
    local reason = 'tpm'
    if rpm > 0 and rsum + 1 > rpm then reason = 'rpm' end
    table.sort(secs)
    local wait = window
    for _, s in ipairs(secs) do
      rsum = rsum - r[s]
      tsum = tsum - (tk[s] or 0)
      if fits() then
        wait = math.max(0.001, s + window - now)
        break
      end
    end
    return {reason, tostring(wait), 0}
  end
  redis.call('HINCRBY', KEYS[1], 'r' .. sec, 1)
  redis.call('HINCRBY', KEYS[1], 't' .. sec, tokens)
  redis.call('EXPIRE', KEYS[1], 2 * window)
  booked = sec
end
if maxc > 0 then
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
  redis.call('EXPIRE', KEYS[2], math.ceil(ttl) + 60)
end
if budget >= 0 and tonumber(ARGV[10]) > 0 then
  redis.call('ZADD', KEYS[4], now + ttl, ARGV[6])
  redis.call('HSET', KEYS[5], ARGV[6], ARGV[10])
  redis.call('EXPIRE', KEYS[4], math.ceil(ttl) + 60)
  redis.call('EXPIRE', KEYS[5], math.ceil(ttl) + 60)
end
return {'', '0', booked}
"""

# KEYS: as _ADMIT. ARGV: window second (0: none), tokens booked, tokens used, booking id ('':
# none), cost, seconds the spend key lives, 1 when a cost was reserved.
_SETTLE = """
local sec = tonumber(ARGV[1])
if sec > 0 and redis.call('HEXISTS', KEYS[1], 'r' .. sec) == 1 then
  redis.call('HINCRBY', KEYS[1], 't' .. sec, tonumber(ARGV[3]) - tonumber(ARGV[2]))
end
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[2], ARGV[4]) end
if ARGV[7] == '1' then
  redis.call('ZREM', KEYS[4], ARGV[4])
  redis.call('HDEL', KEYS[5], ARGV[4])
end
if tonumber(ARGV[5]) > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
return 1
"""


class RedisLedger:
    """The keys' limits in Redis (``flyllm serve --state redis://...``), shared by every
    process with the same ``namespace``. ``booking_ttl`` bounds how long a crashed process's
    calls hold their concurrency slots; ``timeout`` bounds each Redis call."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "flyllm:gw",
        booking_ttl: float = 900.0,
        timeout: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client, self._errors = redis_client(url, timeout, "--state redis://...")
        self.url = url
        self.namespace = namespace
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)
        self._ttl = booking_ttl
        self._clock = clock
        self._keys: dict[str, tuple[str, ...]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._warned = False

    def __repr__(self) -> str:
        return f"RedisLedger({self.namespace!r})"  # the URL may hold a password

    def _redis_keys(self, key: VirtualKey, period: str) -> list[str]:
        base = self._keys.get(key.name)
        if base is None:
            prefix = f"{self.namespace}:{key.name}"
            base = self._keys[key.name] = (
                f"{prefix}:w", f"{prefix}:c", f"{prefix}:b:", f"{prefix}:r", f"{prefix}:rv"
            )  # fmt: skip
        return [base[0], base[1], base[2] + period, base[3], base[4]]

    async def admit(self, key: VirtualKey, tokens: int, cost: float = 0.0) -> Booking | Refusal:
        now = self._clock()
        booking = Booking(key, tokens=tokens)
        if key.budget_usd is not None:
            booking.period, booking.period_ends = budget_period(key.budget_period, now)
            booking.reserved = cost
        if key.max_concurrent is not None or booking.reserved > 0:
            booking.booking = uuid.uuid4().hex
        args = [
            key.rpm or 0, key.tpm or 0, key.max_concurrent or 0,
            -1 if key.budget_usd is None else key.budget_usd, tokens, booking.booking,
            self._ttl, max(1.0, booking.period_ends - now), WINDOW, repr(booking.reserved),
        ]  # fmt: skip
        try:
            reply = await self._admit(keys=self._redis_keys(key, booking.period), args=args)
        except asyncio.CancelledError:
            self._release(booking)  # the client left while Redis may have booked it
            raise
        except self._errors as exc:
            self._release(booking)  # a lost reply: the script may still have run
            raise GatewayError(
                503, "unavailable", "the gateway cannot check this key's limits now (its state "
                f"store does not answer: {type(exc).__name__}); retry shortly",
                retry_after=1.0,
            ) from None  # fmt: skip
        reason, wait, second = reply[0], float(reply[1]), int(reply[2])
        if reason:
            return Refusal(reason, None if wait < 0 else wait)
        booking.second = second
        return booking

    def _release(self, booking: Booking) -> None:
        """Free the slot and the reservation of an admission whose reply never came (else
        they stay booked for ``booking_ttl``); its window share stays, as its second is not
        known."""
        if booking.booking:
            self.settle(booking, booking.tokens, 0.0)

    def settle(self, booking: Booking, tokens: int, cost: float) -> None:
        keep = max(1, int(booking.period_ends - self._clock())) + 86400
        reserved = "1" if booking.reserved > 0 else "0"
        args = [booking.second, booking.tokens, tokens, booking.booking, repr(cost), keep, reserved]
        keys = self._redis_keys(booking.key, booking.period)
        task = asyncio.ensure_future(self._write(keys, args))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, keys: list[str], args: list[Any]) -> None:
        try:
            await self._settle(keys=keys, args=args)
        except self._errors as exc:
            if not self._warned:
                self._warned = True
                _log.warning("gateway key ledger: a settlement was lost (%s): its spend is not "
                             "counted", type(exc).__name__)  # fmt: skip

    async def spent(self, key: VirtualKey) -> float:
        await self.flush()
        period, _ = budget_period(key.budget_period, self._clock())
        value = await self._client.get(self._redis_keys(key, period)[2])
        return float(value or 0.0)

    async def flush(self) -> None:
        """Wait for every settlement written in the background."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.flush()
        await self._client.aclose()
