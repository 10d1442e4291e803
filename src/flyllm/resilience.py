"""Retry policy: how long to wait before an instance that already failed this request is tried
again. Failing over to a fresh instance never waits; only a new round over the same instances
does. The sleep is injectable so tests of backoff run instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from flyllm.types import ErrorKind

__all__ = ["PERMANENT_KINDS", "RetryPolicy"]

PERMANENT_KINDS = frozenset(
    {ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION, ErrorKind.NOT_FOUND, ErrorKind.QUOTA}
)
"""Failures that will not heal within one request: that instance is not tried again for it."""


@dataclass(slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring the server's retry-after hint.

    The n-th round (n = 1, 2, ...) waits ``min(base * 2**(n-1), cap)`` scaled by a random factor
    in [1 - jitter, 1], or the server's hint when it gave one, capped at ``max_wait``.
    """

    base: float = 0.25
    cap: float = 8.0
    jitter: float = 0.25
    max_wait: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, round_number: int, retry_after: float | None) -> float:
        """Seconds to wait before round ``round_number`` of retries."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_wait)
        backoff = min(self.base * 2.0 ** max(round_number - 1, 0), self.cap)
        return backoff * (1.0 - self.jitter * self.rng.random())

    async def wait(self, round_number: int, retry_after: float | None) -> None:
        """Sleep for ``delay(round_number, retry_after)``."""
        seconds = self.delay(round_number, retry_after)
        if seconds > 0:
            await self.sleep(seconds)
