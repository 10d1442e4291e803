"""Client-side rate limits per instance: requests per minute, tokens per minute and concurrent
requests, plus holds learned from the provider's own rate-limit headers.

Windows are sliding (the last 60 seconds), kept as deques of (time, amount) so each check costs
O(expired entries), not O(window). Token use is estimated before sending and corrected with
the real usage afterwards. Like resilience.py, nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RateLimiter", "estimate_tokens"]

WINDOW = 60.0


def estimate_tokens(text_chars: int, max_tokens: int | None) -> int:
    """A request's likely tokens before sending: about four characters per prompt token, plus
    the completion limit (or 256 when none is set)."""
    return text_chars // 4 + 1 + (max_tokens if max_tokens is not None else 256)


class _Window:
    """A sliding 60-second sum of amounts."""

    __slots__ = ("_entries", "total")

    def __init__(self) -> None:
        self._entries: deque[list[float]] = deque()
        self.total = 0.0

    def expire(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0][0] <= now - WINDOW:
            self.total -= entries.popleft()[1]

    def add(self, now: float, amount: float) -> list[float]:
        entry = [now, amount]
        self._entries.append(entry)
        self.total += amount
        return entry

    def oldest(self) -> float:
        return self._entries[0][0] if self._entries else 0.0

    def free_at(self, amount: float, limit: float) -> float:
        """The earliest time ``amount`` more fits under ``limit`` as entries expire."""
        excess = self.total + amount - limit
        for start, used in self._entries:
            excess -= used
            if excess <= 0:
                return start + WINDOW
        return self.oldest() + WINDOW


class RateLimiter:
    """One instance's limits. ``ready_at(now, tokens, in_flight)`` says when a request of about
    ``tokens`` tokens may be sent (``now`` when it may go at once); ``acquire`` books it and
    ``settle`` corrects the booking with the real usage."""

    __slots__ = (
        "_blocked_until",
        "_requests",
        "_tokens",
        "limited",
        "max_concurrent",
        "rpm",
        "tpm",
    )

    def __init__(
        self, rpm: int | None = None, tpm: int | None = None, max_concurrent: int | None = None
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrent = max_concurrent
        self.limited = bool(rpm or tpm or max_concurrent)
        """Whether any limit (configured, or learned from headers) may hold a request."""
        self._requests = _Window()
        self._tokens = _Window()
        self._blocked_until = 0.0  # from the provider's own headers

    def ready_at(self, now: float, tokens: int, in_flight: int) -> float | None:
        """When a request may go: ``now`` or a later time (infinity: when a running request
        finishes); None when it can never fit (more tokens than the whole per-minute limit)."""
        at = max(now, self._blocked_until)
        if self.max_concurrent is not None and in_flight >= self.max_concurrent:
            return float("inf")  # until a request finishes
        if self.rpm:
            self._requests.expire(now)
            if self._requests.total + 1 > self.rpm:
                at = max(at, self._requests.free_at(1, self.rpm))
        if self.tpm:
            if tokens > self.tpm:
                return None
            self._tokens.expire(now)
            if self._tokens.total + tokens > self.tpm:
                at = max(at, self._tokens.free_at(tokens, self.tpm))
        return at

    def tokens_free(self, now: float) -> float | None:
        """The tokens the tpm window still takes at ``now`` (None: no tpm limit), so that a
        caller who can size its request (embeddings) fits it to what is free."""
        if not self.tpm:
            return None
        self._tokens.expire(now)
        return max(0.0, self.tpm - self._tokens.total)

    def acquire(self, now: float, tokens: int) -> list[float] | None:
        """Book one request of about ``tokens`` tokens; returns the token booking to settle."""
        if self.rpm:
            self._requests.add(now, 1)
        return self._tokens.add(now, tokens) if self.tpm else None

    def settle(self, booking: list[float] | None, actual_tokens: int) -> None:
        """Replace a booking's estimate with the tokens really used."""
        if booking is not None:
            self._tokens.total += actual_tokens - booking[1]
            booking[1] = actual_tokens

    def hold(self, until: float) -> None:
        """The provider's headers say its window is spent: send nothing before ``until``."""
        self._blocked_until = max(self._blocked_until, until)
        self.limited = True
