"""Load-balancing strategies: from the candidates and their stats, an order of preference.

A strategy never mutates an instance; the manager records the selection afterwards. Any object
with an ``order(candidates, estimate)`` method (the ``Strategy`` protocol) can be passed to
LlmManager, or assigned to ``manager.strategy`` at any time. ``estimate`` is the request's likely
size, ``(prompt_tokens, completion_tokens)``; most strategies ignore it.

    least_recently_used  oldest last *selection* first, ties by id (the default)
    lowest_latency       untried first, then lowest moving average latency; failing-only last
    round_robin          rotate through the candidates
    random               uniform shuffle
    weighted_random      shuffle where an instance leads with probability proportional to weight
    least_busy           fewest requests in flight, then least recently used
    lowest_cost          cheapest expected price for the request, ties by least recently used

A strategy of the older one-argument form, ``order(candidates)``, still works for now: it is
wrapped, with a DeprecationWarning, the first time the manager meets it.
"""

from __future__ import annotations

import inspect
import random as _random
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, cast

from flyllm.errors import ConfigurationError
from flyllm.pricing import ModelPrice

__all__ = [
    "DEFAULT_ESTIMATE",
    "STRATEGIES",
    "CandidateStats",
    "Estimate",
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

Estimate = tuple[int, int]
"""A request's likely size: (prompt tokens, completion tokens)."""

DEFAULT_ESTIMATE: Estimate = (1000, 256)
"""The size assumed when a strategy is called without one (in tests, by hand)."""


class Strategy(Protocol):
    """Orders candidates by preference; the first is tried first, the next on failover.
    ``estimate`` is the request's likely size, for strategies that price it (lowest_cost)."""

    def order(self, candidates: Sequence[C], estimate: Estimate) -> list[C]: ...


class LeastRecentlyUsed:
    """The candidate whose last selection is oldest (never selected first), ties by id.

    Selections are stamped with a sequence number, not a clock, so a burst of concurrent
    requests spreads evenly even when they are selected in the same microsecond."""

    name = "least_recently_used"

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
        return sorted(candidates, key=lambda c: (c.stats.last_selected, c.id))


class LowestLatency:
    """Untried instances first (to learn their latency), then by moving average of successful
    response times; instances that have only failed come last, so they are never favoured."""

    name = "lowest_latency"

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
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

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
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

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
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

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
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

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
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

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
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
    order = getattr(strategy, "order", None)
    if not callable(order):
        raise ConfigurationError(
            f"strategy must be a name or an object with an order(candidates, estimate) "
            f"method, got {strategy!r}"
        )
    if _takes_estimate(order):
        return strategy
    warnings.warn(
        f"strategy {type(strategy).__name__}.order(candidates) takes no estimate: write it as "
        f"order(candidates, estimate); the one-argument form will stop working in a future "
        f"release",
        DeprecationWarning,
        stacklevel=3,
    )
    return _OneArgument(cast(_OldStrategy, strategy))


def _takes_estimate(order: Callable[..., object]) -> bool:
    """Whether ``order`` accepts a second positional argument (unknown: assume it does)."""
    try:
        params = inspect.signature(order).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class _OldStrategy(Protocol):
    def order(self, candidates: Sequence[C]) -> list[C]: ...


class _OneArgument:
    """A deprecated ``order(candidates)`` strategy seen through the one signature."""

    __slots__ = ("wrapped",)

    def __init__(self, wrapped: _OldStrategy) -> None:
        self.wrapped = wrapped

    def order(self, candidates: Sequence[C], estimate: Estimate = DEFAULT_ESTIMATE) -> list[C]:
        return self.wrapped.order(candidates)
