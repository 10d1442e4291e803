"""RedisStore: instance stats shared by every process that uses the same Redis and config.

One round trip before an attempt: a server-side script takes the candidates in the caller's
order of preference and atomically books the first that every process together has room for
(cooldowns, open circuits and their single half-open probe, requests and tokens per minute,
concurrent requests), returning a snapshot of all of them so the local strategy sees the
others' traffic. After the attempt, its record (usage, latency, failure, cooldown) is queued
and written by a background task in pipelined batches: the caller never waits for it.

Redis down or slow: requests go on with this process's own state (a warning is logged once per
outage), records wait in a bounded queue and are written when Redis is back, so usage totals
resync. An attempt booked while Redis was down adds its counts (requests, failures, tokens)
only: its latency, cooldown and circuit state are stale by the time it is written. Past
``max_pending`` waiting records, newer ones are dropped, counted in ``dropped_records`` and
logged once per outage: the totals in Redis are then short by them. Instances are keyed by
``shared_key`` (provider, model, base URL, a hash of the key).
Requires the ``flyllm[redis]`` extra (redis-py with hiredis).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from flyllm._display import mask_url
from flyllm.errors import ConfigurationError, FlyLLMError
from flyllm.routing.state import Booking, MemoryStore, shared_key
from flyllm.types import ErrorKind, Usage

if TYPE_CHECKING:
    from flyllm.routing.instance import LlmInstance

__all__ = ["RedisStore", "StateStoreError"]  # and redis_client, for the keys' ledger

_log = logging.getLogger("flyllm")

# KEYS: per candidate (stats hash, in-flight zset, window hash), then the selection counter.
# ARGV: n, tokens, booking id, booking ttl, then per candidate rpm, tpm, max concurrent (0: none).
# Returns {picked index (0-based, -1 none), earliest wait, window slot second, per candidate:
# in flight, last selected, latency average, wait}.
_ACQUIRE = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1e6
local n, tokens, bid, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local picked, earliest, out = -1, -1, {}
for i = 1, n do
  local h, f, w = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local rpm, tpm, maxc = tonumber(ARGV[2+3*i]), tonumber(ARGV[3+3*i]), tonumber(ARGV[4+3*i])
  local v = redis.call('HMGET', h, 'ready', 'open', 'probe', 'hold', 'sel', 'lat')
  local wait = math.max(0, tonumber(v[1] or '0') - now, tonumber(v[4] or '0') - now)
  redis.call('ZREMRANGEBYSCORE', f, '-inf', now)
  local inflight = redis.call('ZCARD', f)
  local open = v[2] == '1'
  if open and wait == 0 and tonumber(v[3] or '0') > now then
    wait = tonumber(v[3]) - now
  end
  if wait == 0 and maxc > 0 and inflight >= maxc then wait = 0.05 end
  local slots = {}
  if wait == 0 and (rpm > 0 or tpm > 0) then
    local raw = redis.call('HGETALL', w)
    local rsum, tsum, oldest = 0, 0, sec
    for j = 1, #raw, 2 do
      local name, val = raw[j], tonumber(raw[j+1])
      if string.sub(name, 1, 1) == 's' and val > sec - 60 then
        slots[string.sub(name, 2)] = val
        if val < oldest then oldest = val end
      end
    end
    for j = 1, #raw, 2 do
      local kind, slot = string.sub(raw[j], 1, 1), string.sub(raw[j], 2)
      if slots[slot] then
        if kind == 'r' then rsum = rsum + tonumber(raw[j+1]) end
        if kind == 't' then tsum = tsum + tonumber(raw[j+1]) end
      end
    end
    if (rpm > 0 and rsum + 1 > rpm) or (tpm > 0 and tsum + tokens > tpm) then
      wait = math.max(0.05, oldest + 60 - now)
    end
  end
  if picked < 0 and wait == 0 then
    picked = i - 1
    local seq = redis.call('INCR', KEYS[3*n+1])
    redis.call('HSET', h, 'sel', seq)
    v[5] = seq
    redis.call('ZADD', f, now + ttl, bid)
    inflight = inflight + 1
    if open then redis.call('HSET', h, 'probe', now + ttl) end
    if rpm > 0 or tpm > 0 then
      local slot = tostring(sec % 60)
      if tonumber(redis.call('HGET', w, 's' .. slot) or '0') ~= sec then
        redis.call('HSET', w, 's' .. slot, sec, 'r' .. slot, 0, 't' .. slot, 0)
      end
      redis.call('HINCRBY', w, 'r' .. slot, 1)
      redis.call('HINCRBY', w, 't' .. slot, tokens)
      redis.call('EXPIRE', w, 120)
    end
  elseif wait > 0 and (earliest < 0 or wait < earliest) then
    earliest = wait
  end
  table.insert(out, inflight)
  table.insert(out, tonumber(v[5] or '-1'))
  table.insert(out, tostring(v[6] or ''))
  table.insert(out, tostring(wait))
end
return {picked, tostring(earliest), sec, unpack(out)}
"""

