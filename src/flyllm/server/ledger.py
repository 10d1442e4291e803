"""Virtual keys' limits and budgets, checked and booked atomically per key.

A request with a limited key is admitted by ``KeyLedger.admit`` (one step: check every limit,
then book) before the manager is called, and settled by ``KeyLedger.settle`` on every way out
(answered, failed, cancelled, client gone). The same rules hold in both stores:

- ``rpm`` and ``tpm``: a sliding window of the last 60 one-second buckets (at most ``rpm``
  requests and ``tpm`` tokens in any 60 whole seconds). ``tpm`` books the request's estimate
  (prompt characters / 4 + its ``max_tokens``, or 256 when none is set) at admission and
  corrects it by the real total tokens at settlement. Refused: 429 with ``Retry-After`` the
  seconds until enough buckets leave the window; a request whose estimate alone exceeds
  ``tpm`` can never pass and is refused with 400.
- ``max_concurrent``: held from admission to settlement (streamed or not). Refused: 429 with
  ``Retry-After: 1`` (nobody knows when a running call ends).
- ``budget_usd`` per ``budget_period`` (the UTC calendar day or month): refused (429,
  ``Retry-After`` until the period ends) once the period's spend has reached the budget. Each
  admitted call reserves its estimated cost (its estimated tokens at the highest price in the
  pool) until it ends, when its real cost is added instead; a call is admitted only while
  spend plus reservations is under the budget (else 429, ``Retry-After: 1``). So spend passes
  the budget by at most one call's estimated cost, as long as calls cost no more than their
  estimates (a ``max_tokens`` makes the completion's bound exact; the prompt's is a guess of
  four characters a token).

``MemoryLedger`` is for one process; ``RedisLedger`` (module ``redis_ledger``) shares the
limits between processes and machines. ``ledger_for(state_url)`` picks one from ``--state``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from flyllm.errors import ConfigurationError
from flyllm.server.errors import GatewayError
from flyllm.server.keys import VirtualKey
from flyllm.types import GenerationRequest, LlmResponse, Usage

if TYPE_CHECKING:
    from flyllm.manager import LlmManager
    from flyllm.server.metrics import GatewayMetrics

__all__ = [
    "Booking",
    "KeyGate",
    "KeyLedger",
    "MemoryLedger",
    "Refusal",
    "Ticket",
    "budget_period",
    "estimate",
    "estimate_tokens",
    "ledger_for",
    "refusal_error",
]

_log = logging.getLogger("flyllm")

WINDOW = 60
"""Seconds in the rpm and tpm window (one bucket per second)."""

_DEFAULT_COMPLETION = 256
_MTOK = 1_000_000
_PRICES_TTL = 60.0
MAX_ESTIMATE = 2**40
"""Estimates are capped here, so a caller's absurd ``max_tokens`` stays a number every store
(and Redis's 64-bit counters) can add up: it is still far over any tokens-per-minute limit."""


@dataclass(slots=True)
class Booking:
    """What ``admit`` booked for one request, for ``settle`` to correct and release: the
    estimated ``tokens``, the window ``second`` they went in (0: no window), the concurrency
    booking id ("" none), the budget ``period`` ("" none) and the cost ``reserved`` in it."""

    key: VirtualKey
    tokens: int = 0
    second: int = 0
    booking: str = ""
    period: str = ""
    period_ends: float = 0.0
    reserved: float = 0.0


@dataclass(slots=True, frozen=True)
class Refusal:
    """Why a request was not admitted: ``reason`` is "rpm", "tpm", "max_concurrent", "budget"
    (spent) or "budget_in_flight" (spent or reserved by calls running); ``retry_after`` the
    seconds until it may pass (None: never, it is too large)."""

    reason: str
    retry_after: float | None


class KeyLedger(Protocol):
    """Where the keys' windows, in-flight calls and spend live."""

    async def admit(self, key: VirtualKey, tokens: int, cost: float = 0.0) -> Booking | Refusal:
        """Check every limit of ``key`` for a request of about ``tokens`` tokens and ``cost``
        USD and book it, in one atomic step; a Refusal books nothing."""
        ...

    def settle(self, booking: Booking, tokens: int, cost: float) -> None:
        """The call is over: release its concurrency slot and cost reservation, correct the
        window by the real ``tokens`` and add ``cost`` (USD) to the period's spend. Never
        raises, never waits (a shared store writes in the background): safe on every way out."""
        ...

    async def spent(self, key: VirtualKey) -> float:
        """The current period's spend of ``key`` in USD."""
        ...

    async def aclose(self) -> None:
        """Finish pending writes and close connections."""
        ...


def ledger_for(state_url: str | None) -> KeyLedger:
    """The ledger for ``flyllm serve --state``: a MemoryLedger without one (or "memory"), a
    RedisLedger for a redis://, rediss:// or unix:// URL."""
    if state_url is None or state_url == "memory":
        return MemoryLedger()
    if state_url.startswith(("redis://", "rediss://", "unix://")):
        from flyllm.server.redis_ledger import RedisLedger

        return RedisLedger(state_url)
    raise ConfigurationError(
        f"unknown state store {state_url.split(':', 1)[0]!r}: use a redis:// URL (or none for "
        "one process's memory)"
    )


def estimate_tokens(request: GenerationRequest, task_max_tokens: int | None) -> int:
    """A request's likely tokens before it is sent: a token per four characters of text it
    sends, plus its completion limit (the request's ``max_tokens``, the task's, else 256)."""
    prompt, completion = estimate(request, task_max_tokens)
    return min(prompt + completion, MAX_ESTIMATE)


def estimate(request: GenerationRequest, task_max_tokens: int | None) -> tuple[int, int]:
    """``estimate_tokens`` in its two parts: (prompt, completion), each at most MAX_ESTIMATE."""
    chars = len(request.prompt or "") + len(request.system or "")
    for message in request.messages or ():
        chars += len(message.content)
    limit = (request.params or {}).get("max_tokens") or task_max_tokens
    completion = limit if isinstance(limit, int) and limit > 0 else _DEFAULT_COMPLETION
    return min(chars // 4 + 1, MAX_ESTIMATE), min(completion, MAX_ESTIMATE)


_PERIODS: dict[str, tuple[str, float, float]] = {}  # period -> (id, start, end), the current one


def budget_period(period: str, now: float) -> tuple[str, float]:
    """The id ("2027-01-31" or "2027-01") and end (epoch seconds) of the UTC ``period`` ("day"
    or "month") that contains ``now``."""
    cached = _PERIODS.get(period)
    if cached is not None and cached[1] <= now < cached[2]:
        return cached[0], cached[2]
    t = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    if period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
        ident = start.strftime("%Y-%m-%d")
    else:
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        ident = start.strftime("%Y-%m")
    _PERIODS[period] = (ident, start.timestamp(), end.timestamp())
    return ident, end.timestamp()


def window_wait(
    buckets: dict[int, list[int]], rpm: int | None, tpm: int | None, tokens: int, now: float
) -> float:
    """0 when a request of ``tokens`` fits the window now, else the seconds until enough
    buckets (second -> [requests, tokens]) have left it. The caller has dropped old buckets."""
    requests = sum(b[0] for b in buckets.values())
    used = sum(b[1] for b in buckets.values())
    if _fits(requests, used, rpm, tpm, tokens):
        return 0.0
    for second in sorted(buckets):  # a bucket leaves the window WINDOW seconds after its own
        requests -= buckets[second][0]
        used -= buckets[second][1]
        if _fits(requests, used, rpm, tpm, tokens):
            return max(0.001, second + WINDOW - now)
    return float(WINDOW)


def _fits(requests: int, used: int, rpm: int | None, tpm: int | None, tokens: int) -> bool:
    return (rpm is None or requests + 1 <= rpm) and (tpm is None or used + tokens <= tpm)


@dataclass(slots=True)
class _KeyState:
    buckets: dict[int, list[int]] = field(default_factory=dict)
    in_flight: int = 0
    spend: dict[str, float] = field(default_factory=dict)
    reserved: float = 0.0


class MemoryLedger:
    """The keys' limits in this process's memory (one worker). ``clock`` gives epoch seconds
    (injectable so tests of windows and periods run instantly)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[str, _KeyState] = {}

    def __repr__(self) -> str:
        return f"MemoryLedger({len(self._keys)} keys)"

    async def admit(self, key: VirtualKey, tokens: int, cost: float = 0.0) -> Booking | Refusal:
        now = self._clock()
        state = self._keys.get(key.name)
        if state is None:
            state = self._keys[key.name] = _KeyState()
        if key.max_concurrent is not None and state.in_flight >= key.max_concurrent:
            return Refusal("max_concurrent", 1.0)
        booking = Booking(key)
        if key.budget_usd is not None:
            booking.period, booking.period_ends = budget_period(key.budget_period, now)
            spent = state.spend.get(booking.period, 0.0)
            if spent >= key.budget_usd:
                return Refusal("budget", booking.period_ends - now)
            if spent + state.reserved >= key.budget_usd:
                return Refusal("budget_in_flight", 1.0)
        if key.rpm is not None or key.tpm is not None:
            refusal = self._window(state, key, tokens, now)
            if refusal is not None:
                return refusal
            booking.second, booking.tokens = int(now), tokens
        if key.max_concurrent is not None:
            state.in_flight += 1
            booking.booking = "1"
        if booking.period:
            state.reserved += cost
            booking.reserved = cost
        return booking

    def _window(self, state: _KeyState, key: VirtualKey, tokens: int, now: float) -> Refusal | None:
        if key.tpm is not None and tokens > key.tpm:
            return Refusal("tpm", None)
        second = int(now)
        buckets = state.buckets
        for old in [s for s in buckets if s <= second - WINDOW]:
            del buckets[old]
        wait = window_wait(buckets, key.rpm, key.tpm, tokens, now)
        if wait > 0:
            over_rpm = key.rpm is not None and sum(b[0] for b in buckets.values()) >= key.rpm
            return Refusal("rpm" if over_rpm else "tpm", wait)
        bucket = buckets.get(second)
        if bucket is None:
            bucket = buckets[second] = [0, 0]
        bucket[0] += 1
        bucket[1] += tokens
        return None

    def settle(self, booking: Booking, tokens: int, cost: float) -> None:
        state = self._keys.get(booking.key.name)
        if state is None:
            return
        if booking.booking:
            state.in_flight = max(0, state.in_flight - 1)
        if booking.reserved:
            state.reserved = max(0.0, state.reserved - booking.reserved)
        if booking.second:
            bucket = state.buckets.get(booking.second)
            if bucket is not None:
                bucket[1] += tokens - booking.tokens
        if booking.period and cost > 0:
            state.spend[booking.period] = state.spend.get(booking.period, 0.0) + cost
            # Only earlier periods go: a call admitted before midnight may settle after the
            # next day's calls have booked their spend. (Ids of one kind sort by date.)
            for old in [p for p in state.spend if p < booking.period]:
                del state.spend[old]

    async def spent(self, key: VirtualKey) -> float:
        state = self._keys.get(key.name)
        if state is None:
            return 0.0
        period, _ = budget_period(key.budget_period, self._clock())
        return state.spend.get(period, 0.0)

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class Ticket:
    """One keyed request on its way: its key, what the ledger booked (None: the key has no
    limits), the answer once there is one (the handler sets ``response``), the outcome of
    a stream that failed after its first chunk, and whether output reached the caller
    (``delivered``: a stream that then ends without usage is charged its estimate)."""

    key: VirtualKey
    booking: Booking | None = None
    response: LlmResponse | None = None
    outcome: str | None = None
    delivered: bool = False


class KeyGate:
    """The handler's one door to keys' limits, spend and per-key metrics.

    ``admit`` before the manager call (a 429 or 400 GatewayError when refused), ``finish`` on
    every way out. A key without limits never reaches the ledger; without metrics it costs
    nothing at all.
    """

    def __init__(
        self, manager: LlmManager, ledger: KeyLedger, metrics: GatewayMetrics | None
    ) -> None:
        self.manager = manager
        self.ledger = ledger
        self.metrics = metrics
        self._max_tokens: dict[str | None, int | None] = {}
        self._unpriced: set[int | None] = set()
        self._prices = (0.0, 0.0)  # the pool's highest USD per token: input, output
        self._prices_at = -math.inf

    async def admit(self, key: VirtualKey, request: GenerationRequest) -> Ticket | None:
        """Book ``request`` against ``key``'s limits; the Ticket to finish (None: nothing to
        settle or count)."""
        if not key.limited:
            return Ticket(key) if self.metrics is not None else None
        prompt, completion = estimate(request, self._task_max_tokens(request.task))
        return await self._book(key, prompt, completion)

    async def admit_texts(self, key: VirtualKey, texts: Sequence[str]) -> Ticket | None:
        """``admit`` for an embedding request: its texts are all prompt, nothing is generated."""
        if not key.limited:
            return Ticket(key) if self.metrics is not None else None
        chars = sum(len(text) for text in texts)
        return await self._book(key, min(chars // 4 + 1, MAX_ESTIMATE), 0)

    async def _book(self, key: VirtualKey, prompt: int, completion: int) -> Ticket:
        tokens = min(prompt + completion, MAX_ESTIMATE)
        cost = 0.0
        if key.budget_usd is not None:
            per_input, per_output = self._top_prices()
            cost = prompt * per_input + completion * per_output
        found = await self.ledger.admit(key, tokens, cost)
        if isinstance(found, Refusal):
            self.rejected(key, found.reason)
            raise refusal_error(key, found, tokens)
        return Ticket(key, found)

    def rejected(self, key: VirtualKey, reason: str) -> None:
        """Count a refusal of ``key`` (a limit, or "expired")."""
        if self.metrics is not None:
            self.metrics.rejected(key.name, reason)
            if reason == "expired":  # refused before the handler knows the key: counted here
                self.metrics.request(key.name, reason)

    def finish(self, key: VirtualKey, ticket: Ticket | None, outcome: str) -> None:
        """The request of ``key`` is over with ``outcome`` ("ok" or an error kind): settle its
        booking with the real tokens and cost, and count it. Never raises."""
        if ticket is None:
            if self.metrics is not None:
                self.metrics.request(key.name, outcome)
            return
        response = ticket.response
        cost = self._cost(key, response)
        booking = ticket.booking
        if booking is not None and response is None and ticket.delivered:
            # Text went out but the usage never came (the client left, the stream broke):
            # the upstream billed it, so the key pays its estimate rather than nothing (a
            # pool without prices estimates nothing: the budget counts as spent, as _cost).
            spent = booking.reserved or (key.budget_usd if booking.period else 0.0)
            self.ledger.settle(booking, booking.tokens, spent or 0.0)
        elif booking is not None:
            tokens = response.usage.total_tokens if response is not None else 0
            self.ledger.settle(booking, tokens, cost or 0.0)
        if self.metrics is not None:
            if response is not None:
                self.metrics.used(key.name, response.usage, cost)
            self.metrics.request(key.name, ticket.outcome or outcome)

    def _cost(self, key: VirtualKey, response: LlmResponse | None) -> float | None:
        if response is None or (key.budget_usd is None and self.metrics is None):
            return None
        cost = self.manager.response_cost(response)
        if cost is None and key.budget_usd is not None and response.usage.total_tokens:
            # Spend that cannot be priced cannot be checked: the budget counts as spent.
            if response.instance_id not in self._unpriced:
                self._unpriced.add(response.instance_id)
                _log.error(
                    "gateway: instance %s has no known price, so key %r's budget counts as "
                    "spent after its answer: set the instance's price in the config",
                    response.instance_id, key.name,
                )  # fmt: skip
            return key.budget_usd
        return cost

    def _top_prices(self) -> tuple[float, float]:
        """The highest input and output price per token among the pool's priced instances
        (the call may go to any of them), looked up again once a minute."""
        now = time.monotonic()
        if now - self._prices_at >= _PRICES_TTL:
            self._prices_at = now
            top_in = top_out = 0.0
            for info in self.manager.instances():
                per_in = self._unit_cost(info.id, Usage(prompt_tokens=_MTOK))
                per_out = self._unit_cost(info.id, Usage(completion_tokens=_MTOK))
                top_in, top_out = max(top_in, per_in), max(top_out, per_out)
            self._prices = (top_in, top_out)
        return self._prices

    def _unit_cost(self, instance_id: int, usage: Usage) -> float:
        probe = LlmResponse(content="", success=True, instance_id=instance_id, usage=usage)
        return (self.manager.response_cost(probe) or 0.0) / _MTOK

    def _task_max_tokens(self, task: str | None) -> int | None:
        if task not in self._max_tokens:
            definition = self.manager.tasks.get(task) if task is not None else None
            limit = definition.parameters.get("max_tokens") if definition is not None else None
            self._max_tokens[task] = limit if isinstance(limit, int) else None
        return self._max_tokens[task]


def refusal_error(key: VirtualKey, refusal: Refusal, tokens: int) -> GatewayError:
    """The caller's error for a refusal: 429 with Retry-After, or 400 for a request too large
    for the key's tokens per minute ever to pass."""
    wait = refusal.retry_after
    if wait is None:
        return GatewayError(
            400, "invalid_request", f"this request's estimated {tokens} tokens exceed key "
            f"{key.name!r}'s limit of {key.tpm} tokens per minute: send less text or a lower "
            "max_tokens", code="tokens_over_limit",
        )  # fmt: skip
    seconds = max(1, math.ceil(wait))
    reason = refusal.reason
    if reason == "budget":
        text = (f"key {key.name!r} has spent its budget of {key.budget_usd} USD for this UTC "
                f"{key.budget_period}; it resets in {seconds} s")  # fmt: skip
        return GatewayError(429, "rate_limit", text, retry_after=wait, code="insufficient_quota")
    if reason == "budget_in_flight":
        text = (f"key {key.name!r}'s budget of {key.budget_usd} USD for this UTC "
                f"{key.budget_period} is spent or reserved by its calls running; retry when "
                "one ends")  # fmt: skip
        return GatewayError(429, "rate_limit", text, retry_after=wait, code="rate_limit_exceeded")
    if reason == "max_concurrent":
        text = (f"key {key.name!r} already has {key.max_concurrent} requests running (its "
                "max_concurrent); retry when one ends")  # fmt: skip
    elif reason == "rpm":
        text = f"key {key.name!r} is over its {key.rpm} requests per minute; retry in {seconds} s"
    else:
        text = (f"key {key.name!r} is over its {key.tpm} tokens per minute (this request is "
                f"estimated at {tokens}); retry in {seconds} s")  # fmt: skip
    return GatewayError(429, "rate_limit", text, retry_after=wait, code="rate_limit_exceeded")
