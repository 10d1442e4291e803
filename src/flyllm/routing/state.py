"""Where instance stats live: the state-store interface and the in-memory store.

The stats the manager and strategies read (in flight, last selected, latency average, failures
and breaker state, cooldowns, rate windows, usage totals) are kept on each instance
(``InstanceStats``, ``CircuitBreaker``, ``RateLimiter``); a store decides how they are booked
and recorded. ``MemoryStore`` (the default) does it in this process with no I/O. ``RedisStore``
(flyllm.routing.redis_state, the ``flyllm[redis]`` extra) shares them between processes: one atomic
server-side script before each attempt, and the records after it written in the background.

The attempt loop calls, per attempt: ``acquire`` (which of the locally ready candidates, in the
strategy's order, may take the request now), then ``begin`` and exactly one of ``succeeded``,
``failed`` or ``abandoned``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flyllm.types import ErrorKind, Usage

if TYPE_CHECKING:
    from flyllm.routing.instance import LlmInstance

__all__ = ["Booking", "MemoryStore", "StateStore", "shared_key"]


@dataclass(slots=True)
class Booking:
    """One attempt's hold on an instance: its token booking in the local rate window and, for
    shared stores, the id of its booking in the shared state."""

    instance: LlmInstance
    tokens: int
    local: list[float] | None = None
    shared_id: str | None = None
    shared_slot: int | None = None


class StateStore(Protocol):
    """How instance stats are booked and recorded."""

    shared: bool
    """True when other processes see the same stats."""

    async def acquire(
        self, ordered: Sequence[LlmInstance], tokens: int
    ) -> tuple[int | None, float]:
        """The index of the first candidate (already ready locally, in preference order) that may
        take a request of about ``tokens`` tokens now, or (None, seconds until one may)."""
        ...

    def begin(self, instance: LlmInstance, now: float, tokens: int, seq: int) -> Booking:
        """Book the attempt on the instance: in flight, last selected, rate windows."""
        ...

    def succeeded(
        self, booking: Booking, latency: float, usage: Usage, hold_until: float | None
    ) -> None:
        """Record a success (``hold_until``: the provider's headers say its window is spent)."""
        ...

    def failed(self, booking: Booking, kind: ErrorKind, retry_after: float | None) -> None:
        """Record a failed attempt."""
        ...

    def abandoned(self, booking: Booking) -> None:
        """The caller left during the attempt: free its slot, count nothing."""
        ...

    async def totals(self, instances: Sequence[LlmInstance]) -> dict[int, dict[str, int]]:
        """Usage totals per instance id (for a shared store: across every process and restart)."""
        ...

    async def aclose(self) -> None:
        """Flush what is pending and release connections."""
        ...


class MemoryStore:
    """Stats in this process only: no I/O, nothing shared (the default)."""

    shared = False

    def __init__(self, clock: Any) -> None:
        self._clock = clock

    async def acquire(
        self, ordered: Sequence[LlmInstance], tokens: int
    ) -> tuple[int | None, float]:
        return (0, 0.0) if ordered else (None, float("inf"))

    def begin(self, instance: LlmInstance, now: float, tokens: int, seq: int) -> Booking:
        instance.stats.last_selected = seq
        instance.stats.in_flight += 1
        instance.breaker.begin()
        return Booking(instance, tokens, instance.limiter.acquire(now, tokens))

    def succeeded(
        self, booking: Booking, latency: float, usage: Usage, hold_until: float | None
    ) -> None:
        instance = booking.instance
        instance.stats.in_flight -= 1
        instance.stats.record_success(latency, usage)
        instance.breaker.success()
        instance.limiter.settle(booking.local, usage.total_tokens)
        if hold_until is not None:
            instance.limiter.hold(hold_until)

    def failed(self, booking: Booking, kind: ErrorKind, retry_after: float | None) -> None:
        instance = booking.instance
        instance.stats.in_flight -= 1
        instance.stats.record_failure()
        instance.breaker.failure(kind, self._clock(), retry_after)
        instance.limiter.settle(booking.local, 0)

    def abandoned(self, booking: Booking) -> None:
        instance = booking.instance
        instance.stats.in_flight -= 1
        instance.breaker.cancelled()

    async def totals(self, instances: Sequence[LlmInstance]) -> dict[int, dict[str, int]]:
        return {i.id: _local_totals(i) for i in instances}

    async def aclose(self) -> None:
        return None


def _local_totals(instance: LlmInstance) -> dict[str, int]:
    s = instance.stats
    return {
        "requests": s.requests,
        "failures": s.failures,
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.total_tokens,
        "cached_tokens": s.cached_tokens,
    }


def shared_key(provider: str, model: str, base_url: str, api_key: str) -> str:
    """A stable id for an instance across processes: provider, model, base URL and a hash of
    the key (never the key itself), so processes with the same config share its state."""
    key_hash = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    material = f"{provider}\n{model}\n{base_url.rstrip('/')}\n{key_hash}".encode()
    return hashlib.sha256(material).hexdigest()[:24]
