"""Anthropic content blocks both ways, for :mod:`flyllm.providers.anthropic`.

Request side: flyllm's conversation as Messages API turns. An assistant turn is its thinking
blocks (kept from Anthropic's own answer, sent back unchanged and first), its text (never an
empty or whitespace-only text block) and one ``tool_use`` block per call; tool results become
``tool_result`` blocks at the start of the next user turn (consecutive results merged into it,
one per id, a following user text after them). A user turn with image parts goes as text and
image blocks (:mod:`flyllm.providers._anthropic_output`). Call ids are rewritten with
``charset_id``, alike for a call and its result. Tools go as ``{name, description,
input_schema}``; the choice as ``tool_choice {type: auto|any|tool|none}`` with
``disable_parallel_tool_use`` when parallel calls are switched off (``none`` takes no such
flag).

Response side: an answer's blocks read into text, tool calls and the thinking blocks kept in
``provider_data["anthropic"]["thinking_blocks"]``; wrong shapes are MalformedResponseError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.providers._anthropic_output import user_blocks
from flyllm.providers._common import loads, malformed, wrong_type
from flyllm.providers._tools import charset_id, check_call_count, check_call_head, new_call_id
from flyllm.providers.base import ToolSet
from flyllm.types import Message, ToolCall

__all__ = [
    "FAMILY",
    "MAX_ARGUMENT_DEPTH",
    "THINKING_BLOCKS",
    "check_raw_arguments",
    "provider_state",
    "read_blocks",
    "stream_call_start",
    "thinking_data",
    "tool_call",
    "wire_tools",
    "wire_turns",
]

FAMILY = "anthropic"
"""The ``provider_data`` key of Anthropic's state (only read and written under it)."""

THINKING_BLOCKS = "thinking_blocks"
"""Where an assistant turn's thinking and redacted_thinking blocks are kept, in order."""

MAX_ARGUMENT_DEPTH = 64
"""Tool arguments nested deeper than this are not a model's honest output."""

THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})

_CHOICE_TYPES = {"auto": "auto", "required": "any", "none": "none"}


# --- request side ---------------------------------------------------------------------------


def wire_tools(tools: ToolSet) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``tools`` list and the ``tool_choice`` object of a request."""
    offered = []
    for tool in tools.tools:
        schema = dict(tool.parameters)
        schema.setdefault("type", "object")  # the API requires it; flyllm's default implies it
        entry: dict[str, Any] = {"name": tool.name}
        if tool.description:
            entry["description"] = tool.description
        entry["input_schema"] = schema
        offered.append(entry)
    kind = _CHOICE_TYPES.get(tools.choice, "tool")
    choice: dict[str, Any] = {"type": kind}
    if kind == "tool":
        choice["name"] = tools.choice
    if tools.parallel is False and kind != "none":
        choice["disable_parallel_tool_use"] = True
    return offered, choice


def wire_turns(
    messages: Sequence[Message], notes: list[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, turns) of a conversation; ``notes`` gets a line per duplicate result
    or blank assistant turn left out."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
        elif m.role == "tool":
            _add_result(turns, m, notes)
        elif m.role == "user":
            blocks = user_blocks(m) if m.parts else None
            results = _results_turn(turns)
            if results is None:
                turns.append({"role": "user", "content": m.content if blocks is None else blocks})
            elif blocks is not None:
                results.extend(blocks)
            elif m.content.strip():
                results.append({"type": "text", "text": m.content})
        elif (turn := _assistant(m)) is not None:
            turns.append(turn)
        else:
            notes.append("an empty assistant turn left out for anthropic (it rejects blank text)")
    return system, turns


def _results_turn(turns: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The blocks of the last turn when it is a user turn that tool results opened."""
    if not turns or turns[-1]["role"] != "user":
        return None
    content = turns[-1]["content"]
    if isinstance(content, list) and content and content[0].get("type") == "tool_result":
        return content
    return None


def _add_result(turns: list[dict[str, Any]], m: Message, notes: list[str]) -> None:
    call_id = charset_id(m.tool_call_id or "")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if m.content.strip():  # blank text is rejected; a result without content is not
        block["content"] = m.content
    if m.is_error:
        block["is_error"] = True
    blocks = _results_turn(turns)
    if blocks is None:
        turns.append({"role": "user", "content": [block]})
        return
    leading = 0
    for existing in blocks:
        if existing.get("type") != "tool_result":
            break
        if existing["tool_use_id"] == call_id:
            notes.append(f"a second tool result for call {m.tool_call_id!r} left out for anthropic")
            return
        leading += 1
    blocks.insert(leading, block)  # results first, before any text merged after them


