"""Tool use and extended thinking in the emulator's Anthropic dialect: the checks the Messages
API makes (tools, ``tool_choice``, ``tool_use`` / ``tool_result`` blocks and their pairing,
thinking blocks and their signatures) with its 400 texts, and the blocks of an answer.

The pairing rule, as the API enforces it: every ``tool_use`` id of an assistant turn is
answered by one ``tool_result`` block in the very next message, a user turn, whose content
begins with those results; no id twice, and no result for an id the previous turn did not
use. Texts quoted from the API's answers as seen in public bug reports; the ones marked
"(emulator's wording)" are plausible stand-ins where no public text was found.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flyllm.emulator.text import Reply
from flyllm.emulator.tools import OfferedTool, PlannedCall, ToolResult
from flyllm.emulator.wire import Conversation, random_base62, text_parts

__all__ = [
    "AnthropicConversation",
    "Problem",
    "ToolOffer",
    "answer_blocks",
    "read_offer",
    "read_turns",
    "sign",
    "stream_blocks",
]

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_ID = re.compile(r"[a-zA-Z0-9_-]+")
_TOOL_FIELDS = frozenset(
    {
        "name",
        "description",
        "input_schema",
        "type",
        "cache_control",
        "strict",
        "input_examples",
        "defer_loading",
        "allowed_callers",
        "eager_input_streaming",
    }
)
_OURS = " (emulator's wording)"
_ID_PATTERN = "String should match pattern '^[a-zA-Z0-9_-]+$'"
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_SIGNING_KEY = b"flyllm-emulator-thinking"
_MISSING = (
    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
    "{ids}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
    "message."
)
_UNEXPECTED = (
    "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. "
    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
)
_DUPLICATE = (
    "messages.{i}.content.{j}: each tool_use must have a single result. Found multiple "
    "`tool_result` blocks with id: {id}"
)
_NOT_FIRST = (
    "messages.{i}: Did not find {n} `tool_result` block(s) at the beginning of this message. "
    "Messages following `tool_use` blocks must begin with a matching number of `tool_result` "
    "blocks."
)
_THINKING_FIRST = (
    "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
    "`{found}`. When `thinking` is enabled, a final `assistant` message must start with a "
    "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We "
    "recommend you include thinking blocks from previous turns. To avoid this requirement, "
    "disable `thinking`."
)


class Problem(Exception):
    """A request the API would answer with a 400 ``invalid_request_error``; the message is
    the API's text."""


@dataclass(slots=True)
class AnthropicConversation(Conversation):
    """A Conversation that also knows whether extended thinking is on (the answer then
    starts with a signed thinking block)."""

    thinking: bool = False


@dataclass(slots=True, frozen=True)
class ToolOffer:
    """The tools of a request in the neutral spelling, and whether thinking is on."""

    tools: tuple[OfferedTool, ...] = ()
    choice: str = "auto"
    parallel: bool = True
    thinking: bool = False


def sign(thinking: str) -> str:
    """The emulator's signature of a thinking text (checked when the block comes back)."""
    digest = hashlib.blake2b(thinking.encode(), key=_SIGNING_KEY, digest_size=48).digest()
    return base64.b64encode(b"\x12\x0c" + digest).decode()


def read_offer(body: dict[str, Any]) -> ToolOffer:
    """``tools``, ``tool_choice`` and ``thinking`` checked; Problem for what the API rejects."""
    tools = body.get("tools")
    offered = _read_tools([] if tools is None else tools)
    choice, parallel = _read_choice(body.get("tool_choice"), {t.name for t in offered})
    thinking = body.get("thinking")
    if thinking is not None and (
        not isinstance(thinking, dict)
        or thinking.get("type") not in ("enabled", "disabled", "adaptive")
    ):
        raise Problem(
            "thinking: Input tag found using 'type' does not match any of the expected tags: "
            "'enabled', 'disabled', 'adaptive'"
        )
    on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    if on and choice not in ("auto", "none"):
        raise Problem("Thinking may not be enabled when tool_choice forces tool use.")
    return ToolOffer(offered, choice, parallel, on)


