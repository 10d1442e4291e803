from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from flyllm.errors import ConfigurationError
from flyllm.pricing import ModelPrice
from flyllm.routing.instance import InstanceStats
from flyllm.routing.strategies import (
    DEFAULT_ESTIMATE,
    STRATEGIES,
    LeastBusy,
    LeastRecentlyUsed,
    LowestCost,
    LowestLatency,
    RandomChoice,
    RoundRobin,
    WeightedRandom,
    make_strategy,
)
from flyllm.types import Usage


@dataclass
class Cand:
    id: int
    weight: float = 1.0
    stats: InstanceStats = field(default_factory=InstanceStats)
    price: ModelPrice | None = None

    def model_price(self) -> ModelPrice | None:
        return self.price


def ids(cands: list[Cand]) -> list[int]:
    return [c.id for c in cands]


def test_lru_orders_by_last_selection_then_id() -> None:
    a, b, c = Cand(0), Cand(1), Cand(2)
    a.stats.last_selected, b.stats.last_selected = 5, 3
    assert ids(LeastRecentlyUsed().order([a, b, c])) == [2, 1, 0]
    c.stats.last_selected = 3
    assert ids(LeastRecentlyUsed().order([a, b, c])) == [1, 2, 0]


def test_lru_spreads_evenly_when_selections_are_stamped() -> None:
    cands = [Cand(i) for i in range(3)]
    strategy, counts = LeastRecentlyUsed(), Counter[int]()
    for seq in range(100):
        pick = strategy.order(cands)[0]
        pick.stats.last_selected = seq
        counts[pick.id] += 1
    assert sorted(counts.values()) == [33, 33, 34]


def test_lowest_latency_prefers_untried_then_fastest_never_failing_only() -> None:
    fast, slow, failing, untried = Cand(0), Cand(1), Cand(2), Cand(3)
    fast.stats.record_success(0.1, _usage())
    slow.stats.record_success(0.5, _usage())
    failing.stats.record_failure()
    order = ids(LowestLatency().order([failing, slow, fast, untried]))
    assert order == [3, 0, 1, 2]


def test_round_robin_rotates() -> None:
    rr, cands = RoundRobin(), [Cand(2), Cand(0), Cand(1)]
    firsts = [rr.order(cands)[0].id for _ in range(6)]
    assert firsts == [0, 1, 2, 0, 1, 2]
    assert rr.order([]) == []


def test_random_is_a_permutation_and_seedable() -> None:
    cands = [Cand(i) for i in range(5)]
    a = ids(RandomChoice(random.Random(7)).order(cands))
    b = ids(RandomChoice(random.Random(7)).order(cands))
    assert a == b and sorted(a) == [0, 1, 2, 3, 4]


def test_weighted_random_follows_weights() -> None:
    cands = [Cand(0, weight=3.0), Cand(1, weight=1.0), Cand(2, weight=0.0)]
    strategy = WeightedRandom(random.Random(1))
    firsts = Counter(strategy.order(cands)[0].id for _ in range(4000))
    assert firsts[2] == 0
    assert 2.6 < firsts[0] / firsts[1] < 3.4
    assert strategy.order(cands)[-1].id == 2


def test_least_busy() -> None:
    a, b, c = Cand(0), Cand(1), Cand(2)
    a.stats.in_flight, b.stats.in_flight, c.stats.in_flight = 3, 1, 1
    b.stats.last_selected = 9
    assert ids(LeastBusy().order([a, b, c])) == [2, 1, 0]


def test_make_strategy_by_name_object_and_errors() -> None:
    for name in STRATEGIES:
        assert make_strategy(name).order([], DEFAULT_ESTIMATE) == []
    assert isinstance(make_strategy("Least-Busy"), LeastBusy)
    custom = LeastBusy()
    assert make_strategy(custom) is custom
    with pytest.raises(ConfigurationError, match="valid strategies: least_recently_used"):
        make_strategy("fastest")
    with pytest.raises(ConfigurationError, match="order"):
        make_strategy(object())  # type: ignore[arg-type]


def _usage() -> Usage:
    return Usage(1, 1, 2)


def test_lowest_cost_prefers_the_cheapest_expected_price_then_lru() -> None:
    cheap_in = Cand(0, price=ModelPrice(0.1, 10.0))  # cheap input, dear output
    cheap_out = Cand(1, price=ModelPrice(5.0, 0.5))
    unknown = Cand(2)
    twin = Cand(3, price=ModelPrice(0.1, 10.0))
    twin.stats.last_selected = -5
    strategy = LowestCost()
    long_prompt = strategy.order([cheap_in, cheap_out, unknown, twin], (100_000, 10))
    assert ids(long_prompt) == [3, 0, 1, 2]  # ties by least recently used; unknown last
    long_answer = strategy.order([cheap_in, cheap_out, unknown], (10, 100_000))
    assert ids(long_answer) == [1, 0, 2]
    assert isinstance(make_strategy("lowest_cost"), LowestCost)


async def test_lowest_cost_assigned_after_construction_uses_the_requests_estimate() -> None:
    """Issue 14: ``manager.strategy = LowestCost()`` after construction must price the request
    itself, not a default size. A long answer is cheapest on the cheap-output model, which the
    default estimate (1000 prompt, 256 completion tokens) would rank second."""
    from flyllm import GenerationRequest, LlmManager

    manager = LlmManager(max_attempts=1)  # built with another strategy
    key = "-".join(["fake", "key"])
    url = "http://127.0.0.1:9/v1"  # refused at once on loopback: only the choice matters
    manager.add_provider("openai", key, "a", base_url=url, price=ModelPrice(0.1, 10.0))
    manager.add_provider("openai", key, "b", base_url=url, price=ModelPrice(5.0, 0.5))
    first: list[int | None] = []
    manager.add_hook(lambda e: first.append(e.instance_id) if e.kind == "attempt_start" else None)
    manager.strategy = LowestCost()
    request = GenerationRequest(prompt="hi", params={"max_tokens": 100_000})
    async with manager:
        (response,) = await manager.generate_sequentially([request])
    assert not response.success
    assert first[:1] == [1]  # the cheap-output model; the default estimate picks 0
