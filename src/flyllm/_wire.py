"""The neutral wire values every layer above shares: an HTTP request and answer
(:class:`HttpRequest`, :class:`HttpResponse`), one attempt's :class:`Timeouts`, and the
incremental stream decoders (server-sent events and NDJSON): bytes in, :class:`SseEvent` values
out. Nothing here knows a provider or does I/O, so providers and the transport both build on it.

The SSE decoder is pure (no I/O) and provider-neutral; the transport feeds it whatever the
socket delivers and hands the events to a provider's stream parser. It follows the WHATWG
event-stream rules (HTML Living Standard, "Server-sent events", parsing an event stream):

- lines end in LF, CRLF or CR, and a CR ending one read followed by an LF starting the next is a
  single line end (Gemini streams use CRLF);
- bytes are decoded incrementally, so a read may end inside a multi-byte UTF-8 character;
- ``data:`` lines of one event are joined with ``\\n``; one space after the colon is stripped;
- a blank line dispatches the event (only if it had ``data``); ``event:`` names are kept;
- comment lines (``:``), ``id:`` and ``retry:`` are ignored;
- :meth:`SseDecoder.close` flushes an event that has data but no closing blank line.

One deliberate addition: a line whose field is none of ``data``/``event``/``id``/``retry`` is
ignored by the spec, but Gemini sends errors after HTTP 200 as bare JSON spread over such lines.
Rather than drop them, the decoder reports each one as ``SseEvent(data=<line>,
event=NON_SSE_LINE)``. Parsers of well-behaved providers ignore these events; the Gemini parser
reassembles them into the JSON error. ``NON_SSE_LINE`` (defined here beside SseEvent, and
re-exported by ``providers.base``) contains a newline, which no real event name can, so it can
never be confused with a server's ``event:`` field.

Speed matters here (every streamed token passes through): lines are split with ``str`` methods
over the buffered text, never byte by byte.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field

from flyllm.types import _quick_init

__all__ = [
    "NON_SSE_LINE",
    "HttpRequest",
    "HttpResponse",
    "NdjsonDecoder",
    "SseDecoder",
    "SseEvent",
    "Timeouts",
    "decoder_for",
    "url_scheme",
]


@_quick_init  # built for every attempt: see flyllm.types._quick_init
@dataclass(slots=True, frozen=True)
class HttpRequest:
    """A request ready to send. ``notes`` are one-line warnings about parameters that were left
    out or clamped for this provider (the instance logs each once)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes
    notes: tuple[str, ...] = ()


@_quick_init
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

