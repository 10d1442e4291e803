"""The contract every provider implements: a pure translator between flyllm's types and one wire
format. Providers never do I/O: the transport sends what ``build`` returns and hands the answer
back to ``parse`` (or, for streams, SSE events to a ``StreamParser``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flyllm.errors import ProviderError
from flyllm.types import FinishReason, Message, Usage

__all__ = [
    "NON_SSE_LINE",
    "Completion",
    "Endpoint",
    "HttpRequest",
    "HttpResponse",
    "Provider",
    "SseEvent",
    "StreamParser",
]

KNOWN_PARAMS = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})
"""The parameters flyllm translates to each provider's names; any other goes through unchanged."""


@dataclass(slots=True, frozen=True)
class Endpoint:
    """What a provider needs to know about an instance to address it."""

    model: str
    api_key: str = field(repr=False)
    base_url: str
    api_version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific addressing (e.g. an Azure resource and deployment)."""


@dataclass(slots=True, frozen=True)
class HttpRequest:
    """A request ready to send. ``notes`` are one-line warnings about parameters that were left
    out or clamped for this provider (the instance logs each once)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes
    notes: tuple[str, ...] = ()


@dataclass(slots=True, frozen=True)
class HttpResponse:
    """A complete (non-streamed, or failed-stream) HTTP answer. Header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True, frozen=True)
class SseEvent:
    """One server-sent event: its ``event`` name (None when absent) and joined ``data`` lines."""

    data: str
    event: str | None = None


NON_SSE_LINE = "\nnon-sse-line"
"""The ``event`` of an SseEvent that carries one line which is not an SSE field at all.

``flyllm.sse.SseDecoder`` reports such lines (the SSE spec ignores them) because Gemini sends
errors after HTTP 200 as bare JSON spread over lines; stream parsers of other providers ignore
these events. The name contains a newline, which no real ``event:`` field can, so it can never
collide with one a server sends.
"""


@dataclass(slots=True, frozen=True)
class Completion:
    """A provider's answer translated: text, normalised and raw finish reason, usage."""

    content: str
    finish_reason: FinishReason
    raw_finish_reason: str | None
    usage: Usage
    model: str | None = None
    request_id: str | None = None


class StreamParser(Protocol):
    """Turns one stream's SSE events into text deltas; one parser per stream (it keeps state)."""

    def feed(self, event: SseEvent) -> str:
        """The text this event adds ('' for none). Raises ProviderError on an error event."""
        ...

    @property
    def done(self) -> bool:
        """True once the provider's terminator has been seen."""
        ...

    def finish(self) -> Completion:
        """The whole answer, at the end of the body. Raises StreamInterruptedError when the
        terminator never came (never a silently truncated answer)."""
        ...


class Provider(Protocol):
    """One wire format. Implementations are stateless and shared by all instances."""

    name: str
    default_base_url: str
    stream_framing: str
    """How its streams are framed: "sse" (server-sent events) or "ndjson" (one JSON per line)."""

    def build(
        self,
        endpoint: Endpoint,
        messages: Sequence[Message],
        params: Mapping[str, Any],
        *,
        stream: bool = False,
    ) -> HttpRequest:
        """The HTTP request for this conversation and merged, validated parameters."""
        ...

    def parse(self, response: HttpResponse) -> Completion:
        """The answer in a 2xx response; raises the classified ProviderError otherwise (and for
        refusals, blocked prompts and unreadable bodies)."""
        ...

    def classify_error(self, response: HttpResponse) -> ProviderError:
        """The typed error for a failed response (status, body and headers)."""
        ...

    def stream_parser(self) -> StreamParser:
        """A fresh parser for one streamed answer."""
        ...
