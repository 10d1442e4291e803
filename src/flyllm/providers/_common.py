"""Helpers shared by the provider modules, kept in one place instead of four copies.

- request side: JSON encoding, URL joining, parameter clamping and the notes that explain it;
- response side: reading JSON bodies (MalformedResponseError when unreadable), token counters;
- error side: readable messages from error bodies (JSON or not), the status -> class table every
  provider starts from, the ``x-should-retry`` override, and the retry hints: ``retry-after-ms``,
  ``retry-after`` (seconds or HTTP-date), proto durations ("34.4s"), Go durations ("6m0s") and
  RFC 3339 timestamps. Date-based hints are relative to an injectable clock (``Clock``).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    RateLimitError,
    ServerError,
)
from flyllm.providers.base import Endpoint, HttpResponse

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``; providers take one so tests can fix "now"."""

EXCERPT_LIMIT = 200
"""How many characters of a body that is not a readable error we quote in a message."""


# --- request side -------------------------------------------------------------------------


class ClockedProvider:
    """What every stateless provider shares: a ``clock`` (epoch seconds, injectable in tests)
    that dates the HTTP-date and RFC 3339 forms of retry hints, and a repr with no secrets."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def dumps(obj: Any) -> bytes:
    """The compact UTF-8 JSON every provider sends."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (with or without a trailing slash) followed by ``path`` (starting with /)."""
    return base_url.rstrip("/") + path


def clamp(
    name: str, value: float, low: float, high: float, provider: str, notes: list[str]
) -> float:
    """``value`` within [low, high]; a clamp adds a note ("temperature 1.7 clamped to 1.0 for
    anthropic")."""
    if value < low:
        notes.append(f"{name} {value!r} clamped to {float(low)!r} for {provider}")
        return float(low)
    if value > high:
        notes.append(f"{name} {value!r} clamped to {float(high)!r} for {provider}")
        return float(high)
    return value


def at_least(name: str, value: int, low: int, provider: str, notes: list[str]) -> int:
    """``value`` raised to ``low`` if below it, with a note."""
    if value < low:
        notes.append(f"{name} {value!r} raised to {low} for {provider}")
        return low
    return value


def stop_sequences(value: Any, limit: int | None, provider: str, notes: list[str]) -> list[str]:
    """``stop`` as a list (a lone string is accepted too), cut to the provider's ``limit``."""
    stops = [value] if isinstance(value, str) else list(value)
    if limit is not None and len(stops) > limit:
        notes.append(
            f"stop has {len(stops)} sequences but {provider} accepts {limit}; "
            f"kept the first {limit}"
        )
        del stops[limit:]
    return stops


def left_out(name: str, provider: str, notes: list[str], why: str = "") -> None:
    """Note that a parameter is not sent ("top_k is not supported by openai; left out")."""
    notes.append(f"{name} {why or 'is not supported by ' + provider}; left out")


def add_extra(body: dict[str, Any], key: str, value: Any) -> None:
    """Put a pass-through parameter at the top level of ``body``. It wins over what flyllm built,
    except that a mapping given for a key that already holds a mapping (``generationConfig``,
    ``stream_options``) is merged into it, so a caller can add one option without losing ours."""
    current = body.get(key)
    if isinstance(current, dict) and isinstance(value, Mapping):
        body[key] = {**current, **value}
    else:
        body[key] = value


def bearer_headers(endpoint: Endpoint, stream: bool) -> dict[str, str]:
    """JSON headers with ``authorization: Bearer`` (none for an empty key), then the endpoint's
    own headers, which replace ours case-insensitively."""
    headers = {"content-type": "application/json"}
    if stream:
        headers["accept"] = "text/event-stream"
    if endpoint.api_key:
        headers["authorization"] = f"Bearer {endpoint.api_key}"
    if endpoint.headers:
        merge_headers(headers, endpoint.headers)
    return headers


def merge_headers(headers: dict[str, str], extra: Mapping[str, str]) -> None:
    """Add ``extra`` to lower-case ``headers``, replacing a same-named one whatever its case."""
    for key, value in extra.items():
        headers.pop(key.lower(), None)
        headers[key] = value


# --- response side ------------------------------------------------------------------------