def _assistant(m: Message) -> dict[str, Any] | None:
    """The assistant turn's blocks; None for a blank turn without calls (an OpenAI answer of
    ``content: null``), which the API would reject."""
    thinking = provider_state(m.provider_data)
    if not m.tool_calls and not thinking:
        return {"role": "assistant", "content": m.content} if m.content.strip() else None
    blocks: list[dict[str, Any]] = list(thinking)
    if m.content.strip():
        blocks.append({"type": "text", "text": m.content})
    for call in m.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": charset_id(call.id),
                "name": call.name,
                # A call whose arguments were not an object (raw_arguments) goes as {}: the
                # API takes nothing else, and its result tells the model what went wrong.
                "input": dict(call.arguments),
            }
        )
    return {"role": "assistant", "content": blocks}


def provider_state(data: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The thinking blocks kept on an assistant turn, to send back as they came (only
    Anthropic's own key is read; blocks of another shape are left out)."""
    mine = data.get(FAMILY) if isinstance(data, Mapping) else None
    blocks = mine.get(THINKING_BLOCKS) if isinstance(mine, Mapping) else None
    if not isinstance(blocks, list | tuple):
        return []
    return [dict(b) for b in blocks if isinstance(b, Mapping) and b.get("type") in THINKING_TYPES]


# --- response side --------------------------------------------------------------------------


def read_blocks(
    blocks: list[Any], provider: str
) -> tuple[str, tuple[ToolCall, ...], list[dict[str, Any]]]:
    """(text, tool calls, thinking blocks) of an answer's ``content``."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            raise wrong_type("an item of content", block, provider)
        kind = block.get("type")
        if not isinstance(kind, str):
            raise wrong_type("a block in content with type", kind, provider)
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise wrong_type("a text block in content with text", text, provider)
            texts.append(text)
        elif kind == "tool_use":
            check_call_count(len(calls) + 1, provider)
            calls.append(tool_call(block, provider))
        elif kind in THINKING_TYPES:
            thinking.append(block)
    return "".join(texts), tuple(calls), thinking


def _call_head(block: Mapping[str, Any], provider: str) -> tuple[str, str]:
    """A tool_use block's id (a fresh one when absent) and name, type-checked."""
    call_id = block.get("id")
    if call_id is None or call_id == "":
        call_id = new_call_id()
    elif not isinstance(call_id, str):
        raise wrong_type("a tool_use block with id", call_id, provider)
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise wrong_type("a tool_use block with name", name, provider)
    check_call_head(call_id, name, provider)
    return call_id, name


def tool_call(block: Mapping[str, Any], provider: str) -> ToolCall:
    """The ToolCall of a whole ``tool_use`` block (``input`` must be an object)."""
    call_id, name = _call_head(block, provider)
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise wrong_type("a tool_use block with input", arguments, provider)
    if _too_deep(arguments):
        raise malformed(f"tool call arguments nested deeper than {MAX_ARGUMENT_DEPTH}", provider)
    return ToolCall(call_id, name, arguments)


def stream_call_start(block: Mapping[str, Any], provider: str) -> tuple[str, str, str]:
    """(id, name, arguments text so far) of a streamed ``tool_use`` block's start: its
    ``input`` is {} (the arguments follow as ``input_json_delta``), or a whole object."""
    call_id, name = _call_head(block, provider)
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise wrong_type("a tool_use block with input", arguments, provider)
    text = json.dumps(arguments, ensure_ascii=False, separators=(",", ":")) if arguments else ""
    return call_id, name, text


def check_raw_arguments(calls: Sequence[ToolCall], provider: str) -> None:
    """MalformedResponseError when streamed arguments that did not parse (kept as
    ``raw_arguments``) failed for nesting (hostile), or parsed nested too deeply; text that
    is merely not JSON stays, as the model wrote it."""
    for call in calls:
        if call.raw_arguments is not None:
            try:
                loads(call.raw_arguments)
            except ValueError as exc:
                if "nested too deeply" not in str(exc):
                    continue
                raise malformed("tool call arguments nested too deeply", provider) from None
        elif _too_deep(call.arguments):
            raise malformed(
                f"tool call arguments nested deeper than {MAX_ARGUMENT_DEPTH}", provider
            )


def _too_deep(value: Any) -> bool:
    """True when ``value`` nests more than MAX_ARGUMENT_DEPTH levels (iteratively: a hostile
    value must not cost the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_ARGUMENT_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return False


def thinking_data(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ``provider_data`` of an answer with these thinking blocks ({} without any)."""
    return {FAMILY: {THINKING_BLOCKS: blocks}} if blocks else {}