# KEYS: stats hash, in-flight zset, window hash. ARGV: mode (ok|fail|gone), booking id,
# window slot second, tokens booked, then for ok: latency, prompt, completion, total, cached,
# hold seconds; for fail: cooldown seconds, open (0/1). An empty booking id: booked while
# Redis was down, so only the counts are added.
_RECORD = """
local h, f, w = KEYS[1], KEYS[2], KEYS[3]
local mode, bid, slotsec, booked = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if bid == '' then
  redis.call('HINCRBY', h, 'req', 1)
  if mode == 'ok' then
    redis.call('HINCRBY', h, 'pt', ARGV[6])
    redis.call('HINCRBY', h, 'ct', ARGV[7])
    redis.call('HINCRBY', h, 'tt', ARGV[8])
    redis.call('HINCRBY', h, 'cached', ARGV[9])
  elseif mode == 'fail' then
    redis.call('HINCRBY', h, 'fail', 1)
  end
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREM', f, bid)
if mode == 'gone' then
  if redis.call('HGET', h, 'open') == '1' then redis.call('HDEL', h, 'probe') end
  return 0
end
local used = 0
if mode == 'ok' then used = tonumber(ARGV[8]) end
if slotsec > 0 then
  local slot = tostring(slotsec % 60)
  if tonumber(redis.call('HGET', w, 's' .. slot) or '0') == slotsec then
    redis.call('HINCRBY', w, 't' .. slot, used - booked)
  end
end
redis.call('HINCRBY', h, 'req', 1)
if mode == 'ok' then
  local lat = tonumber(ARGV[5])
  local avg = tonumber(redis.call('HGET', h, 'lat') or '')
  if avg then lat = avg + 0.2 * (lat - avg) end
  redis.call('HSET', h, 'lat', tostring(lat), 'open', 0)
  redis.call('HDEL', h, 'probe')
  redis.call('HINCRBY', h, 'pt', ARGV[6])
  redis.call('HINCRBY', h, 'ct', ARGV[7])
  redis.call('HINCRBY', h, 'tt', ARGV[8])
  redis.call('HINCRBY', h, 'cached', ARGV[9])
  local hold = tonumber(ARGV[10])
  if hold > 0 then redis.call('HSET', h, 'hold', tostring(now + hold)) end
else
  redis.call('HINCRBY', h, 'fail', 1)
  local cooldown = tonumber(ARGV[5])
  if cooldown > 0 then
    local ready = math.max(tonumber(redis.call('HGET', h, 'ready') or '0'), now + cooldown)
    redis.call('HSET', h, 'ready', tostring(ready))
  end
  redis.call('HSET', h, 'open', ARGV[6])
  redis.call('HDEL', h, 'probe')
end
return 1
"""


class StateStoreError(FlyLLMError):
    """The shared state store could not be read (Redis down, unreachable or refusing): raised
    by the calls that read totals; the attempt loop itself goes on with local state."""


