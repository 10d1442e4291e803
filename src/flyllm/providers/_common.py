"""Helpers shared by the provider modules, kept in one place instead of four copies.

- request side: JSON encoding, URL joining, parameter clamping and the notes that explain it;
- response side: reading JSON bodies (MalformedResponseError when unreadable or nested too
  deeply), plausible token counters, the instance's secrets redacted from every answer before
  it is read (bodies and stream events);
- error side: readable messages from error bodies (JSON or not), cut to one bounded line with
  key shapes redacted (``clip``), the status -> class table every
  provider starts from, the ``x-should-retry`` override, and the retry hints: ``retry-after-ms``,
  ``retry-after`` (seconds or HTTP-date), proto durations ("34.4s"), Go durations ("6m0s") and
  RFC 3339 timestamps, each hint at most a week. Date-based hints are relative to an injectable
  clock (``Clock``).
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from flyllm._display import terminal_text
from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
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
from flyllm.providers.base import (
    ALL_CAPABILITIES,
    Completion,
    Delta,
    Endpoint,
    HttpResponse,
    SseEvent,
    StreamParser,
    url_scheme,
)
from flyllm.types import ToolCall

Clock = Callable[[], float]
"""Seconds since the epoch, like ``time.time``; providers take one so tests can fix "now"."""

EXCERPT_LIMIT = 200
"""How many characters of a body that is not a readable error we quote in a message."""

MESSAGE_LIMIT = 500
"""The longest error message flyllm passes on (a provider's own message, or ours quoting it):
servers have sent megabytes there, which would end in every log line and batch output."""

MODEL_LIMIT = 200
"""The longest served-model name kept from an answer."""

MAX_TOKEN_COUNT = 1_000_000_000
"""Token counts above this are not believed (no request comes near it)."""

MAX_RETRY_HINT = 7 * 86_400.0
"""The longest wait a retry hint may ask for (a week): a server saying "retry in 8,000 years"
(or an infinite Go duration) would otherwise take the instance out for good."""


# --- request side -------------------------------------------------------------------------


class ClockedProvider:
    """What every stateless provider shares: a ``clock`` (epoch seconds, injectable in tests)
    that dates the HTTP-date and RFC 3339 forms of retry hints, and a repr with no secrets."""

    capabilities = ALL_CAPABILITIES
    image_url_schemes = frozenset({"http", "https"})

    def accepts_image_url(self, url: str) -> bool:
        """True when the image URL's scheme is one this provider fetches itself."""
        return url_scheme(url) in self.image_url_schemes

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# Built once: json.dumps with options builds a new encoder on every call.


def dumps(obj: Any) -> bytes:
    """The compact UTF-8 JSON every provider sends; InvalidRequestError for a value JSON
    cannot carry (NaN, a set, bytes...), so invalid JSON is never sent."""
    try:
        return _ENCODER.encode(obj).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"the request cannot be sent as JSON: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


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
    ``stream_options``) is merged into it, so a caller can add one option without losing ours.
    InvalidRequestError naming ``key`` when JSON cannot carry ``value``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(
            f"parameter {key!r} cannot be sent as JSON: {_why(exc)}"
        ) from None
    current = body.get(key)
    if isinstance(current, dict) and isinstance(value, Mapping):
        body[key] = {**current, **value}
    else:
        body[key] = value


