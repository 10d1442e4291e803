"""Counters of what an emulated instance received and served, and its request log."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_TABLE", "OTHER", "RecordedRequest", "Stats", "key_fingerprint"]

MAX_TABLE = 100
"""Distinct keys (and models) counted one by one; later ones are counted together under OTHER."""

OTHER = "(other)"
"""The row of a bounded table that counts what came after its first MAX_TABLE entries."""

_MAX_NAME = 200
"""Model names are counted under their first 200 characters (a client chooses them)."""


def key_fingerprint(key: str) -> str:
    """A short, stable hash of an API key: what the stats show instead of the key, so a test
    can still tell which key a request carried (``stats()["by_key"][key_fingerprint(k)]``)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest[:12]}"


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _bump_bounded(counter: dict[str, int], key: str) -> None:
    """Count ``key`` in a table that never grows past MAX_TABLE rows and OTHER."""
    if key not in counter and len(counter) - (OTHER in counter) >= MAX_TABLE:
        key = OTHER
    _bump(counter, key)


class RecordedRequest:
    """One request as it arrived on the wire, for tests that assert what a client sent.

    ``headers`` has lower-case names; ``json`` is the parsed body (``None`` when it was not a
    JSON object); ``api_key`` is the key the provider's auth scheme found, if any. Headers and
    query are converted lazily so that recording costs the hot path almost nothing.
    """

    __slots__ = (
        "_headers",
        "_query",
        "_raw_headers",
        "_raw_query",
        "api_key",
        "json",
        "method",
        "path",
        "route",
    )

    def __init__(
        self,
        method: str,
        path: str,
        route: str,
        raw_headers: Mapping[str, str],
        raw_query: Mapping[str, str],
        body: dict[str, Any] | None,
        api_key: str | None,
    ) -> None:
        self.method = method
        self.path = path
        self.route = route
        self.json = body
        self.api_key = api_key
        self._raw_headers = raw_headers
        self._raw_query = raw_query
        self._headers: dict[str, str] | None = None
        self._query: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The request headers, names in lower case (the last value of a repeated header)."""
        if self._headers is None:
            self._headers = {name.lower(): value for name, value in self._raw_headers.items()}
        return self._headers

    @property
    def query(self) -> dict[str, str]:
        """The query-string parameters."""
        if self._query is None:
            self._query = dict(self._raw_query.items())
        return self._query

    def __repr__(self) -> str:
        return f"RecordedRequest({self.method} {self.path}, route={self.route!r})"


class Stats:
    """Mutable counters; :meth:`snapshot` gives the JSON-able view tests read.

    ``by_key`` counts requests per key fingerprint (:func:`key_fingerprint`), ``by_model``
    per model name; each keeps its first MAX_TABLE rows and counts the rest under OTHER, so a
    client sending a new key or model each time cannot grow them without bound.

    ``streams_started`` counts 200 streams whose headers went out, ``streams_completed``
    those that ended with their terminator, ``streams_cancelled`` those whose client went
    away first. A stream cut or ended with an error event by a fault is in neither of the
    last two (``faults_injected`` has it).
    """

    __slots__ = (
        "by_key",
        "by_model",
        "by_route",
        "faults_injected",
        "in_flight",
        "max_in_flight",
        "requests",
        "responses_by_status",
        "streams_cancelled",
        "streams_completed",
        "streams_started",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero every counter; requests being handled right now stay in flight."""
        self.requests = 0
        self.by_route: dict[str, int] = {}
        self.by_key: dict[str, int] = {}
        self.by_model: dict[str, int] = {}
        self.responses_by_status: dict[str, int] = {}
        self.faults_injected: dict[str, int] = {}
        self.max_in_flight = self.in_flight
        self.streams_started = 0
        self.streams_completed = 0
        self.streams_cancelled = 0

    def begin(self) -> None:
        """A provider request started being handled."""
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def end(self) -> None:
        """A provider request finished (answered, failed or abandoned)."""
        self.in_flight -= 1

    def received(self, route: str, api_key: str | None) -> None:
        """Count one provider request on ``route`` presented with ``api_key`` (counted by its
        fingerprint: the key itself is never kept in the counters)."""
        self.requests += 1
        _bump(self.by_route, route)
        if api_key is not None:
            _bump_bounded(self.by_key, key_fingerprint(api_key))

    def model(self, name: str) -> None:
        """Count one valid request for model ``name``."""
        _bump_bounded(self.by_model, name[:_MAX_NAME])

    def status(self, code: int) -> None:
        """Count one answer sent with HTTP status ``code``."""
        _bump(self.responses_by_status, str(code))

    def fault(self, kind: str) -> None:
        """Count one injected fault."""
        _bump(self.faults_injected, kind)

    def snapshot(self, open_connections: int) -> dict[str, Any]:
        """A JSON-able copy of every counter."""
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "by_key": dict(self.by_key),
            "by_model": dict(self.by_model),
            "responses_by_status": dict(self.responses_by_status),
            "faults_injected": dict(self.faults_injected),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "open_connections": open_connections,
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
        }
