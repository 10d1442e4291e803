"""AttemptLoop over a fake engine: fake clock and sleep, real instances and store, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from flyllm.errors import (
    AllAttemptsFailedError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    FlyLLMError,
    NoInstanceAvailableError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from flyllm.observe.events import Event, Hook
from flyllm.providers import get_provider
from flyllm.providers.base import Endpoint
from flyllm.routing.attempts import Attempt, AttemptLoop, Plan, Tier
from flyllm.routing.instance import LlmInstance
from flyllm.routing.limits import RateLimiter
from flyllm.routing.resilience import BreakerPolicy, CircuitBreaker, RetryPolicy
from flyllm.routing.state import MemoryStore
from flyllm.routing.strategies import DEFAULT_ESTIMATE, Estimate, LeastRecentlyUsed, Strategy
from flyllm.types import Message, ProviderType, TaskDefinition, Usage

NO_JITTER = RetryPolicy(base=0.25, cap=8.0, jitter=0.0, max_wait=60.0)


class FakeEngine:
    """The AttemptEngine interface with a clock that moves only when the loop waits."""

    def __init__(self, strategy: Strategy | None = None, retry: RetryPolicy = NO_JITTER) -> None:
        self.now = 1000.0
        self.store = MemoryStore(self.clock)
        self.strategy: Strategy = strategy or LeastRecentlyUsed()
        self.retry_policy = retry
        self.default_timeouts = (10.0, 120.0)
        self.events: list[Event] = []
        self.hooks: list[Hook] = [self.events.append]  # emit() records, this says "listen"
        self.sleeps: list[float] = []
        self.capacity_waits: list[float] = []
        self.counted: list[tuple[str | None, int, bool]] = []
        self.notified = 0
        self._requests = 0
        self._selections = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def wait_for_capacity(self, timeout: float) -> None:
        self.capacity_waits.append(timeout)
        self.now += timeout  # nothing ends: the whole timeout passes

    def notify_capacity(self) -> None:
        self.notified += 1

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def count_task(
        self, task: TaskDefinition | None, instance_id: int, usage: Usage | None
    ) -> None:
        self.counted.append((task.name if task else None, instance_id, usage is None))

    def params_for(
        self, instance: LlmInstance, task: TaskDefinition | None, plan: Plan
    ) -> dict[str, Any]:
        return {"task": task.name if task else None}

    def next_request_id(self) -> int:
        self._requests += 1
        return self._requests

    def next_selection(self) -> int:
        self._selections += 1
        return self._selections


def instance(i: int, *, breaker: BreakerPolicy | None = None, **limits: int) -> LlmInstance:
    endpoint = Endpoint(f"m{i}", "-".join(["fake", str(i)]), "http://127.0.0.1:9/v1", None, {}, {})
    return LlmInstance(
        id=i,
        name=f"fake{i}",
        provider_type=ProviderType.OPENAI,
        provider=get_provider(ProviderType.OPENAI),  # pure: never called by the loop
        endpoint=endpoint,
        tasks=frozenset(),
        breaker=CircuitBreaker(breaker or BreakerPolicy()),
        limiter=RateLimiter(limits.get("rpm"), limits.get("tpm"), limits.get("max_concurrent")),
    )


def plan(
    *tiers: tuple[TaskDefinition | None, Sequence[LlmInstance]],
    max_attempts: int = 3,
    deadline: float | None = None,
) -> Plan:
    return Plan(
        messages=(Message("user", "hi"),),
        tiers=tuple(Tier(task, candidates) for task, candidates in tiers),
        params={},
        provider_params={},
        max_attempts=max_attempts,
        tokens=300,
        estimate=(50, 250),
        deadline=deadline,
    )


def next_attempt(loop: AttemptLoop) -> Attempt:
    got = asyncio.run(loop.next())
    assert isinstance(got, Attempt), got
    return got


def give_up(loop: AttemptLoop) -> FlyLLMError:
    got = asyncio.run(loop.next())
    assert isinstance(got, FlyLLMError), got
    return got


def kinds(engine: FakeEngine) -> list[str]:
    return [e.kind for e in engine.events]


def test_takes_the_strategys_first_ready_instance_and_skips_cooling_ones() -> None:
    engine = FakeEngine()
    a, b, c = instance(0), instance(1), instance(2)
    a.breaker.ready_at = engine.now + 5  # cooling
    b.stats.last_selected = 7  # c was selected less recently
    loop = AttemptLoop(engine, plan((None, [a, b, c])))
    attempt = next_attempt(loop)
    assert attempt.instance is c and attempt.number == 1 and attempt.level == 0
    assert c.stats.in_flight == 1 and c.stats.last_selected == 1  # booked, stamped
    assert engine.sleeps == [] and kinds(engine) == ["attempt_start"]
    assert attempt.params == {"task": None}
    assert (attempt.timeouts.connect, attempt.timeouts.read) == (10.0, 120.0)


def test_the_strategy_gets_the_requests_estimate() -> None:
    seen: list[Estimate] = []

    class Spy:
        def order(self, candidates: Sequence[Any], estimate: Estimate = DEFAULT_ESTIMATE) -> Any:
            seen.append(estimate)
            return list(reversed(candidates))

    engine = FakeEngine(strategy=Spy())
    a, b = instance(0), instance(1)
    assert next_attempt(AttemptLoop(engine, plan((None, [a, b])))).instance is b
    assert seen == [(50, 250)]


def test_falls_back_to_the_next_tier_only_when_its_own_has_nothing_ready() -> None:
    engine = FakeEngine()
    main, extra = TaskDefinition("main"), TaskDefinition("extra")
    a, b = instance(0), instance(1)
    loop = AttemptLoop(engine, plan((main, [a]), (extra, [b])))
    first = next_attempt(loop)
    assert first.instance is a and first.task is main and first.level == 0
    assert loop.failed(first, ContextLengthError("too long", retryable=False))
    second = next_attempt(loop)  # a too-long prompt may fall back
    assert second.instance is b and second.task is extra and second.level == 1
    assert second.params == {"task": "extra"}
    assert engine.sleeps == []


def test_a_request_error_ends_the_request_without_a_fallback() -> None:
    engine = FakeEngine()
    a, b = instance(0), instance(1)
    loop = AttemptLoop(engine, plan((None, [a, b])))
    attempt = next_attempt(loop)
    assert not loop.failed(attempt, BadRequestError("bad", retryable=False))
    assert engine.counted == [(None, 0, True)] and engine.notified == 1
    assert a.stats.in_flight == 0 and a.stats.failures == 1


def test_waits_for_a_cooling_instance_within_the_limits() -> None:
    engine = FakeEngine()
    a = instance(0)
    a.breaker.ready_at = engine.now + 5
    attempt = next_attempt(AttemptLoop(engine, plan((None, [a]))))
    assert attempt.instance is a and engine.sleeps == [5.0]
    wait = engine.events[0]
    assert wait.kind == "wait" and wait.reason == "cooldown" and wait.wait == 5.0
    assert wait.message and "instance 0 (fake0) cooling" in wait.message


@pytest.mark.parametrize("bound", ["deadline", "max_wait"])
def test_gives_up_at_once_when_the_wait_would_pass_a_bound(bound: str) -> None:
    retry = RetryPolicy(max_wait=2.0) if bound == "max_wait" else NO_JITTER
    engine = FakeEngine(retry=retry)
    a = instance(0)
    a.breaker.ready_at = engine.now + 5
    deadline = engine.now + 2 if bound == "deadline" else None
    err = give_up(AttemptLoop(engine, plan((None, [a]), deadline=deadline)))
    assert isinstance(err, NoInstanceAvailableError)
    assert "instance 0 (fake0), is ready in 5.0 s, past what this request may wait" in str(err)
    assert engine.sleeps == []


def test_gives_up_when_the_deadline_passes_while_waiting_for_capacity() -> None:
    engine = FakeEngine()
    a = instance(0, max_concurrent=1)
    busy = AttemptLoop(engine, plan((None, [a])))
    next_attempt(busy)  # holds the one slot
    loop = AttemptLoop(engine, plan((None, [a]), deadline=engine.now + 3))
    err = give_up(loop)
    assert isinstance(err, NoInstanceAvailableError) and "deadline passed" in str(err)
    assert engine.capacity_waits == [1.0, 2.0]  # told after a second, then to the deadline
    waits = [e for e in engine.events if e.kind == "wait"]
    assert [w.message is None for w in waits] == [True, False]
    assert waits[1].message and "at its concurrency limit" in waits[1].message


def test_nothing_enabled_says_so() -> None:
    engine = FakeEngine()
    a = instance(0)
    a.enabled = False
    err = give_up(AttemptLoop(engine, plan((None, [a]))))
    assert isinstance(err, NoInstanceAvailableError)
    assert "no enabled instance left" in str(err)


def test_rounds_back_off_then_give_up_with_every_error() -> None:
    engine = FakeEngine()
    a = instance(0)
    loop = AttemptLoop(engine, plan((None, [a]), max_attempts=3))
    for _ in range(3):
        attempt = next_attempt(loop)
        assert loop.failed(attempt, ServerError("boom"))
    err = give_up(loop)
    assert engine.sleeps == [0.25, 0.5]  # base, then doubled (no jitter)
    assert [e.reason for e in engine.events if e.kind == "wait"] == ["backoff", "backoff"]
    assert isinstance(err, AllAttemptsFailedError) and len(err.attempts) == 3
    assert all(e.instance_id == 0 and e.provider == "openai" for e in err.attempts)
    assert loop.attempts == 3 and a.stats.failures == 3


def test_the_servers_retry_hint_paces_the_next_round() -> None:
    engine = FakeEngine()
    a = instance(0)
    loop = AttemptLoop(engine, plan((None, [a])))
    assert loop.failed(next_attempt(loop), RateLimitError("slow down", retry_after=3.0))
    assert next_attempt(loop).instance is a
    assert engine.sleeps == [3.0]  # the hint, not the 0.25 s backoff


def test_permanent_failures_are_taken_out_for_the_request() -> None:
    engine = FakeEngine()
    # A zero long cooldown: the revoked key would be ready again, yet must not be retried.
    a, b = instance(0, breaker=BreakerPolicy(long_cooldown=0.0)), instance(1)
    loop = AttemptLoop(engine, plan((None, [a, b]), max_attempts=3))
    first = next_attempt(loop)
    assert first.instance is a
    assert loop.failed(first, AuthenticationError("revoked"))
    second = next_attempt(loop)
    assert second.instance is b
    assert loop.failed(second, ServerError("boom"))
    third = next_attempt(loop)  # a new round: only the transient failure comes back
    assert third.instance is b and engine.sleeps == [0.25]


def test_success_and_abandonment_are_recorded_once() -> None:
    engine = FakeEngine()
    a, b = instance(0), instance(1)
    loop = AttemptLoop(engine, plan((None, [a, b])))
    attempt = next_attempt(loop)
    latency = loop.succeeded(attempt, Usage(1, 2, 3), {}, "hello")
    assert latency >= 0 and a.stats.successes == 1 and a.stats.in_flight == 0
    assert engine.counted == [(None, 0, False)] and engine.notified == 1
    loop.abandoned(attempt)  # already recorded: left alone
    assert a.stats.in_flight == 0 and engine.notified == 1
    other = AttemptLoop(engine, plan((None, [a, b])))
    pending = next_attempt(other)
    other.cancelled(0.0)
    other.cancelled(0.0)  # the end is reported once
    assert pending.instance.stats.in_flight == 0 and engine.notified == 2
    ends = [e for e in engine.events if e.kind == "request_end"]
    assert [(e.request_id, e.reason, e.success) for e in ends] == [(2, "cancelled", False)]
    abandoned = [e for e in engine.events if e.reason == "abandoned"]
    assert [e.instance_id for e in abandoned] == [pending.instance.id]


def test_a_stream_with_text_may_not_go_on() -> None:
    engine = FakeEngine()
    a, b = instance(0), instance(1)
    loop = AttemptLoop(engine, plan((None, [a, b])), stream=True)
    err: ProviderError = ServerError("cut")
    assert not loop.failed(next_attempt(loop), err, may_go_on=False)
    assert loop.errors == [err] and err.instance_id in (0, 1)
    assert all(e.stream for e in engine.events)


def test_no_hooks_no_events() -> None:
    engine = FakeEngine()
    engine.hooks = []
    loop = AttemptLoop(engine, plan((None, [instance(0)])))
    loop.succeeded(next_attempt(loop), Usage(1, 1, 2), {})
    loop.finish(True, None, 0.1)
    assert engine.events == []


def test_request_ids_come_from_the_engine() -> None:
    engine = FakeEngine()
    engine._requests = 41
    loop = AttemptLoop(engine, plan((None, [instance(0)])))
    loop.finish(True, None, 0.1)
    assert [e.request_id for e in engine.events] == [42]
