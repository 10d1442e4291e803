"""Fault injection: what can go wrong, and which request it goes wrong for.

Scheduled faults (a FIFO queue) are served first, one per request; otherwise each configured
probabilistic fault is tried in order with one draw of a seeded :class:`random.Random`, and
the first hit wins. Faults are drawn only for requests that passed authentication and
validation, so a bad request never consumes a scheduled fault.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ERROR_KINDS", "FAULT_KINDS", "Fault", "FaultPlan", "parse_fault_spec"]

#: Every fault kind, in the order ``flyllm emulate --help`` lists them.
FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",
    "quota",
    "server_error",
    "bad_gateway",
    "unavailable",
    "overloaded",
    "unauthorized",
    "hang",
    "reset",
    "malformed",
    "stream_cut",
    "stream_error",
    "bad_output",
)

#: The kinds answered with an ordinary HTTP error response in the provider's shape.
ERROR_KINDS: frozenset[str] = frozenset(
    {
        "rate_limit",
        "quota",
        "server_error",
        "bad_gateway",
        "unavailable",
        "overloaded",
        "unauthorized",
    }
)

FAULT_HELP = {
    "rate_limit": "429 with the provider's retry hint",
    "quota": "quota exhausted (OpenAI 429 insufficient_quota)",
    "server_error": "500",
    "bad_gateway": "502",
    "unavailable": "503",
    "overloaded": "Anthropic 529, others 503 with their overload wording",
    "unauthorized": "the provider's answer to a bad key",
    "hang": "never answer until the client goes away",
    "reset": "close the TCP connection (RST) without any response",
    "malformed": "200 with truncated JSON",
    "stream_cut": "connection closed mid-stream, or mid-body for non-stream requests",
    "stream_error": "the provider's error event inside a 200 stream (500 for non-stream)",
    "bad_output": "200 whose JSON breaks the requested schema (prose for a JSON mode request)",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One kind of failure and how often it happens.

    ``retry_after`` (seconds, ``None`` for no hint) is the retry hint a ``rate_limit`` answer
    carries; ``status`` overrides the HTTP status of the error kinds (e.g. a 504
    ``server_error``); ``after_chunks`` is how many content chunks a ``stream_cut`` or
    ``stream_error`` lets through first (None: half of them; 0: before any text).
    """

    kind: str
    probability: float = 1.0
    retry_after: float | None = 1.0
    status: int | None = None
    after_chunks: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be within [0, 1], got {self.probability}")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {self.retry_after}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        if self.after_chunks is not None and self.after_chunks < 0:
            raise ValueError(f"after_chunks must be >= 0, got {self.after_chunks}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by the control API."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from its JSON form; unknown keys are an error."""
        unknown = set(data) - {"kind", "probability", "retry_after", "status", "after_chunks"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("a fault needs a 'kind'")
        retry_after = data.get("retry_after", 1.0)
        status = data.get("status")
        after = data.get("after_chunks")
        return cls(
            kind=str(data["kind"]),
            probability=float(data.get("probability", 1.0)),
            retry_after=None if retry_after is None else float(retry_after),
            status=None if status is None else int(status),
            after_chunks=None if after is None else int(after),
        )


def parse_fault_spec(spec: str, retry_after: float | None = 1.0) -> Fault:
    """Parse the CLI form ``KIND[=PROBABILITY]`` (probability 1 when omitted)."""
    kind, sep, probability = spec.partition("=")
    try:
        value = float(probability) if sep else 1.0
    except ValueError:
        raise ValueError(f"bad fault probability in {spec!r}") from None
    return Fault(kind.strip(), value, retry_after=retry_after)


class FaultPlan:
    """The faults of one emulated instance: a schedule queue, then seeded probabilities."""

    __slots__ = ("_faults", "_queue", "_rng")

    def __init__(self, faults: Iterable[Fault] = (), seed: int = 0) -> None:
        self._faults: tuple[Fault, ...] = tuple(faults)
        self._queue: deque[Fault] = deque()
        self._rng = random.Random(seed)

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The probabilistic faults, in the order they are tried."""
        return self._faults

    @property
    def scheduled(self) -> tuple[Fault, ...]:
        """The faults queued for the next requests, first one first."""
        return tuple(self._queue)

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace the probabilistic faults (the schedule is kept)."""
        self._faults = tuple(faults)

    def schedule(self, fault: Fault, count: int = 1) -> None:
        """Queue ``fault`` for each of the next ``count`` requests."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._queue.extend([fault] * count)

    def clear_schedule(self) -> None:
        """Forget every queued fault."""
        self._queue.clear()

    def draw(self) -> Fault | None:
        """The fault for the current request, or ``None`` for a normal answer."""
        if self._queue:
            return self._queue.popleft()
        for fault in self._faults:
            if fault.probability >= 1.0 or self._rng.random() < fault.probability:
                return fault
        return None
