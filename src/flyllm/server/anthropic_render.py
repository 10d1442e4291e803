"""Anthropic's answer shapes, shared by the whole answer and the stream's events: ids,
content blocks, ``stop_reason``, ``usage`` and the error body (decisions: see
:mod:`flyllm.server.anthropic_messages`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from flyllm.server.dialect import Call
from flyllm.server.errors import GatewayError
from flyllm.types import LlmResponse, ToolCall, Usage

__all__ = [
    "error_body",
    "message_id",
    "stop_reason",
    "thinking_blocks",
    "tool_use_block",
    "tool_use_id",
    "usage",
]

# The error kinds in Anthropic's ``error.type`` names (its API's set).
_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limit": "rate_limit_error",
    "upstream": "api_error",
    "unavailable": "overloaded_error",
    "timeout": "timeout_error",
    "internal": "api_error",
}
_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "other": "end_turn",
}
_ANTHROPIC_REASONS = frozenset(
    {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
     "model_context_window_exceeded"}
)  # fmt: skip
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_THINKING = frozenset({"thinking", "redacted_thinking"})


def message_id(request_id: str) -> str:
    """The ``msg_`` id of the answer to the request ``request_id``."""
    return "msg_" + request_id


def tool_use_id(call_id: str) -> str:
    """A call id as Anthropic's clients accept it (1 to 64 of ``[A-Za-z0-9_-]``): unchanged
    when it is one, else ``toolu_`` and a digest of it (the same for a stream and an answer)."""
    if _SAFE_ID.fullmatch(call_id):
        return call_id
    return "toolu_" + hashlib.sha256(call_id.encode("utf-8", "replace")).hexdigest()[:24]


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    """A tool call as a ``tool_use`` block."""
    return {"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
            "input": dict(call.arguments)}  # fmt: skip


def thinking_blocks(response: LlmResponse) -> list[dict[str, Any]]:
    """The thinking and redacted_thinking blocks an Anthropic instance answered with."""
    mine = response.provider_data.get("anthropic")
    blocks = mine.get("thinking_blocks") if isinstance(mine, Mapping) else None
    if not isinstance(blocks, list | tuple):
        return []
    return [dict(b) for b in blocks if isinstance(b, Mapping) and b.get("type") in _THINKING]


def stop_reason(call: Call, response: LlmResponse) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)`` for an answer (see the module docstring)."""
    raw = response.raw_finish_reason
    if response.provider == "anthropic" and raw in _ANTHROPIC_REASONS:
        reason = raw
    elif response.tool_calls:
        reason = "tool_use"
    else:
        reason = _FINISH.get(response.finish_reason or "stop", "end_turn")
    if reason != "stop_sequence":
        return reason, None
    stops: list[str] = call.echo.get("stop_sequences") or []
    return reason, (stops[0] if len(stops) == 1 else None)


def usage(counts: Usage) -> dict[str, int]:
    """flyllm's usage in Anthropic's fields."""
    return {
        "input_tokens": max(0, counts.prompt_tokens - counts.cached_tokens),
        "output_tokens": counts.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": counts.cached_tokens,
    }


def error_body(err: GatewayError) -> dict[str, Any]:
    """Anthropic's error body for ``err``."""
    kind = _ERROR_TYPES.get(err.kind, "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}