def _read_tools(tools: Any) -> tuple[OfferedTool, ...]:
    if not isinstance(tools, list):
        raise Problem("tools: Input should be a valid list")
    offered: list[OfferedTool] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise Problem(f"tools.{i}: Input should be a valid dictionary")
        if tool.get("type") not in (None, "custom"):
            continue  # a server tool (web search...): not the client's to answer
        for key in tool:
            if key not in _TOOL_FIELDS:
                raise Problem(f"tools.{i}.custom.{key}: Extra inputs are not permitted")
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise Problem(
                f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        if not isinstance(schema, dict):
            raise Problem(f"tools.{i}.custom.input_schema: Field required")
        if schema.get("type") != "object":
            raise Problem(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if any(t.name == name for t in offered):
            raise Problem("tools: Tool names must be unique.")
        offered.append(OfferedTool(name, schema))
    return tuple(offered)


def _read_choice(choice: Any, names: set[str]) -> tuple[str, bool]:
    if choice is None:
        return "auto", True
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise Problem(
            "tool_choice: Input tag found using 'type' does not match any of the expected "
            "tags: 'auto', 'any', 'tool', 'none'"
        )
    assert isinstance(choice, dict)
    disable = choice.get("disable_parallel_tool_use", False)
    if kind == "none" and "disable_parallel_tool_use" in choice:
        raise Problem("tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted")
    if not isinstance(disable, bool):
        raise Problem(
            f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a valid boolean"
        )
    if kind in ("any", "tool") and not names:
        raise Problem(f"tool_choice: `{kind}` requires `tools` to be provided{_OURS}")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise Problem("tool_choice.tool.name: Field required")
        if name not in names:
            raise Problem(f"tool_choice.name: Tool '{name}' not found in tools{_OURS}")
        return name, not disable
    return _CHOICES[kind], not disable


@dataclass(slots=True)
class Turns:
    """What the messages say beyond their text: the texts (for token counts), the prompt
    (the last user text), the last turn's role in the neutral spelling, and its results."""

    texts: list[str] = field(default_factory=list)
    prompt: str = ""
    last_role: str = "user"
    results: tuple[ToolResult, ...] = ()


def read_turns(messages: Sequence[dict[str, Any]], thinking: bool) -> Turns:
    """Each message's blocks checked, then the pairing rule; Problem for the first fault.
    Messages are dicts with a valid role (the caller checked)."""
    out = Turns()
    names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role, content = message["role"], message.get("content")
        blocks = content if isinstance(content, list) else []
        _check_blocks(i, role, blocks, names)
        text = text_parts(content)
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        out.texts.append(" ".join([text, *(_result_text(b) for b in results)]))
        if role == "user" and text.strip():
            out.prompt = text
        out.last_role = "tool" if results else role
        out.results = tuple(
            ToolResult(
                names.get(b["tool_use_id"]) or str(b["tool_use_id"]),
                _result_text(b),
                b.get("is_error") is True,
            )
            for b in results
        )
    _check_pairing(messages)
    if thinking and out.last_role == "tool":
        _check_thinking_first(messages)
    return out


def _result_text(block: dict[str, Any]) -> str:
    return text_parts(block.get("content", ""))


def _check_blocks(i: int, role: str, blocks: list[Any], names: dict[str, str]) -> None:
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise Problem(f"messages.{i}.content.{j}: Input should be a valid dictionary")
        kind, where = block["type"], f"messages.{i}.content.{j}"
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                raise Problem("messages: text content blocks must be non-empty")
            if not text.strip():
                raise Problem("messages: text content blocks must contain non-whitespace text")
        elif kind == "tool_use":
            _check_tool_use(where, role, block, names)
        elif kind == "tool_result":
            call_id = block.get("tool_use_id")
            if role != "user":
                raise Problem(
                    f"{where}: tool_result blocks are only permitted in user messages{_OURS}"
                )
            if not isinstance(call_id, str) or not _ID.fullmatch(call_id):
                raise Problem(f"{where}.tool_result.tool_use_id: {_ID_PATTERN}")
            if not isinstance(block.get("is_error", False), bool):
                raise Problem(f"{where}.tool_result.is_error: Input should be a valid boolean")
        elif kind == "thinking":
            thought, signature = block.get("thinking"), block.get("signature")
            if not isinstance(thought, str) or signature != sign(thought):
                raise Problem(f"{where}: Invalid `signature` in `thinking` block")


def _check_tool_use(where: str, role: str, block: dict[str, Any], names: dict[str, str]) -> None:
    call_id, name = block.get("id"), block.get("name")
    if role != "assistant":
        raise Problem(f"{where}: tool_use blocks are only permitted in assistant messages{_OURS}")
    if not isinstance(call_id, str) or not _ID.fullmatch(call_id):
        raise Problem(f"{where}.tool_use.id: {_ID_PATTERN}")
    if not isinstance(name, str) or not name:
        raise Problem(f"{where}.tool_use.name: Input should be a valid string")
    if not isinstance(block.get("input"), dict):
        raise Problem(f"{where}.tool_use.input: Input should be a valid dictionary")
    if call_id in names:
        raise Problem(f"{where}: `tool_use` ids must be unique")
    names[call_id] = name


def _ids(message: dict[str, Any], kind: str, key: str) -> list[tuple[int, str]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [(j, b[key]) for j, b in enumerate(content) if b.get("type") == kind]


def _check_pairing(messages: Sequence[dict[str, Any]]) -> None:
    for i, message in enumerate(messages):
        if message["role"] == "user":
            used = _ids(messages[i - 1], "tool_use", "id") if i else []
            _check_results(i, message, [call_id for _, call_id in used])
        if message["role"] != "assistant":
            continue
        used = _ids(message, "tool_use", "id")
        answered = (
            {call_id for _, call_id in _ids(messages[i + 1], "tool_result", "tool_use_id")}
            if i + 1 < len(messages)
            else set()
        )
        missing = [call_id for _, call_id in used if call_id not in answered]
        if missing:
            raise Problem(_MISSING.format(i=i, ids=", ".join(missing)))


def _check_results(i: int, message: dict[str, Any], used: list[str]) -> None:
    results = _ids(message, "tool_result", "tool_use_id")
    seen: set[str] = set()
    for j, call_id in results:
        if call_id not in used:
            raise Problem(_UNEXPECTED.format(i=i, j=j, id=call_id))
        if call_id in seen:
            raise Problem(_DUPLICATE.format(i=i, j=j, id=call_id))
        seen.add(call_id)
    if used and [j for j, _ in results[: len(used)]] != list(range(len(used))):
        raise Problem(_NOT_FIRST.format(i=i, n=len(used)))


def _check_thinking_first(messages: Sequence[dict[str, Any]]) -> None:
    """With thinking on, the assistant turn whose calls the last results answer starts with
    a thinking block (the one the API returned, signature intact)."""
    i = len(messages) - 2
    if i < 0 or messages[i]["role"] != "assistant":
        return
    content = messages[i].get("content")
    first = content[0].get("type") if isinstance(content, list) and content else "text"
    if first not in ("thinking", "redacted_thinking"):
        raise Problem(_THINKING_FIRST.format(i=i, found=first))


# --- answers --------------------------------------------------------------------------------


def _thought(conv: Conversation) -> str:
    return "The emulator considers: " + " ".join(conv.prompt.split()[:12])


def answer_blocks(conv: Conversation, reply: Reply) -> list[dict[str, Any]]:
    """The ``content`` of a non-streamed answer: thinking (when on), text, tool_use blocks."""
    blocks: list[dict[str, Any]] = []
    if isinstance(conv, AnthropicConversation) and conv.thinking:
        thought = _thought(conv)
        blocks.append({"type": "thinking", "thinking": thought, "signature": sign(thought)})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks.extend(_tool_use(call) for call in reply.calls)
    return blocks


def _tool_use(call: PlannedCall) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": "toolu_01" + random_base62(22),
        "name": call.name,
        "input": dict(call.arguments),
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


def _block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
    events = [
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
    ]
    events += [
        _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    ]
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _pieces(text: str, parts: int = 3) -> list[str]:
    """``text`` in about ``parts`` pieces (Anthropic streams a call's JSON in fragments)."""
    size = max(1, -(-len(text) // parts))
    return [text[k : k + size] for k in range(0, len(text), size)]


def stream_blocks(conv: Conversation, reply: Reply) -> list[bytes]:
    """The block events of a streamed answer with thinking or tool calls: each block's start,
    its deltas (a call's arguments as ``input_json_delta`` in several pieces, the first one
    empty as the API sends it) and its stop."""
    events: list[bytes] = []
    index = 0
    if isinstance(conv, AnthropicConversation) and conv.thinking:
        thought = _thought(conv)
        deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(thought, 2)]
        deltas.append({"type": "signature_delta", "signature": sign(thought)})
        events += _block(index, {"type": "thinking", "thinking": "", "signature": ""}, deltas)
        index += 1
    if reply.text:
        deltas = [{"type": "text_delta", "text": c} for c in reply.chunks]
        events += _block(index, {"type": "text", "text": ""}, deltas)
        index += 1
    for call in reply.calls:
        start = {**_tool_use(call), "input": {}}
        pieces = ["", *_pieces(call.arguments_json)]
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        events += _block(index, start, deltas)
        index += 1
    return events
