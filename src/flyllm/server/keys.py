"""Virtual keys: who may call the gateway, for which tasks, within which limits.

A key is given to a caller once (``flyllm keys create NAME``) and only its SHA-256 is kept, in
the config file's ``[[gateway.keys]]`` tables. A request's key is hashed and looked up; the
plain key is never stored, logged or echoed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["KEY_PREFIX", "KeyRing", "VirtualKey", "hash_key", "new_key"]

KEY_PREFIX = "fly-"
"""What every key ``new_key`` makes starts with (so a leaked one is recognisable in a scan)."""


def new_key() -> str:
    """A new random key: the prefix and 256 bits of randomness, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The key's SHA-256 in lowercase hex: what the config file holds."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True, frozen=True, kw_only=True)
class VirtualKey:
    """One ``[[gateway.keys]]`` table.

    ``tasks`` empty means every task; ``rpm``, ``tpm`` and ``max_concurrent`` None mean no
    limit; ``budget_usd`` is spent per ``budget_period`` ("day" or "month", UTC calendar
    periods); ``expires`` is an aware datetime after which the key is refused.
    """

    name: str
    sha256: str = field(repr=False)
    tasks: frozenset[str] = frozenset()
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_usd: float | None = None
    budget_period: str = "month"
    expires: dt.datetime | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit or budget applies (a key without any needs no booking)."""
        return (
            self.rpm is not None
            or self.tpm is not None
            or self.max_concurrent is not None
            or self.budget_usd is not None
        )

    def allows(self, task: str) -> bool:
        """Whether the key may use ``task``."""
        return not self.tasks or task in self.tasks

    def expired(self, now: dt.datetime) -> bool:
        """Whether the key has expired at ``now`` (an aware datetime)."""
        return self.expires is not None and now >= self.expires


class KeyRing:
    """The virtual keys by hash. Empty means the gateway is open (loopback only)."""

    def __init__(self, keys: Iterable[VirtualKey] = ()) -> None:
        self._by_hash: Mapping[str, VirtualKey] = {k.sha256: k for k in keys}

    def __bool__(self) -> bool:
        return bool(self._by_hash)

    def __len__(self) -> int:
        return len(self._by_hash)

    def __iter__(self) -> Iterator[VirtualKey]:
        return iter(self._by_hash.values())

    def lookup(self, presented: str) -> VirtualKey | None:
        """The key whose hash matches ``presented``, or None. The dictionary lookup is on the
        hash (which a caller cannot steer toward a stored one), and the match is confirmed with
        a constant-time compare."""
        digest = hash_key(presented)
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.sha256, digest):
            return None
        return key
