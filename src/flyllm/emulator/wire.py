"""What every dialect shares: the parsed request, the answer, the dialect contract, helpers.

A dialect is pure: it turns request bytes into a :class:`Conversation` or an error
:class:`Answer`, and a :class:`~flyllm.emulator.text.Reply` into response bytes. The server
owns all I/O, timing, counters and faults.
"""

from __future__ import annotations

import json
import math
import random
import string
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply, count_words
from flyllm.emulator.tools import OfferedTool, ToolResult

__all__ = [
    "Answer",
    "Bucket",
    "Conversation",
    "Dialect",
    "Route",
    "StreamPlan",
    "bearer_token",
    "chat_route",
    "dumps",
    "find_trigger",
    "go_duration",
    "random_base62",
    "random_hex",
    "retry_after_headers",
    "rfc3339",
    "text_parts",
]

TRIGGERS = ("context_length", "blocked", "refusal")
_ID_RNG = random.Random()
_BASE62 = string.digits + string.ascii_letters
# Maps every byte to a base62 character (a slight bias is irrelevant for ids); randbytes +
# translate is several times faster than choices() on the hot path.
_BYTE_TO_BASE62 = bytes((_BASE62 * 5).encode()[:256])
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, the way most providers send it."""
    return _compact(obj).encode("utf-8")


def random_base62(n: int) -> str:
    """``n`` random characters of [0-9A-Za-z] (ids need not be reproducible)."""
    return _ID_RNG.randbytes(n).translate(_BYTE_TO_BASE62).decode("ascii")


def random_hex(n: int) -> str:
    """``n`` random lower-case hex digits."""
    return f"{_ID_RNG.getrandbits(4 * n):0{n}x}"


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string rounded to the millisecond: ``12ms``, ``1.5s``, ``6m0s``."""
    total_ms = round(max(seconds, 0.0) * 1000)
    if total_ms == 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, ms = divmod(rest, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


_rfc3339_cache: dict[int, str] = {}


def rfc3339(epoch: float) -> str:
    """An RFC 3339 UTC timestamp with second precision, e.g. ``2026-11-02T12:40:59Z``."""
    second = math.ceil(epoch)
    text = _rfc3339_cache.get(second)
    if text is None:
        if len(_rfc3339_cache) > 256:
            _rfc3339_cache.clear()
        text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        _rfc3339_cache[second] = text
    return text


def retry_after_headers(seconds: float | None, with_ms: bool) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up) and optionally ``retry-after-ms``."""
    if seconds is None:
        return {}
    headers = {"retry-after": str(math.ceil(seconds))}
    if with_ms:
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


def find_trigger(texts: Iterable[str]) -> str | None:
    """The reserved ``[[...]]`` trigger present in any of ``texts``, if any."""
    found: str | None = None
    for text in texts:
        if "[[" not in text:
            continue
        for name in TRIGGERS:
            if f"[[{name}]]" in text and (
                found is None or TRIGGERS.index(name) < TRIGGERS.index(found)
            ):
                found = name
    return found


class Bucket:
    """A token bucket refilled continuously over a minute, for plausible rate-limit headers.

    Nothing is enforced: the emulator only reports what a provider with these limits would.
    """

    __slots__ = ("_at", "_rate", "_used", "limit")

    def __init__(self, limit: int, period_s: float = 60.0) -> None:
        self.limit = limit
        self._rate = limit / period_s
        self._used = 0.0
        self._at = time.monotonic()

    def take(self, cost: float) -> tuple[int, float]:
        """Spend ``cost``; return (remaining, seconds until the bucket is full again)."""
        now = time.monotonic()
        self._used = max(0.0, self._used - (now - self._at) * self._rate) + cost
        self._at = now
        return max(0, int(self.limit - self._used)), self._used / self._rate


@dataclass(slots=True)
class Route:
    """Which provider endpoint a request path names (``listing``: its models endpoint)."""

    label: str
    model: str | None = None
    stream: bool = False
    sse: bool = True
    version: str = ""
    listing: bool = False
    embed: bool = False
    """The embeddings endpoint (answered whole by ``Dialect.embed``)."""


def chat_route(method: str, path: str, chat: str, models: str) -> Route | None:
    """``POST chat`` (the chat endpoint), ``GET models`` (the models list), else None: the
    routes of every dialect whose URLs name no model."""
    if method == "GET" and path == models:
        return Route(models, listing=True)
    return Route(chat) if method == "POST" and path == chat else None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme in any case), None without one."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() != "bearer ":
        return None
    return auth[7:].strip() or None


def text_parts(content: Any) -> str:
    """The text of a message ``content``: a string, or the ``text`` of its ``type: "text"``
    parts (OpenAI's parts, Anthropic's blocks, Mistral's chunks) joined with newlines; ''
    for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


@dataclass(slots=True)
class Conversation:
    """A valid request, reduced to what the answer depends on."""

    model: str
    prompt: str
    prompt_tokens: int
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    trigger: str | None = None
    sse: bool = True
    tools: tuple[OfferedTool, ...] = ()
    """The tools the request offered (see :mod:`flyllm.emulator.tools`)."""
    tool_choice: str = "auto"
    """"auto", "none", "required" or a tool's name, whatever the provider's own spelling."""
    parallel_tools: bool = True
    last_role: str = "user"
    """The role of the last turn: "user", or "tool" when it brought tool results."""
    tool_results: tuple[ToolResult, ...] = ()
    """The results of the last turn(s), when they are tool results, in order."""
    output_json: bool = False
    """The request asks for JSON (a JSON mode, or a schema below)."""
    output_schema: Mapping[str, Any] | None = None
    """The schema the answer must follow (see :mod:`flyllm.emulator.structured`)."""
    images: tuple[str, ...] = ()
    """The media types of the conversation's images, in order (acknowledged in the answer)."""

    @classmethod
    def from_texts(
        cls,
        model: str,
        texts: Sequence[str],
        prompt: str,
        *,
        max_tokens: int | None = None,
        stop: tuple[str, ...] = (),
        stream: bool = False,
        include_usage: bool = False,
        sse: bool = True,
    ) -> Conversation:
        """The conversation of a request whose turns read as ``texts`` (system included):
        ``prompt`` is the last user turn (the last text when '', the answer echoes it), its
        tokens are counted as words plus 3 a turn, and a fault trigger is looked for in every
        text."""
        return cls(
            model,
            prompt or (texts[-1] if texts else ""),
            sum(count_words(t) + 3 for t in texts),
            max_tokens,
            stop,
            stream,
            include_usage,
            find_trigger(texts),
            sse,
        )


@dataclass(slots=True)
class Answer:
    """A complete non-streaming HTTP answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    throttled_for: float | None = None


@dataclass(slots=True)
class StreamPlan:
    """The events of a streaming answer, already framed, split where faults may cut them."""

    head: list[bytes]
    content: list[bytes]
    tail: list[bytes]
    content_type: str = "text/event-stream; charset=utf-8"


class Dialect(ABC):
    """One provider's wire format. Subclasses are stateless apart from rate-limit buckets."""

    provider: ClassVar[str]
    json_type: ClassVar[str] = "application/json"
    supports_refusal: ClassVar[bool] = True

    def __init__(self, models: frozenset[str] | None) -> None:
        self.models = models

    def known_model(self, model: str) -> bool:
        """Whether ``model`` is served (any name when no model list was given)."""
        return self.models is None or model in self.models

    @abstractmethod
    def base_url(self, root: str) -> str:
        """The base URL the official SDK is configured with, given ``http://host:port``."""

    @abstractmethod
    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """The endpoint for this method and path, or ``None`` for an unknown URL."""

    @abstractmethod
    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The API key the provider's auth scheme reads, ``None`` when absent."""

    @abstractmethod
    def request_id(self) -> str:
        """A fresh request id in the provider's format."""

    @abstractmethod
    def auth_error(self, key: str | None, rid: str) -> Answer:
        """The answer to a missing (``key is None``) or rejected key."""

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """The answer when the model cannot take tools (see ``tools.supports_tools``); dialects
        give their provider's shape of it."""
        message = f"{conv.model} does not support tools"
        return Answer(400, dumps({"error": {"message": message, "type": "invalid_request_error"}}))

    def check_headers(self, headers: Mapping[str, str], rid: str) -> Answer | None:
        """Reject requests whose required headers are wrong (after auth)."""
        return None

    @abstractmethod
    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """The answer to an unknown URL."""

    @abstractmethod
    def malformed_json(self, rid: str) -> Answer:
        """The answer to a body that is not a JSON object."""

    @abstractmethod
    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Validate the body as the provider does; a :class:`Conversation` when it is valid."""

    @abstractmethod
    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """The models endpoint's answer (``route.listing``): one page of the listed models, or
        the provider's 400 for a bad paging parameter. Auth and headers are checked before."""

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """The embeddings endpoint's answer (``route.embed``): the vectors, or the provider's
        400 (``input_limit``: the tokens one input may have, when the emulator sets one).
        Auth and headers are checked before; dialects with the endpoint override this."""
        return self.not_found("POST", route.label, rid)

    @abstractmethod
    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """The answer for a model this instance does not serve."""

    @abstractmethod
    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """The provider's context-length error (the ``[[context_length]]`` trigger)."""

    @abstractmethod
    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """The HTTP error answer for one of :data:`~flyllm.emulator.faults.ERROR_KINDS`."""

    @abstractmethod
    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The non-streaming success body."""

    @abstractmethod
    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """The streaming success events."""

    @abstractmethod
    def stream_error(self, rid: str) -> bytes:
        """The provider's error event inside a 200 stream."""

    @abstractmethod
    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """Request-id and rate-limit headers for an answer that spent (prompt, completion) tokens.

        ``throttled_for`` is set on rate-limit answers: remaining requests are then 0 and the
        reset is that many seconds away.
        """
