"""What a client protocol (OpenAI Chat Completions, Anthropic Messages) implements.

A dialect is a pure translator, like a provider module turned around: it reads the client's
request body into a ``Call`` (a flyllm GenerationRequest plus what the answer must echo), and
renders flyllm's answers, stream chunks and errors in the client's shapes. The gateway's
handler (flyllm.server.app) does the rest: keys, limits, the manager call, headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flyllm.server.errors import GatewayError
from flyllm.types import GenerationRequest, LlmResponse, StreamChunk

__all__ = ["Call", "Dialect", "StreamWriter"]


@dataclass(slots=True, frozen=True)
class Call:
    """One client request, read: ``request`` has no task yet (the handler resolves ``model``,
    the name the client sent, to a task); ``stream`` and ``include_usage`` say how to answer;
    ``echo`` holds what the answer repeats back (e.g. OpenAI's ``n`` or Anthropic's
    ``stop_sequences``), for the dialect's own use."""

    request: GenerationRequest
    model: str
    stream: bool = False
    include_usage: bool = False
    echo: Mapping[str, Any] = field(default_factory=dict)


class StreamWriter(Protocol):
    """Renders one streamed answer as server-sent events, piece by piece."""

    def start(self, chunk: StreamChunk) -> bytes:
        """The events before the first chunk's own (e.g. Anthropic's ``message_start``)."""
        ...

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The events carrying one chunk (may be empty bytes)."""
        ...

    def end(self, response: LlmResponse) -> bytes:
        """The closing events: finish reason, usage, the terminator."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """An error after the stream has started (its status line is long gone)."""
        ...


class Dialect(Protocol):
    """One client protocol. Pure: no I/O, no manager."""

    name: str
    """Short name for logs and metrics ("openai", "anthropic")."""

    request_id_header: str
    """The response header the protocol's SDK reads the request id from."""

    def parse(self, body: Any) -> Call:
        """The request body (decoded JSON) as a Call; a GatewayError (400) naming the field
        when it is not a valid request."""
        ...

    def render(self, call: Call, response: LlmResponse, request_id: str) -> dict[str, Any]:
        """The whole answer as the protocol's JSON object."""
        ...

    def stream_writer(self, call: Call, request_id: str) -> StreamWriter:
        """A writer for one streamed answer."""
        ...

    def render_error(self, err: GatewayError) -> dict[str, Any]:
        """The protocol's error object."""
        ...
