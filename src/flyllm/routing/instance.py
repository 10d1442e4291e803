"""A provider instance (provider + model + key + the tasks it serves) and its live stats."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flyllm._display import mask_headers, mask_url
from flyllm._wire import Timeouts
from flyllm.pricing import ModelPrice, lookup_price
from flyllm.providers.base import ALL_CAPABILITIES, Endpoint, Provider
from flyllm.routing.limits import RateLimiter
from flyllm.routing.resilience import BreakerPolicy, CircuitBreaker
from flyllm.types import ProviderType, Usage

__all__ = ["InstanceHealth", "InstanceInfo", "InstanceStats", "LlmInstance", "UsageTally"]

_log = logging.getLogger("flyllm")

LATENCY_SMOOTHING = 0.2
"""Weight of the newest sample in the latency moving average."""


@dataclass(slots=True)
class UsageTally:
    """Attempts and tokens counted together: one instance's, one (task, instance) pair's, one
    model's in a batch output. ``prompt_tokens`` includes ``cached_tokens``."""

    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def record(self, usage: Usage | None) -> None:
        """Count one attempt: a success with its ``usage``, or a failure when None."""
        self.requests += 1
        if usage is None:
            self.failures += 1
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.total_tokens += usage.total_tokens
        self.cached_tokens += usage.cached_tokens

    def add(self, other: UsageTally) -> None:
        """Add another tally's counts to this one."""
        self.requests += other.requests
        self.failures += other.failures
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cached_tokens += other.cached_tokens

    @property
    def usage(self) -> Usage:
        """The token counts as a Usage, the shape a price takes."""
        return Usage(
            self.prompt_tokens, self.completion_tokens, self.total_tokens, self.cached_tokens
        )


@dataclass(slots=True)
class InstanceStats:
    """What the manager knows of an instance now: strategies read it, the manager writes it.
    Attempts and tokens are counted in ``tally``; the properties below read it."""

    last_selected: int = -1
    in_flight: int = 0
    remote_in_flight: int = 0  # other processes' requests in flight (a shared state store)
    successes: int = 0
    consecutive_failures: int = 0
    latency_avg: float = 0.0
    tally: UsageTally = field(default_factory=UsageTally)

    @property
    def requests(self) -> int:
        """Attempts sent to the instance."""
        return self.tally.requests

    @property
    def failures(self) -> int:
        """Attempts that failed."""
        return self.tally.failures

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens of the successful attempts (cached ones included)."""
        return self.tally.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        """Completion tokens of the successful attempts."""
        return self.tally.completion_tokens

    @property
    def total_tokens(self) -> int:
        """Total tokens of the successful attempts, as the providers reported them."""
        return self.tally.total_tokens

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens served from the provider's cache."""
        return self.tally.cached_tokens

    def record_success(self, latency: float, usage: Usage) -> None:
        """Count a successful attempt and its usage."""
        self.tally.record(usage)
        self.successes += 1
        self.consecutive_failures = 0
        if self.successes == 1:
            self.latency_avg = latency
        else:
            self.latency_avg += LATENCY_SMOOTHING * (latency - self.latency_avg)

    def record_failure(self) -> None:
        """Count a failed attempt."""
        self.tally.record(None)
        self.consecutive_failures += 1


@dataclass(slots=True, frozen=True, kw_only=True)
class InstanceHealth:
    """One instance's health: ``state`` is closed (healthy), cooling (rate-limited or backing
    off), open (circuit open), half_open (one probe allowed) or disabled; ``cooldown_left`` in
    seconds; ``reason`` the error kind behind the current state."""

    id: int
    name: str
    provider: str
    model: str
    state: str
    consecutive_failures: int
    failures: int
    requests: int
    cooldown_left: float
    reason: str


@dataclass(slots=True, frozen=True, kw_only=True)
class InstanceInfo:
    """A read-only snapshot of one instance, as ``manager.instances()`` returns it.

    ``base_url`` is masked (no userinfo, no query values); ``parameters`` are the instance's
    defaults; ``state`` is its health (closed, cooling, open, half_open or disabled, as in
    ``instance_health()``); the counts are attempts since the manager started, ``in_flight``
    those running now and ``average_latency`` a moving average in seconds. Change an instance
    through the manager (``enable_instance``, ``disable_instance``, ``remove_instance``).
    """

    id: int
    name: str
    provider: str
    model: str
    base_url: str
    tasks: frozenset[str]
    enabled: bool
    weight: float
    parameters: Mapping[str, Any]
    state: str
    requests: int
    successes: int
    failures: int
    consecutive_failures: int
    in_flight: int
    average_latency: float
    capabilities: frozenset[str] = frozenset()
    """What requests it takes beyond text ("tools", "named_tool_choice"): its provider's,
    narrowed by ``add_provider(capabilities=...)`` and by what the provider said it cannot."""


