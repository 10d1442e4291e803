"""Resilience policies as small values, and the per-instance state they drive.

- ``RetryPolicy``: how long to wait before a new round over instances that already failed this
  request (exponential backoff with jitter, or the server's hint, capped).
- ``BreakerPolicy`` and ``CircuitBreaker``: closed -> open after N consecutive failures or an
  error rate over a window -> half-open after a cooldown, letting one probe through -> closed
  on its success. Rate limits and permanent failures (a revoked key, an exhausted quota) put
  the instance into a cooldown of their own.

Nothing here does I/O or reads a clock by itself: every method takes ``now`` (a monotonic time
in seconds), so tests of backoff, cooldowns and half-open run instantly and deterministically.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from flyllm.errors import ConfigurationError
from flyllm.types import ErrorKind

__all__ = [
    "PERMANENT_KINDS",
    "REQUEST_KINDS",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "RetryPolicy",
]

PERMANENT_KINDS = frozenset(
    {ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION, ErrorKind.NOT_FOUND, ErrorKind.QUOTA}
)
"""Failures that will not heal soon (a revoked key, an exhausted quota, a wrong model): the
instance leaves the rotation for the long cooldown."""

REQUEST_KINDS = frozenset(
    {
        ErrorKind.BAD_REQUEST,
        ErrorKind.CONTEXT_LENGTH,
        ErrorKind.CONTENT_FILTER,
        ErrorKind.UNSUPPORTED,
        ErrorKind.STRUCTURED_OUTPUT,
    }
)
"""Failures of the request itself, or of what it asks of this instance: they say nothing
about the instance's health."""

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the server's retry-after hint.

    The n-th round (n = 1, 2, ...) waits ``min(base * 2**(n-1), cap)`` scaled by a random factor
    in [1 - jitter, 1], or the server's hint when it gave one; never more than ``max_wait``
    (a longer hint means: fail over or give up instead of sleeping).
    """

    base: float = 0.25
    cap: float = 8.0
    jitter: float = 0.25
    max_wait: float = 60.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_policy(self, seconds=("base", "cap", "max_wait"), fractions=("jitter",))

    def delay(self, round_number: int, retry_after: float | None) -> float:
        """Seconds to wait before round ``round_number`` of retries."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_wait)
        backoff = min(self.base * 2.0 ** max(round_number - 1, 0), self.cap)
        return backoff * (1.0 - self.jitter * self.rng.random())


@dataclass(slots=True, frozen=True)
class BreakerPolicy:
    """When an instance's circuit opens, and for how long.

    Opens after ``failure_threshold`` consecutive failures, or when at least ``min_samples`` of
    the last ``window`` attempts were made and more than ``error_rate`` of them failed. Stays
    open ``cooldown`` seconds (doubling on each failed probe, up to ``max_cooldown``), then lets
    one probe through. A rate limit without a hint cools the instance ``rate_limit_cooldown``
    seconds; a permanent failure (revoked key, exhausted quota, unknown model)
    ``long_cooldown`` seconds. A server's retry hint holds the instance at least that long
    (also when its failure opens the circuit), but never longer than ``long_cooldown``.
    """

    failure_threshold: int = 5
    error_rate: float = 0.5
    window: int = 20
    min_samples: int = 10
    cooldown: float = 30.0
    max_cooldown: float = 300.0
    rate_limit_cooldown: float = 1.0
    long_cooldown: float = 600.0

    def __post_init__(self) -> None:
        _check_policy(
            self,
            seconds=("cooldown", "max_cooldown", "rate_limit_cooldown", "long_cooldown"),
            fractions=("error_rate",),
            counts=("failure_threshold", "window", "min_samples"),
        )


