"""Anthropic's stream event sequence for one streamed answer.

``message_start`` (the message with empty content and the usage known so far: none, as
flyllm's chunks carry usage only at the end), then per content block ``content_block_start``,
its deltas (``text_delta``; ``input_json_delta`` for a tool_use block) and
``content_block_stop``, a ``ping`` after the first block starts (where Anthropic sends it),
then ``message_delta`` (stop_reason, stop_sequence and the whole usage: input tokens too,
since the upstream may report them only at the end, and the SDK reads them there) and
``message_stop``. Each event is ``event: <type>`` and ``data: <json>`` lines, as Anthropic
sends them. An error after the start is Anthropic's ``error`` event.

An Anthropic instance's thinking blocks are known only when its stream ends (flyllm keeps
them aside as provider state), so they come as whole blocks after the others; clients keep
them in order and flyllm sends them back first, where Anthropic wants them.
"""

from __future__ import annotations

import json
from typing import Any

from flyllm.server.anthropic_render import (
    error_body,
    stop_reason,
    thinking_blocks,
    tool_use_id,
    usage,
)
from flyllm.server.dialect import Call
from flyllm.server.errors import GatewayError
from flyllm.types import LlmResponse, StreamChunk, ToolCallDelta

__all__ = ["EventWriter"]

# ASCII-escaped, so a lone surrogate from an upstream cannot break the encoding mid-stream.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_TEXT = "text"
# The hot path (one event per text chunk) as a template: only the index and the text vary.
_TEXT_DELTA = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":%s}}\n\n'
)
_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {_dumps(data)}\n\n".encode()


class EventWriter:
    """Renders one streamed answer as Anthropic's events (see the module docstring)."""

    __slots__ = ("_blocks", "_call", "_calls", "_id", "_open")

    def __init__(self, call: Call, message_id: str) -> None:
        self._call = call
        self._id = message_id
        self._blocks = 0  # content blocks started so far: the next block's index
        self._open: str | int | None = None  # the open block: _TEXT or a tool call's index
        self._calls: dict[int, int] = {}  # tool call index -> its block's index

    def start(self, chunk: StreamChunk) -> bytes:
        """``message_start``."""
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The events of one chunk: its text, then its tool-call pieces."""
        out = b""
        if chunk.text:
            if self._open != _TEXT:
                out += self._begin({"type": "text", "text": ""}, _TEXT)
            out += _TEXT_DELTA % (self._blocks - 1, _dumps(chunk.text).encode())
        for delta in chunk.tool_calls:
            out += self._tool(delta)
        return out

    def end(self, response: LlmResponse) -> bytes:
        """Closes the open block, adds the thinking blocks, then ``message_delta`` and
        ``message_stop``."""
        out = self._close()
        for block in thinking_blocks(response):
            out += self._begin(block, None) + self._close_index(self._blocks - 1)
        reason, sequence = stop_reason(self._call, response)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        out += _event(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": usage(response.usage)},
        )
        return out + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

    def error(self, err: GatewayError) -> bytes:
        """Anthropic's ``error`` event."""
        return _event("error", error_body(err))

    def _tool(self, delta: ToolCallDelta) -> bytes:
        out = b""
        block = self._calls.get(delta.index)
        if block is None:
            call_id = delta.id or f"{self._id}_{delta.index}"
            head = {
                "type": "tool_use",
                "id": tool_use_id(call_id),
                "name": delta.name or "",
                "input": {},
            }
            out += self._begin(head, delta.index)
            block = self._blocks - 1
            self._calls[delta.index] = block
        # A piece for a call whose block was closed (providers interleaving parallel calls)
        # still goes to that call's block: the SDK joins pieces by block index.
        if delta.arguments_delta:
            piece = {"type": "input_json_delta", "partial_json": delta.arguments_delta}
            out += _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": block, "delta": piece},
            )
        return out

    def _begin(self, block: dict[str, Any], opens: str | int | None) -> bytes:
        out = self._close()
        index = self._blocks
        self._blocks += 1
        self._open = opens
        out += _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        return (out + _PING) if index == 0 else out

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        index = self._blocks - 1
        return self._close_index(index)

    @staticmethod
    def _close_index(index: int) -> bytes:
        return _STOP % index