class RedisStore:
    """Instance stats shared through Redis (``LlmManager(state="redis://host:6379/0")``).

    ``namespace`` prefixes every key (separate fleets on one Redis); ``booking_ttl`` bounds how
    long a crashed process's in-flight bookings count; ``retry_after`` is how long to run on
    local state after Redis failed before trying it again; ``max_pending`` bounds the records
    waiting for Redis (``dropped_records`` counts those refused past it).
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        namespace: str = "flyllm",
        booking_ttl: float = 600.0,
        timeout: float = 0.25,
        retry_after: float = 2.0,
        max_pending: int = 100_000,
    ) -> None:
        self._client, self._errors = redis_client(url, timeout, "a redis:// state store")
        self.url = url
        self.namespace = namespace
        self._acquire_script = self._client.register_script(_ACQUIRE)
        self._record_script = self._client.register_script(_RECORD)
        self._local = MemoryStore(clock)
        self._clock = clock
        self._ttl = booking_ttl
        self._retry_after = retry_after
        self._down_until = 0.0
        self._warned = False
        self._warned_full = False
        # Records waiting to be written: (keys, script args), or (keys, labels) for a label.
        self._pending: collections.deque[tuple[list[str], Any]] = collections.deque()
        self._max_pending = max_pending
        self.dropped_records = 0
        """Records not written to Redis because ``max_pending`` were already waiting."""
        self._flushing: asyncio.Task[None] | None = None
        self._keys: dict[int, list[str]] = {}
        # The shared booking acquire() just made; begin() takes it in the same loop turn (the
        # attempt loop calls one right after the other, with no await between).
        self._just_booked: tuple[str, int] | None = None

    def __repr__(self) -> str:
        return f"RedisStore({self.namespace!r})"  # the URL may hold a password

    # -- the attempt loop's calls ------------------------------------------------------------

    async def acquire(
        self, ordered: Sequence[LlmInstance], tokens: int
    ) -> tuple[int | None, float]:
        now = self._clock()
        if now < self._down_until:
            return await self._local.acquire(ordered, tokens)
        keys: list[str] = []
        args: list[Any] = [len(ordered), tokens, uuid.uuid4().hex, self._ttl]
        for instance in ordered:
            keys += self._instance_keys(instance)
            limiter = instance.limiter
            args += [limiter.rpm or 0, limiter.tpm or 0, limiter.max_concurrent or 0]
        keys.append(f"{self.namespace}:seq")
        try:
            reply = await self._acquire_script(keys=keys, args=args)
        except self._errors as exc:
            self._went_down(exc)
            return await self._local.acquire(ordered, tokens)
        self._came_back()
        picked, earliest, slot_second = int(reply[0]), float(reply[1]), int(reply[2])
        self._mirror(ordered, reply[3:], now)
        if picked >= 0:  # the snapshot counted the booking just made: it is ours, not remote
            stats = ordered[picked].stats
            stats.remote_in_flight = max(0, stats.remote_in_flight - 1)
        if picked < 0:
            return None, earliest if earliest > 0 else 0.05
        self._just_booked = (args[2], slot_second)
        return picked, 0.0

    def begin(self, instance: LlmInstance, now: float, tokens: int, seq: int) -> Booking:
        booking = self._local.begin(instance, now, tokens, seq)
        if self._just_booked is not None:
            booking.shared_id, booking.shared_slot = self._just_booked
            self._just_booked = None
        return booking

    def succeeded(
        self, booking: Booking, latency: float, usage: Usage, hold_until: float | None
    ) -> None:
        self._local.succeeded(booking, latency, usage, hold_until)
        hold = max(0.0, hold_until - self._clock()) if hold_until is not None else 0.0
        self._record(booking, "ok", [latency, usage.prompt_tokens, usage.completion_tokens,
                                     usage.total_tokens, usage.cached_tokens, hold])  # fmt: skip

    def failed(self, booking: Booking, kind: ErrorKind, retry_after: float | None) -> None:
        self._local.failed(booking, kind, retry_after)
        breaker = booking.instance.breaker
        cooldown = breaker.cooldown_left(self._clock())
        self._record(booking, "fail", [cooldown, 1 if breaker.state == "open" else 0])

    def abandoned(self, booking: Booking) -> None:
        self._local.abandoned(booking)
        self._record(booking, "gone", [])

    async def totals(self, instances: Sequence[LlmInstance]) -> dict[int, dict[str, int]]:
        """Usage totals from Redis, across every process and restart (StateStoreError when
        Redis cannot be read)."""
        async with self._reading():
            return await self._totals(instances)

    async def all_totals(self) -> list[dict[str, Any]]:
        """Every instance this namespace has seen, from any process: its labels (name, provider,
        model, base URL) and usage totals (StateStoreError when Redis cannot be read)."""
        async with self._reading():
            return await self._all_totals()

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StateStoreError(
                f"the shared state store at {mask_url(self.url)} cannot be read "
                f"({type(exc).__name__}: {exc}); check that Redis is up and the URL is right"
            ) from None

    async def _totals(self, instances: Sequence[LlmInstance]) -> dict[int, dict[str, int]]:
        await self.flush()
        fields = ("req", "fail", "pt", "ct", "tt", "cached")
        names = ("requests", "failures", "prompt_tokens", "completion_tokens", "total_tokens",
                 "cached_tokens")  # fmt: skip
        out: dict[int, dict[str, int]] = {}
        for instance in instances:
            values = await self._client.hmget(self._instance_keys(instance)[0], fields)
            out[instance.id] = {n: int(v or 0) for n, v in zip(names, values, strict=True)}
        return out

    async def _all_totals(self) -> list[dict[str, Any]]:
        await self.flush()
        rows = []
        async for key in self._client.scan_iter(match=f"{self.namespace}:i:*", count=500):
            data = await self._client.hgetall(key)
            rows.append({
                "name": data.get("name", key), "provider": data.get("provider", "?"),
                "model": data.get("model", "?"), "base_url": data.get("base_url", ""),
                "requests": int(data.get("req", 0)), "failures": int(data.get("fail", 0)),
                "prompt_tokens": int(data.get("pt", 0)),
                "completion_tokens": int(data.get("ct", 0)),
                "total_tokens": int(data.get("tt", 0)), "cached_tokens": int(data.get("cached", 0)),
            })  # fmt: skip
        return sorted(rows, key=lambda r: (r["provider"], r["model"], r["name"]))

    async def flush(self) -> None:
        """Write every queued record now."""
        while self._pending:
            if not await self._write_batch():
                return

    async def aclose(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        with contextlib.suppress(*self._errors):
            await self.flush()
        await self._client.aclose()

    # -- internals ---------------------------------------------------------------------------

    def _instance_keys(self, instance: LlmInstance) -> list[str]:
        keys = self._keys.get(id(instance))
        if keys is None:
            endpoint = instance.endpoint
            sk = shared_key(instance.provider_type.value, endpoint.model, endpoint.base_url,
                            endpoint.api_key)  # fmt: skip
            ns = self.namespace
            keys = [f"{ns}:i:{sk}", f"{ns}:f:{sk}", f"{ns}:w:{sk}"]
            self._keys[id(instance)] = keys
            labels = {"name": instance.name, "provider": instance.provider_type.value,
                      "model": endpoint.model, "base_url": mask_url(endpoint.base_url)}  # fmt: skip
            self._enqueue((keys, labels))  # so any process can list it (never the key)
        return keys

    def _mirror(self, ordered: Sequence[LlmInstance], snapshot: list[Any], now: float) -> None:
        """Show the local strategy what every process did: requests in flight elsewhere, last
        selection, latency and cooldowns. (This process's own in-flight count stays its own.)"""
        for i, instance in enumerate(ordered):
            in_flight, selected, latency, wait = snapshot[4 * i : 4 * i + 4]
            stats = instance.stats
            stats.remote_in_flight = max(0, int(in_flight) - stats.in_flight)
            stats.last_selected = max(stats.last_selected, int(selected))
            if latency:
                stats.latency_avg = float(latency)
            if float(wait) > 0:
                instance.breaker.ready_at = max(instance.breaker.ready_at, now + float(wait))

    def _record(self, booking: Booking, mode: str, extra: list[Any]) -> None:
        if booking.shared_id is None and mode == "gone":
            return  # booked while Redis was down: nothing to release there, nothing to count
        keys = self._instance_keys(booking.instance)
        bid = booking.shared_id or ""  # "": the script adds the counts only
        args = [mode, bid, booking.shared_slot or 0, booking.tokens, *extra]
        self._enqueue((keys, args))
        down = self._clock() < self._down_until  # _came_back() flushes when Redis answers
        if not down and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.ensure_future(self._flush_soon())

    def _enqueue(self, item: tuple[list[str], Any]) -> None:
        if len(self._pending) < self._max_pending:
            self._pending.append(item)
            return
        self.dropped_records += 1
        if not self._warned_full:
            self._warned_full = True
            _log.warning("shared state store: %d records waiting for it already; dropping "
                         "newer ones (its usage totals will be short by them)",
                         self._max_pending)  # fmt: skip

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0)  # let records of the same loop turn join this batch
        try:
            await self.flush()
        except self._errors as exc:
            self._went_down(exc)

    async def _write_batch(self) -> bool:
        batch = [self._pending.popleft() for _ in range(min(len(self._pending), 500))]
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for keys, args in batch:
                    if isinstance(args, dict):
                        pipe.hset(keys[0], mapping=args)
                    else:
                        await self._record_script(keys=keys, args=args, client=pipe)
                await pipe.execute()
        except self._errors as exc:
            self._pending.extendleft(reversed(batch))  # kept for when Redis is back
            self._went_down(exc)
            return False
        return True

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self._retry_after
        if not self._warned:
            self._warned = True
            _log.warning("shared state store unreachable (%s); going on with local state",
                         type(exc).__name__)  # fmt: skip

    def _came_back(self) -> None:
        if self._warned:
            self._warned = self._warned_full = False
            _log.warning("shared state store reachable again; resyncing")
            if self._pending and (self._flushing is None or self._flushing.done()):
                self._flushing = asyncio.ensure_future(self._flush_soon())


def redis_client(url: str, timeout: float, who: str) -> tuple[Any, tuple[type[BaseException], ...]]:
    """A redis-py asyncio client for ``url`` (decoded responses, ``timeout`` for connecting and
    for each reply) and the exceptions that mean Redis is out of reach. ``who`` names the
    caller in the error when the redis extra is missing. Never shows a password."""
    try:
        import redis.asyncio as aioredis
        import redis.exceptions
    except ImportError:
        raise ConfigurationError(
            f"{who} needs the redis extra: pip install 'flyllm[redis]'"
        ) from None
    errors: tuple[type[BaseException], ...] = (
        redis.exceptions.RedisError,
        OSError,
        asyncio.TimeoutError,
    )
    try:
        client = aioredis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
    except ValueError:  # redis-py's own words may quote part of a password: not shown
        raise ConfigurationError(
            f"invalid Redis URL {mask_url(url)}: expected redis://[user:password@]host:port/db "
            "(or rediss://, unix://), with a password's special characters percent-encoded"
        ) from None
    return client, errors