def excerpt(body: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A readable one-line excerpt of a body: tags of an HTML error page and runs of whitespace
    removed, cut to ``limit`` characters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if "<" in text:
        text = _TAG.sub(" ", _HTML_SKIP.sub(" ", text))
    text = " ".join(text.split())
    if not text:
        return "(empty body)"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_HTML_SKIP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def load_object(response: HttpResponse, provider: str, request_id: str | None) -> dict[str, Any]:
    """The JSON object in a 2xx body; MalformedResponseError (retryable) when it is not one."""
    try:
        data = json.loads(response.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise MalformedResponseError(
            f"{provider} sent a body that is not a JSON object: {excerpt(response.body)}",
            status=response.status,
            provider=provider,
            request_id=request_id,
        )
    return data


def load_event(data: str, provider: str) -> Any:
    """The JSON payload of one stream event; MalformedResponseError when it is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        raise MalformedResponseError(
            f"{provider} sent a stream event that is not JSON: {excerpt(data)}",
            status=200,
            provider=provider,
        ) from None


def malformed(
    what: str, provider: str, response: HttpResponse | None = None, request_id: str | None = None
) -> MalformedResponseError:
    """A MalformedResponseError saying which required part of the answer is missing."""
    return MalformedResponseError(
        f"{provider} answer has {what}",
        status=response.status if response is not None else 200,
        provider=provider,
        request_id=request_id,
    )


def count(value: Any) -> int:
    """A token counter from JSON: an int, or 0 when absent, null or not a number."""
    if type(value) is int:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


def as_str(value: Any) -> str | None:
    """A JSON value as text when it is a string, else None."""
    return value if isinstance(value, str) else None


# --- errors -------------------------------------------------------------------------------


def error_class_for_status(status: int) -> type[ProviderError]:
    """The class an HTTP status means before any provider detail is considered.

    408 and 504 are timeouts; 503 (Service Unavailable: "a temporary overload", RFC 9110) and
    529 are overloaded; 409 (a lock conflict) and any other 5xx are server errors; all of these
    are retryable. 402 is quota; 499 (the client went away) a connection error; other 4xx are
    bad requests (not retryable)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else BadRequestError


_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationError,
    402: QuotaError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ProviderTimeoutError,
    409: ServerError,
    429: RateLimitError,
    499: ProviderConnectionError,
    503: OverloadedError,
    504: ProviderTimeoutError,
    529: OverloadedError,
}


def should_retry(headers: Mapping[str, str]) -> bool | None:
    """The server's ``x-should-retry: true|false`` verdict, which overrides the class default."""
    value = headers.get("x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    return True if value == "true" else False if value == "false" else None


def header_retry_after(headers: Mapping[str, str], clock: Clock) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (float ms), else ``retry-after`` (float seconds
    or an HTTP-date, relative to ``clock()``); None when absent or unreadable."""
    value = headers.get("retry-after-ms")
    if value:
        seconds = _number(value)
        if seconds is not None:
            return seconds / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - clock())


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def proto_duration(value: Any) -> float | None:
    """Seconds in a protobuf Duration string such as "34.4s" (Gemini's RetryInfo)."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    return _number(value[:-1])


_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip


def go_duration(value: str) -> float | None:
    """Seconds in a Go duration string ("6m0s", "12ms", "1h2m3.5s"), as OpenAI's
    ``x-ratelimit-reset-*`` headers carry; None when it is not one."""
    text = value.strip()
    total, pos = 0.0, 0
    for match in _GO_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNIT[match.group(2)]
        pos = match.end()
    return total if pos and pos == len(text) else None


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):(\d\d))"
)


def rfc3339_delay(value: str, clock: Clock) -> float | None:
    """Seconds from ``clock()`` until an RFC 3339 timestamp ("2025-08-21T12:40:59Z"), at least
    0; None when it is not one. (Parsed by hand: 3.10's fromisoformat rejects "Z".)"""
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    offset = timedelta(0)
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    stamp = when.timestamp() + (float(fraction) if fraction else 0.0)
    return max(0.0, stamp - clock())


def reset_delay(candidates: list[tuple[str | None, float | None]]) -> float | None:
    """The wait implied by several rate-limit windows, given as (remaining, seconds to reset):
    the latest reset among exhausted windows (remaining "0"), else the earliest reset."""
    exhausted = [s for r, s in candidates if s is not None and r is not None and r.strip() == "0"]
    if exhausted:
        return max(exhausted)
    known = [s for _, s in candidates if s is not None]
    return min(known) if known else None


_SECRETS = re.compile(
    r"(?:\b(?:sk|rk|pk)-[A-Za-z0-9_\-*]{6,}|\bAIza[0-9A-Za-z_\-]{20,}|\b[Bb]earer\s+\S+)"
)


def redact(text: str) -> str:
    """``text`` with anything shaped like an API key or bearer token replaced, as a second line
    of defence: error messages come from response bodies only, but a server may echo a key."""
    return _SECRETS.sub("[redacted]", text) if text else text


def make_error(
    cls: type[ProviderError],
    message: str,
    *,
    status: int,
    provider: str,
    headers: Mapping[str, str],
    request_id: str | None,
    retry_after: float | None,
) -> ProviderError:
    """The error instance, with ``x-should-retry`` applied and the message scrubbed."""
    return cls(
        redact(message),
        status=status,
        provider=provider,
        retryable=should_retry(headers),
        retry_after=retry_after,
        request_id=request_id,
    )


def parse_error_body(body: bytes) -> Any:
    """The JSON in an error body, or None when it is not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def fallback_message(status: int, body: bytes) -> str:
    """A message for an error body we could not read: the status and an excerpt."""
    return f"HTTP {status}: {excerpt(body)}" if body else f"HTTP {status} with an empty body"
