"""Backoff maths, the circuit breaker's state model, rate windows and header headroom, all on
an injected clock: no test here sleeps."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from flyllm.errors import ConfigurationError
from flyllm.providers.headroom import spent_for
from flyllm.routing.limits import RateLimiter, estimate_tokens
from flyllm.routing.resilience import BreakerPolicy, CircuitBreaker, RetryPolicy
from flyllm.types import ErrorKind


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, jitter=0.25, rng=random.Random(0))
    for round_number, nominal in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay(round_number, None) for _ in range(200)]
        assert all(0.75 * nominal <= d <= nominal for d in delays)
        assert max(delays) - min(delays) > 0.1 * nominal  # jitter really varies


def test_server_hint_wins_but_is_capped() -> None:
    policy = RetryPolicy(max_wait=30.0)
    assert policy.delay(1, 2.5) == 2.5
    assert policy.delay(5, 0.0) == 0.0
    assert policy.delay(1, 600.0) == 30.0


def state(breaker: CircuitBreaker) -> str:
    """Read through a call: mypy would otherwise keep a narrowed literal across transitions."""
    return breaker.state


def test_breaker_opens_after_consecutive_failures_then_half_opens_for_one_probe() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, cooldown=10.0))
    for _ in range(2):
        breaker.failure(ErrorKind.SERVER, now=0.0)
    assert state(breaker) == "closed" and breaker.available(0.0)
    breaker.failure(ErrorKind.TIMEOUT, now=1.0)
    assert state(breaker) == "open" and breaker.reason == "timeout"
    assert not breaker.available(5.0) and breaker.cooldown_left(5.0) == 6.0
    assert breaker.available(11.0) and state(breaker) == "half_open"
    breaker.begin()
    assert not breaker.available(11.0)  # one probe at a time
    breaker.success()
    assert state(breaker) == "closed" and breaker.available(11.0)
    assert breaker.consecutive_failures == 0


def test_a_failed_probe_reopens_for_longer() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown=10.0, max_cooldown=25.0))
    breaker.failure(ErrorKind.OVERLOADED, now=0.0)
    assert breaker.available(10.0)
    breaker.begin()
    breaker.failure(ErrorKind.OVERLOADED, now=10.0)
    assert state(breaker) == "open" and breaker.cooldown_left(10.0) == 20.0
    assert breaker.available(30.0)
    breaker.begin()
    breaker.failure(ErrorKind.SERVER, now=30.0)
    assert breaker.cooldown_left(30.0) == 25.0  # capped
    assert breaker.available(55.0)
    breaker.begin()
    breaker.cancelled()  # the probe's caller left: another probe may go
    assert breaker.available(55.0)


def test_error_rate_over_the_window_opens_the_circuit() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=100, window=10, min_samples=10))
    for i in range(10):
        if i % 2:
            breaker.failure(ErrorKind.SERVER, now=0.0)
        else:
            breaker.success()
    assert state(breaker) == "closed"  # 50% is not over the 50% rate
    breaker.failure(ErrorKind.SERVER, now=0.0)  # the window slides: 6 of 10 failed
    assert state(breaker) == "open"


def test_rate_limits_cool_down_for_the_hint_without_counting_as_breaker_failures() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, rate_limit_cooldown=2.0))
    breaker.failure(ErrorKind.RATE_LIMIT, now=0.0, retry_after=7.0)
    assert state(breaker) == "closed" and breaker.consecutive_failures == 0
    assert not breaker.available(6.9) and breaker.available(7.0)
    breaker.failure(ErrorKind.RATE_LIMIT, now=10.0)
    assert breaker.cooldown_left(10.0) == 2.0


@pytest.mark.parametrize(
    "kind",
    [ErrorKind.AUTHENTICATION, ErrorKind.QUOTA, ErrorKind.PERMISSION, ErrorKind.NOT_FOUND],
)
def test_permanent_failures_take_the_instance_out_for_the_long_cooldown(kind: ErrorKind) -> None:
    breaker = CircuitBreaker(BreakerPolicy(long_cooldown=600.0))
    breaker.failure(kind, now=0.0)
    assert state(breaker) == "open" and breaker.reason == kind.value
    assert breaker.cooldown_left(0.0) == 600.0


@pytest.mark.parametrize(
    "kind", [ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_LENGTH, ErrorKind.CONTENT_FILTER]
)
def test_request_errors_say_nothing_about_the_instance(kind: ErrorKind) -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1))
    breaker.failure(kind, now=0.0)
    assert state(breaker) == "closed" and breaker.available(0.0)


def test_requests_per_minute_slide() -> None:
    limiter = RateLimiter(rpm=2)
    assert limiter.ready_at(0.0, 10, 0) == 0.0
    limiter.acquire(0.0, 10)
    limiter.acquire(5.0, 10)
    assert limiter.ready_at(6.0, 10, 0) == 60.0  # the first booking leaves the window
    assert limiter.ready_at(60.0, 10, 0) == 60.0
    limiter.acquire(60.0, 10)
    assert limiter.ready_at(61.0, 10, 0) == 65.0


def test_tokens_per_minute_with_estimates_corrected_by_real_usage() -> None:
    limiter = RateLimiter(tpm=1000)
    booking = limiter.acquire(0.0, 800)
    assert limiter.ready_at(1.0, 300, 0) == 60.0
    limiter.settle(booking, 500)  # it used less than estimated
    assert limiter.ready_at(1.0, 300, 0) == 1.0
    assert limiter.ready_at(1.0, 1001, 0) is None  # can never fit


def test_max_concurrent_and_holds_from_headers() -> None:
    limiter = RateLimiter(max_concurrent=2)
    assert limiter.ready_at(0.0, 1, 1) == 0.0
    assert limiter.ready_at(0.0, 1, 2) == float("inf")  # until a running request ends
    limiter.hold(30.0)
    assert limiter.ready_at(10.0, 1, 0) == 30.0


def test_estimate_tokens() -> None:
    assert estimate_tokens(400, 50) == 151
    assert estimate_tokens(0, None) == 257


def test_headroom_from_openai_and_anthropic_headers() -> None:
    def clock() -> float:
        return 1_755_780_000.0  # 2025-08-21T12:40:00Z

    openai_spent = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m30s",
        "x-ratelimit-remaining-tokens": "90000",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert spent_for(openai_spent, 500, clock) == 90.0
    tokens_short = {**openai_spent, "x-ratelimit-remaining-requests": "7"}
    assert spent_for(tokens_short, 95000, clock) == 6.0
    assert spent_for(tokens_short, 500, clock) is None
    anthropic_spent = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
        "anthropic-ratelimit-tokens-remaining": "1000",
    }
    assert spent_for(anthropic_spent, 10, clock) == 59.0
    assert spent_for({"content-type": "application/json"}, 10, clock) is None
    assert spent_for({"x-ratelimit-remaining-requests": "lots"}, 10, clock) is None


@pytest.mark.parametrize("kind", [ErrorKind.OVERLOADED, ErrorKind.SERVER, ErrorKind.TIMEOUT])
def test_a_retry_hint_holds_the_instance_when_its_failure_opens_the_circuit(
    kind: ErrorKind,
) -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=2, cooldown=0.7))
    breaker.failure(kind, now=0.0, retry_after=2.0)  # below the threshold: the hint cools
    assert breaker.cooldown_left(0.0) == 2.0
    breaker.failure(kind, now=0.1, retry_after=2.0)  # reaches it: open, but not before the hint
    assert state(breaker) == "open"
    assert not breaker.available(0.9) and not breaker.available(2.0)
    assert breaker.available(2.1)
    assert breaker.cooldown_left(0.1) == pytest.approx(2.0)


def test_a_retry_hint_holds_on_the_error_rate_and_failed_probe_paths() -> None:
    rate = CircuitBreaker(
        BreakerPolicy(failure_threshold=100, window=2, min_samples=2, cooldown=1.0)
    )
    rate.success()
    rate.failure(ErrorKind.OVERLOADED, now=0.0, retry_after=5.0)  # 1 of 2: not over 50%
    rate.failure(ErrorKind.OVERLOADED, now=1.0, retry_after=5.0)  # 2 of 2: opens
    assert state(rate) == "open" and rate.cooldown_left(1.0) == 5.0
    probe = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown=1.0, max_cooldown=2.0))
    probe.failure(ErrorKind.SERVER, now=0.0)
    assert probe.available(1.0)
    probe.begin()
    probe.failure(ErrorKind.SERVER, now=1.0, retry_after=9.0)  # the probe fails with a hint
    assert state(probe) == "open" and probe.cooldown_left(1.0) == 9.0


@pytest.mark.parametrize("kind", [ErrorKind.RATE_LIMIT, ErrorKind.OVERLOADED, ErrorKind.QUOTA])
def test_an_absurd_retry_hint_holds_no_longer_than_the_long_cooldown(kind: ErrorKind) -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, long_cooldown=600.0))
    breaker.failure(kind, now=0.0, retry_after=1e9)  # a hostile or broken server's hint
    assert breaker.cooldown_left(0.0) == 600.0


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: RetryPolicy(base=float("nan")), "base"),
        (lambda: RetryPolicy(max_wait=float("inf")), "max_wait"),
        (lambda: RetryPolicy(jitter=1.5), "jitter"),
        (lambda: RetryPolicy(cap=-1), "cap"),
        (lambda: BreakerPolicy(cooldown=float("nan")), "cooldown"),
        (lambda: BreakerPolicy(long_cooldown=float("inf")), "long_cooldown"),
        (lambda: BreakerPolicy(error_rate=2.0), "error_rate"),
        (lambda: BreakerPolicy(failure_threshold=0), "failure_threshold"),
        (lambda: BreakerPolicy(window=True), "window"),
        (lambda: BreakerPolicy(rate_limit_cooldown="1"), "rate_limit_cooldown"),  # type: ignore[arg-type]
    ],
)
def test_policies_refuse_numbers_that_would_break_cooldowns(
    make: Callable[[], object], field: str
) -> None:
    # A NaN cooldown compares false with every clock reading: the breaker would never hold.
    with pytest.raises(ConfigurationError, match=field):
        make()