@dataclass(slots=True, eq=False, repr=False, kw_only=True)
class LlmInstance:
    """One provider + model + key, the tasks it serves, its defaults and its stats.

    The key lives only inside ``endpoint``; ``name`` is what logs show. The repr masks what may
    carry a credential: every extra header value, and the base URL's userinfo and query values.
    """

    id: int
    name: str
    provider_type: ProviderType
    provider: Provider
    endpoint: Endpoint
    tasks: frozenset[str]
    enabled: bool = True
    weight: float = 1.0
    parameters: dict[str, Any] = field(default_factory=dict)
    provider_params: dict[str, Any] = field(default_factory=dict)
    stats: InstanceStats = field(default_factory=InstanceStats)
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(BreakerPolicy()))
    limiter: RateLimiter = field(default_factory=RateLimiter)
    connect_timeout: float | None = None
    read_timeout: float | None = None
    price: ModelPrice | None = None
    default_timeouts: Timeouts = field(default_factory=Timeouts)
    """The attempt limits when a request sets none of its own (manager's, then instance's)."""
    capabilities: frozenset[str] = ALL_CAPABILITIES
    """What requests it can take beyond text (see ``lose_capability``)."""
    param_cache: dict[str | None, dict[str, Any]] = field(default_factory=dict, repr=False)
    """Merged parameters per task, for requests that bring no parameters of their own."""
    _noted: set[str] = field(default_factory=set, repr=False)
    _price_looked_up: bool = field(default=False, repr=False)

    @property
    def model(self) -> str:
        """The model this instance asks for."""
        return self.endpoint.model

    def model_price(self) -> ModelPrice | None:
        """The price of this instance's model: its own override, else the bundled price (looked
        up on first use), else None (unknown)."""
        if self.price is None and not self._price_looked_up:
            self._price_looked_up = True
            self.price = lookup_price(self.provider_type.value, self.model)
        return self.price

    def __repr__(self) -> str:
        endpoint = self.endpoint
        return (
            f"LlmInstance(id={self.id}, name={self.name!r}, provider={self.provider_type.value!r}, "
            f"model={endpoint.model!r}, base_url={mask_url(endpoint.base_url)!r}, "
            f"headers={mask_headers(endpoint.headers)!r}, tasks={sorted(self.tasks)!r}, "
            f"enabled={self.enabled}, weight={self.weight}, parameters={self.parameters!r})"
        )

    def ready_at(self, now: float, tokens: int) -> float | None:
        """When this instance may take a request of about ``tokens`` tokens: ``now``, a later
        time (cooling down, circuit open, rate limit; infinity: when a running request ends),
        or None when it never can (the request is larger than its tokens-per-minute limit)."""
        breaker = self.breaker
        limiter = self.limiter
        if breaker.state == "closed" and breaker.ready_at <= now and not limiter.limited:
            return now  # the common case, kept cheap: healthy and no client-side limits
        if not breaker.available(now):
            return max(breaker.ready_at, now) if not breaker.probing else float("inf")
        return limiter.ready_at(now, tokens, self.stats.in_flight)

    def health(self, now: float) -> InstanceHealth:
        """A snapshot of this instance's state for ``instance_health()``."""
        breaker = self.breaker
        state: str = breaker.state if self.enabled else "disabled"
        left = breaker.cooldown_left(now)
        if state == "closed" and left > 0:
            state = "cooling"
        return InstanceHealth(
            id=self.id,
            name=self.name,
            provider=self.provider_type.value,
            model=self.model,
            state=state,
            consecutive_failures=breaker.consecutive_failures,
            failures=self.stats.failures,
            requests=self.stats.requests,
            cooldown_left=left,
            reason=breaker.reason if state != "closed" else "",
        )

    def info(self, now: float) -> InstanceInfo:
        """A read-only snapshot of this instance for ``manager.instances()``."""
        stats = self.stats
        return InstanceInfo(
            id=self.id,
            name=self.name,
            provider=self.provider_type.value,
            model=self.model,
            base_url=mask_url(self.endpoint.base_url),
            tasks=self.tasks,
            enabled=self.enabled,
            weight=self.weight,
            parameters=MappingProxyType(copy.deepcopy(self.parameters)),
            state=self.health(now).state,
            requests=stats.requests,
            successes=stats.successes,
            failures=stats.failures,
            consecutive_failures=stats.consecutive_failures,
            in_flight=stats.in_flight,
            average_latency=stats.latency_avg,
            capabilities=self.capabilities,
        )

    def lose_capability(self, feature: str) -> None:
        """The provider said this instance cannot do ``feature`` (an UnsupportedFeatureError):
        requests that need it skip the instance from now on. Logged once, at WARNING."""
        if feature in self.capabilities:
            self.capabilities = self.capabilities - {feature}
            _log.warning(
                "instance %d (%s) cannot do %r, the provider said: requests that need it skip "
                "this instance from now on",
                self.id, self.name, feature,
            )  # fmt: skip

    def note_once(self, notes: tuple[str, ...]) -> None:
        """Log each parameter adjustment the provider made, once per instance."""
        for note in notes:
            if note not in self._noted:
                self._noted.add(note)
                _log.warning("instance %d (%s): %s", self.id, self.name, note)
