"""Load-balancing strategies: from the candidates and their stats, an order of preference.

A strategy never mutates an instance; the manager records the selection afterwards. Any object
with an ``order(candidates)`` method (the ``Strategy`` protocol) can be passed to LlmManager.

    least_recently_used  oldest last *selection* first, ties by id (the default)
    lowest_latency       untried first, then lowest moving average latency; failing-only last
    round_robin          rotate through the candidates
    random               uniform shuffle
    weighted_random      shuffle where an instance leads with probability proportional to weight
    least_busy           fewest requests in flight, then least recently used
    lowest_cost          cheapest expected price for the request, ties by least recently used

A strategy that needs the request's size sets ``uses_estimate = True``; its ``order`` is then
called as ``order(candidates, (prompt_tokens, completion_tokens))``.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from flyllm.errors import ConfigurationError
from flyllm.pricing import ModelPrice

__all__ = [
    "STRATEGIES",
    "CandidateStats",
    "LeastBusy",
    "LeastRecentlyUsed",
    "LowestCost",
    "LowestLatency",
    "RandomChoice",
    "RoundRobin",
    "Strategy",
    "WeightedRandom",
    "make_strategy",
]


class CandidateStats(Protocol):
    """The live figures a strategy may read."""

    @property
    def last_selected(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def remote_in_flight(self) -> int: ...
    @property
    def successes(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def latency_avg(self) -> float: ...


class Candidate(Protocol):
    """What a strategy sees of an instance."""

    @property
    def id(self) -> int: ...
    @property
    def weight(self) -> float: ...
    @property
    def stats(self) -> CandidateStats: ...

    def model_price(self) -> ModelPrice | None:
        """The model's price, or None when unknown (read only by lowest_cost)."""
        ...


C = TypeVar("C", bound=Candidate)


class Strategy(Protocol):
    """Orders candidates by preference; the first is tried first, the next on failover."""

    def order(self, candidates: Sequence[C]) -> list[C]: ...


class LeastRecentlyUsed:
    """The candidate whose last selection is oldest (never selected first), ties by id.

    Selections are stamped with a sequence number, not a clock, so a burst of concurrent
    requests spreads evenly even when they are selected in the same microsecond."""

    name = "least_recently_used"

    def order(self, candidates: Sequence[C]) -> list[C]:
        return sorted(candidates, key=lambda c: (c.stats.last_selected, c.id))


class LowestLatency:
    """Untried instances first (to learn their latency), then by moving average of successful
    response times; instances that have only failed come last, so they are never favoured."""

    name = "lowest_latency"

    def order(self, candidates: Sequence[C]) -> list[C]:
        def key(c: C) -> tuple[int, float, int, int]:
            s = c.stats
            if s.successes:
                return (1, s.latency_avg, s.last_selected, c.id)
            if s.failures:
                return (2, 0.0, s.last_selected, c.id)
            return (0, 0.0, s.last_selected, c.id)

        return sorted(candidates, key=key)


class RoundRobin:
    """Each call starts one further along the candidate list (by id)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def order(self, candidates: Sequence[C]) -> list[C]:
        if not candidates:
            return []
        ordered = sorted(candidates, key=lambda c: c.id)
        start = self._next % len(ordered)
        self._next += 1
        return ordered[start:] + ordered[:start]


class RandomChoice:
    """A uniformly random first choice (the others follow in their given order: the manager
    asks again, without the failed one, before a failover); pass ``rng`` for reproducible
    runs."""

    name = "random"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()

    def order(self, candidates: Sequence[C]) -> list[C]:
        ordered = list(candidates)
        if len(ordered) > 1:
            i = int(self._rng.random() * len(ordered))
            ordered[0], ordered[i] = ordered[i], ordered[0]
        return ordered


class WeightedRandom:
    """A weighted shuffle (Efraimidis-Spirakis): an instance comes first with probability
    proportional to its weight. A weight of 0 puts an instance last (used only on failover)."""

    name = "weighted_random"

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()

    def order(self, candidates: Sequence[C]) -> list[C]:
        rand = self._rng.random

        def key(c: C) -> float:
            if c.weight <= 0:
                return -1.0
            return float(rand() ** (1.0 / c.weight))

        return sorted(candidates, key=key, reverse=True)


class LowestCost:
    """The cheapest expected price for the request first (its estimated prompt and completion
    tokens at each model's price), ties by least recently used; instances of unknown price
    come last. Prices come from flyllm.pricing, loaded on first use."""

    name = "lowest_cost"
    uses_estimate = True

    def order(self, candidates: Sequence[C], estimate: tuple[int, int] = (1000, 256)) -> list[C]:
        prompt, completion = estimate

        def key(c: C) -> tuple[float, int, int]:
            price = c.model_price()
            cost = float("inf") if price is None else price.expected(prompt, completion)
            return (cost, c.stats.last_selected, c.id)

        return sorted(candidates, key=key)


class LeastBusy:
    """Fewest requests in flight first (in every process, with a shared state store), then
    least recently selected, then id."""

    name = "least_busy"

    def order(self, candidates: Sequence[C]) -> list[C]:
        def key(c: C) -> tuple[int, int, int]:
            s = c.stats
            return (s.in_flight + s.remote_in_flight, s.last_selected, c.id)

        return sorted(candidates, key=key)


STRATEGIES: dict[str, Callable[[], Strategy]] = {
    "least_recently_used": LeastRecentlyUsed,
    "lowest_latency": LowestLatency,
    "round_robin": RoundRobin,
    "random": RandomChoice,
    "weighted_random": WeightedRandom,
    "least_busy": LeastBusy,
    "lowest_cost": LowestCost,
}
"""Strategy names accepted by ``LlmManager(strategy=...)``."""


def make_strategy(strategy: str | Strategy) -> Strategy:
    """The strategy for a name (case-insensitive, "-" or "_"), or the object itself."""
    if isinstance(strategy, str):
        factory = STRATEGIES.get(strategy.strip().lower().replace("-", "_"))
        if factory is None:
            valid = ", ".join(STRATEGIES)
            raise ConfigurationError(f"unknown strategy {strategy!r}; valid strategies: {valid}")
        return factory()
    if not callable(getattr(strategy, "order", None)):
        raise ConfigurationError(
            f"strategy must be a name or an object with an order(candidates) method, "
            f"got {strategy!r}"
        )
    return strategy