def _check_policy(
    policy: RetryPolicy | BreakerPolicy,
    *,
    seconds: tuple[str, ...] = (),
    fractions: tuple[str, ...] = (),
    counts: tuple[str, ...] = (),
) -> None:
    """A policy's numbers checked when it is made: a NaN or infinite duration would disable
    cooldowns (every comparison with NaN is false) or bench an instance for good."""
    name = type(policy).__name__
    for field_name in seconds + fractions:
        value = getattr(policy, field_name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigurationError(f"{name}.{field_name} must be a finite number, got {value!r}")
        if value < 0 or (field_name in fractions and value > 1):
            bound = "between 0 and 1" if field_name in fractions else "0 or more"
            raise ConfigurationError(f"{name}.{field_name} must be {bound}, got {value!r}")
    for field_name in counts:
        value = getattr(policy, field_name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                f"{name}.{field_name} must be a positive integer, got {value!r}"
            )


class CircuitBreaker:
    """One instance's health: breaker state, cooldowns and the reason for the latest one."""

    __slots__ = (
        "_cooldown",
        "_outcomes",
        "_policy",
        "consecutive_failures",
        "probing",
        "ready_at",
        "reason",
        "state",
    )

    def __init__(self, policy: BreakerPolicy) -> None:
        self._policy = policy
        self._outcomes: deque[bool] = deque(maxlen=policy.window)
        self._cooldown = policy.cooldown
        self.state: BreakerState = "closed"
        self.consecutive_failures = 0
        self.ready_at = 0.0  # no request before this (cooldown, open circuit)
        self.probing = False  # a half-open probe is in flight
        self.reason = ""

    def available(self, now: float) -> bool:
        """Whether a request may go to this instance now (a half-open instance takes one)."""
        if now < self.ready_at:
            return False
        if self.state == "open":
            self.state = "half_open"
        return not (self.state == "half_open" and self.probing)

    def begin(self) -> None:
        """A request is sent; in half-open state it is the one probe."""
        if self.state == "half_open":
            self.probing = True

    def success(self) -> None:
        """The instance answered: a half-open circuit closes."""
        self.probing = False
        self.consecutive_failures = 0
        self._outcomes.append(True)
        if self.state != "closed":
            self.state = "closed"
            self._cooldown = self._policy.cooldown
            self.reason = ""

    def failure(self, kind: ErrorKind, now: float, retry_after: float | None = None) -> None:
        """The instance failed an attempt with this kind of error."""
        self.probing = False
        if kind in REQUEST_KINDS:
            return
        policy = self._policy
        if retry_after is not None:  # a server's hint never holds longer than a revoked key
            retry_after = min(retry_after, policy.long_cooldown)
        if kind in PERMANENT_KINDS:
            self._open(now, max(policy.long_cooldown, retry_after or 0.0), kind.value)
            return
        if kind is ErrorKind.RATE_LIMIT:
            # The provider is alive and said when to come back: cool down, no breaker count.
            wait = retry_after if retry_after is not None else policy.rate_limit_cooldown
            self.ready_at = max(self.ready_at, now + wait)
            self.reason = "rate_limit"
            return
        self.consecutive_failures += 1
        self._outcomes.append(False)
        # Whichever path opens the circuit, the server's hint is a floor: never probe earlier.
        hint = retry_after or 0.0
        if self.state == "half_open":
            self._cooldown = min(self._cooldown * 2, policy.max_cooldown)
            self._open(now, max(self._cooldown, hint), kind.value)
        elif self._tripped():
            self._open(now, max(self._cooldown, hint), kind.value)
        elif retry_after:
            self.ready_at = max(self.ready_at, now + retry_after)
            self.reason = kind.value

    def cancelled(self) -> None:
        """A probe ended without an outcome (the caller left): let another probe through."""
        self.probing = False

    def _tripped(self) -> bool:
        policy = self._policy
        if self.consecutive_failures >= policy.failure_threshold:
            return True
        outcomes = self._outcomes
        if len(outcomes) < policy.min_samples:
            return False
        return outcomes.count(False) / len(outcomes) > policy.error_rate

    def _open(self, now: float, cooldown: float, reason: str) -> None:
        self.state = "open"
        self.ready_at = max(self.ready_at, now + cooldown)
        self.reason = reason
        self._outcomes.clear()

    def cooldown_left(self, now: float) -> float:
        """Seconds until the instance takes requests again (0 when it does now)."""
        return max(0.0, self.ready_at - now)