def bearer_auth(endpoint: Endpoint) -> dict[str, str]:
    """``authorization: Bearer <key>``, or nothing for an empty key."""
    return {"authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}


def json_headers(
    endpoint: Endpoint, stream: bool, auth: Callable[[Endpoint], dict[str, str]]
) -> dict[str, str]:
    """JSON headers (``accept: text/event-stream`` on a stream) with the provider's ``auth``
    headers, then the endpoint's own headers, which replace ours case-insensitively."""
    headers = {"content-type": "application/json"}
    if stream:
        headers["accept"] = "text/event-stream"
    headers.update(auth(endpoint))
    if endpoint.headers:
        merge_headers(headers, endpoint.headers)
    return headers


def bearer_headers(endpoint: Endpoint, stream: bool) -> dict[str, str]:
    """:func:`json_headers` with ``authorization: Bearer`` (none for an empty key)."""
    return json_headers(endpoint, stream, bearer_auth)


def merge_headers(headers: dict[str, str], extra: Mapping[str, str]) -> None:
    """Add ``extra`` to lower-case ``headers``, replacing a same-named one whatever its case."""
    for key, value in extra.items():
        headers.pop(key.lower(), None)
        headers[key] = value


# --- response side ------------------------------------------------------------------------


def excerpt(body: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A readable one-line excerpt of a body: tags of an HTML error page and runs of whitespace
    removed, then as ``clip``: no control characters, key shapes redacted, ``limit``
    characters at most. Only the body's start is read (a huge body costs nothing more)."""
    if isinstance(body, bytes):
        text = body[:_HTML_WINDOW].decode("utf-8", "replace")
    else:
        text = body[:_HTML_WINDOW]
    if "<" in text:
        text = _TAG.sub(" ", _without_scripts(text))
    return clip(text, limit) or "(empty body)"


_HTML_WINDOW = 32_768  # bytes of a body read for an excerpt (error pages put text early)
_SCRIPT = re.compile(r"<(script|style)\b", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*>")  # no "<" inside: linear, whatever a hostile page holds


def _without_scripts(text: str) -> str:
    """``text`` without its ``<script>`` and ``<style>`` elements (an unclosed one runs to the
    end), in one pass: a regex with a lazy ``.*?`` goes quadratic on a page of open tags."""
    lower, kept, pos = text.lower(), [], 0
    while (match := _SCRIPT.search(lower, pos)) is not None:
        kept.append(text[pos : match.start()])
        end = lower.find("</" + match.group(1).lower(), match.end())
        close = lower.find(">", end) if end >= 0 else -1
        pos = close + 1 if close >= 0 else len(text)
    kept.append(text[pos:])
    return " ".join(kept)


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Text from a server made safe to show: one line (escape sequences and control characters
    dropped, runs of white space made one space), key shapes redacted, cut to ``limit``
    characters with "…".
    Redaction comes before the cut, so a key of a known shape can never be half shown; and the
    cut falls between tokens, so a secret of the instance that a server disguised (JSON
    ``\\u`` escapes) and that is redacted only later, once decoded, is never half shown either."""
    text = text[: 4 * limit + 512]  # a window: redaction below sees whole keys, never MBs
    text = redact(" ".join(terminal_text(text).split()))
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    cut = max(head.rfind(c) for c in _TOKEN_ENDS)
    if cut >= limit // 2:  # else one giant token: cut it where it is
        head = head[: cut + 1]
    return head.rstrip() + "…"


_TOKEN_ENDS = " ,;\"'<>(){}[]"
"""Characters that end a token: no key alphabet has them, so cutting after one never splits a
key (base64 and URL-safe keys use letters, digits and ``-_./+=:~``)."""


def brief(value: Any, limit: int = EXCERPT_LIMIT) -> str:
    """A JSON value from a server, shown in a message: its repr, clipped; safe for values
    nested too deeply to print."""
    try:
        text = repr(value)
    except RecursionError:
        return f"(a {type(value).__name__} nested too deeply to show)"
    return clip(text, limit)


def loads(data: bytes | str) -> Any:
    """``json.loads``, reporting JSON nested too deeply for Python (``[[[[...``) as the
    ValueError of any unreadable JSON instead of a RecursionError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def served_model(value: Any) -> str | None:
    """The ``model`` an answer names, clipped and cleaned, or None when absent or not text."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) > MODEL_LIMIT:
        return clip(value, MODEL_LIMIT)
    return _clean_model(value)


@functools.lru_cache(maxsize=256)
def _clean_model(value: str) -> str:
    """``clip`` of a short model name, remembered: an instance's answers name the same few
    models, and cleaning one costs three regular-expression passes (bounded: 256 names of at
    most MODEL_LIMIT characters)."""
    return clip(value, MODEL_LIMIT)


# --- the instance's secrets ---------------------------------------------------------------


def without_secrets(response: HttpResponse, endpoint: Endpoint | None) -> HttpResponse:
    """``response`` with every secret of ``endpoint`` (its key, its credential headers) in the
    body replaced by "[redacted]", before any of it is read: whatever path the body then takes
    (a JSON message, an excerpt, a stream error), the key cannot reach a message, a log line
    or a batch output. The same response when there is nothing to redact."""
    if endpoint is None or not endpoint.secrets or not response.body:
        return response
    body = response.body
    for secret in endpoint.secrets:
        raw = secret.encode()
        if raw in body:
            body = body.replace(raw, _REDACTED_BYTES)
    if body is response.body:
        return response
    return HttpResponse(response.status, response.headers, body)


def redact_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with each of ``secrets`` (longest first) replaced by "[redacted]"."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


_REDACTED = "[redacted]"
_REDACTED_BYTES = _REDACTED.encode()


class RedactedStream:
    """A StreamParser that hands ``parser`` each event with the ``secrets`` redacted first."""

    __slots__ = ("_parser", "_secrets")

    def __init__(self, parser: StreamParser, secrets: tuple[str, ...]) -> None:
        self._parser = parser
        self._secrets = secrets

    @property
    def done(self) -> bool:
        """The wrapped parser's ``done``."""
        return self._parser.done

    def feed(self, event: SseEvent) -> str | Delta:
        """The wrapped parser's ``feed`` of the event, secrets redacted."""
        data = redact_secrets(event.data, self._secrets)
        return self._parser.feed(event if data is event.data else SseEvent(data, event.event))

    def finish(self) -> Completion:
        """The wrapped parser's ``finish``, with the secrets redacted from the assembled text
        and tool calls too: a key split between two events passed each event's redaction."""
        return _redacted_completion(self._parser.finish(), self._secrets)


def _redacted_completion(done: Completion, secrets: tuple[str, ...]) -> Completion:
    """``done`` with ``secrets`` redacted from its content and its calls' arguments (the same
    object when none is there)."""
    content = redact_secrets(done.content, secrets)
    calls = tuple(_redacted_call(call, secrets) for call in done.tool_calls)
    if content is done.content and all(a is b for a, b in zip(calls, done.tool_calls, strict=True)):
        return done
    return dataclasses.replace(done, content=content, tool_calls=calls)


def _redacted_call(call: ToolCall, secrets: tuple[str, ...]) -> ToolCall:
    if call.raw_arguments is not None:
        raw = redact_secrets(call.raw_arguments, secrets)
        return call if raw is call.raw_arguments else dataclasses.replace(call, raw_arguments=raw)
    text = json.dumps(call.arguments, ensure_ascii=False)
    redacted = redact_secrets(text, secrets)
    if redacted is text:
        return call
    try:  # a secret replaced inside JSON strings leaves JSON, unless it held JSON's syntax
        return dataclasses.replace(call, arguments=json.loads(redacted))
    except ValueError:
        return dataclasses.replace(call, arguments={}, raw_arguments=redacted)


def redacted_stream(parser: StreamParser, endpoint: Endpoint | None) -> StreamParser:
    """``parser``, wrapped to redact ``endpoint``'s secrets from every event when it has any."""
    if endpoint is None or not endpoint.secrets:
        return parser
    return RedactedStream(parser, endpoint.secrets)


def scrub(err: ProviderError, endpoint: Endpoint) -> ProviderError:
    """``err`` with ``endpoint``'s secrets redacted from its message and request id, and the
    message clipped: the last net where an error meets the instance it came from."""
    message = clip(redact_secrets(err.message, endpoint.secrets))
    if message != err.message:
        err.message = message
        err.args = (message,)
    if err.request_id:
        err.request_id = clip(redact_secrets(err.request_id, endpoint.secrets), MODEL_LIMIT)
    return err


def load_object(response: HttpResponse, provider: str, request_id: str | None) -> dict[str, Any]:
    """The JSON object in a 2xx body; MalformedResponseError (retryable) when it is not one."""
    try:
        data = loads(response.body)
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
        return loads(data)
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


def wrong_type(where: str, value: Any, provider: str) -> MalformedResponseError:
    """The MalformedResponseError for a field of the wrong JSON type ("openai answer has
    message.content of the wrong type (int)"): never read as an empty success."""
    return malformed(f"{where} of the wrong type ({type(value).__name__})", provider)


def block_text(blocks: list[Any], where: str, provider: str) -> str:
    """The text of a list of content blocks: the ``text`` of each block of type "text", others
    (thinking, tool use...) skipped. MalformedResponseError for an item that is not an object,
    a block whose type is not a string, or a text block whose text is not a string."""
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise wrong_type(f"an item of {where}", block, provider)
        kind = block.get("type")
        if not isinstance(kind, str):
            raise wrong_type(f"a block in {where} with type", kind, provider)
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise wrong_type(f"a text block in {where} with text", text, provider)
            texts.append(text)
    return "".join(texts)


def count(value: Any) -> int:
    """A token counter from JSON: a whole number from 0 to MAX_TOKEN_COUNT (12.0 is 12), else
    0, "unknown": absent, null, negative, fractional, boolean, NaN or absurd counts are never
    recorded as such, and the answer's text is kept (a bad counter is not worth a retry)."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT:
        return value
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
            return _capped(seconds / 1000.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return _capped(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return _capped(max(0.0, when.timestamp() - clock()))


def _capped(seconds: float) -> float:
    """A retry hint no longer than MAX_RETRY_HINT."""
    return min(seconds, MAX_RETRY_HINT)


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
    seconds = _number(value[:-1])
    return None if seconds is None else _capped(seconds)


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
    return _capped(total) if pos and pos == len(text) else None


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
        return _capped(max(exhausted))
    known = [s for _, s in candidates if s is not None]
    return _capped(min(known)) if known else None


_SECRETS = re.compile(
    r"(?:\b(?:sk|rk|pk|pplx|xai)-[A-Za-z0-9_\-*]{6,}|\b(?:gsk|fw|hf|r8)_[A-Za-z0-9_\-*]{6,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}|\b[Bb]earer\s+(?!\[redacted\])\S+)"
)


def redact(text: str) -> str:
    """``text`` with anything shaped like an API key or bearer token replaced (OpenAI's and
    Anthropic's ``sk-``, Groq's ``gsk_``, Perplexity's ``pplx-``, Fireworks' ``fw_``, xAI, Hugging
    Face, Replicate, Google's ``AIza``): the second net behind the redaction of the instance's
    own secrets, for keys of other shapes a server may quote."""
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
    """The error instance, with ``x-should-retry`` applied and the message clipped (one line,
    key shapes redacted, MESSAGE_LIMIT characters at most)."""
    return cls(
        clip(message),
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
        return loads(body)
    except ValueError:
        return None


def fallback_message(status: int, body: bytes) -> str:
    """A message for an error body we could not read: the status and an excerpt."""
    return f"HTTP {status}: {excerpt(body)}" if body else f"HTTP {status} with an empty body"