``flyllm._wire.SseDecoder`` reports such lines (the SSE spec ignores them) because Gemini sends
errors after HTTP 200 as bare JSON spread over lines; stream parsers of other providers ignore
these events. The name contains a newline, which no real ``event:`` field can, so it can never
collide with one a server sends.
"""


@dataclass(slots=True, frozen=True)
class Timeouts:
    """One attempt's limits in seconds: ``connect`` to open a connection; ``read`` for the
    whole response head, then for a non-streamed answer until all of it has arrived, for a
    stream between two complete events (bytes that complete none do not count); ``total`` for
    the whole attempt (None: no limit; the manager sets it from the request's deadline)."""

    connect: float = 10.0
    read: float = 120.0
    total: float | None = None


_IGNORED_FIELDS = frozenset({"id", "retry"})


class SseDecoder:
    """Turns a byte stream into server-sent events, one read at a time.

    ``feed`` returns the events completed by that read (often none or one); ``close`` returns
    what the end of the stream completes. A decoder serves one stream; after ``close`` it is
    reset and could serve another.
    """

    __slots__ = ("_data", "_decoder", "_event", "_skip_lf", "_started", "_tail")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail: list[str] = []  # pieces of the current, unfinished line
        self._skip_lf = False  # the last read ended with CR: an LF opening the next is its pair
        self._started = False  # a byte-order mark is only stripped at the very start
        self._data: list[str] | None = None  # the pending event's data lines (None: none yet)
        self._event: str | None = None

    def feed(self, data: bytes) -> list[SseEvent]:
        """The events completed by these bytes."""
        text = self._decoder.decode(data)
        return self._feed_text(text) if text else []

    def close(self) -> list[SseEvent]:
        """The events the end of the stream completes: a last line without a line end and a
        pending event with data but no closing blank line. Resets the decoder."""
        text = self._decoder.decode(b"", final=True)
        events = self._feed_text(text) if text else []
        if self._tail:
            line = "".join(self._tail)
            self._tail = []
            self._lines([line], events)
        if self._data is not None:
            events.append(SseEvent("\n".join(self._data), self._event))
        self._data = self._event = None
        self._skip_lf = self._started = False
        self._decoder.reset()
        return events

    def _feed_text(self, text: str) -> list[SseEvent]:
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if "\r" in text:
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        elif "\n" not in text:
            self._tail.append(text)
            return []
        lines = text.split("\n")
        if self._tail:
            self._tail.append(lines[0])
            lines[0] = "".join(self._tail)
            self._tail = []
        last = lines.pop()
        if last:
            self._tail.append(last)
        events: list[SseEvent] = []
        self._lines(lines, events)
        return events

    def _lines(self, lines: list[str], events: list[SseEvent]) -> None:
        for line in lines:
            if not line:
                if self._data is not None:
                    data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
                    events.append(SseEvent(data, self._event))
                    self._data = None
                self._event = None
            elif line.startswith("data:"):
                self._add_data(line[6:] if line.startswith(" ", 5) else line[5:])
            elif line[0] != ":":
                self._field(line, events)

    def _add_data(self, value: str) -> None:
        # a list joined at dispatch: appending to a string made an event of many data lines
        # cost time quadratic in its length
        if self._data is None:
            self._data = [value]
        else:
            self._data.append(value)

    def _field(self, line: str, events: list[SseEvent]) -> None:
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value or None
        elif name == "data":  # "data" alone, without a colon: an empty data line
            self._add_data(value)
        elif name not in _IGNORED_FIELDS:
            events.append(SseEvent(line, NON_SSE_LINE))


class NdjsonDecoder:
    """Newline-delimited JSON (Ollama's streams): each non-empty line is one event's data.
    Same interface as SseDecoder, so stream parsers see the same SseEvent shape. An unfinished
    line is kept in pieces, joined once it ends, so a line that never ends costs linear time."""

    __slots__ = ("_decoder", "_tail")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail: list[str] = []  # pieces of the current, unfinished line

    def feed(self, data: bytes) -> list[SseEvent]:
        """The lines completed by these bytes."""
        text = self._decoder.decode(data)
        if "\n" not in text:
            if text:
                self._tail.append(text)
            return []
        *lines, last = text.split("\n")
        if self._tail:
            lines[0] = "".join(self._tail) + lines[0]
        self._tail = [last] if last else []
        return [SseEvent(line.rstrip("\r")) for line in lines if line.strip()]

    def close(self) -> list[SseEvent]:
        """A last line without a line end; resets the decoder."""
        last = ("".join(self._tail) + self._decoder.decode(b"", final=True)).strip()
        self._tail = []
        self._decoder.reset()
        return [SseEvent(last)] if last else []


def decoder_for(framing: str) -> SseDecoder | NdjsonDecoder:
    """A fresh decoder for a provider's ``stream_framing``."""
    if framing == "ndjson":
        return NdjsonDecoder()
    if framing == "sse":
        return SseDecoder()
    raise ValueError(f"unknown stream framing {framing!r}")


def url_scheme(url: str) -> str:
    """The scheme of ``url``, lower case ('' when it has none)."""
    scheme, sep, _ = url.partition(":")
    return scheme.lower() if sep else ""
