"""The tool side of the chat-completions dialects (OpenAI, Azure, the compatible services):
reading ``tools``, ``tool_choice``, ``parallel_tool_calls`` and the tool turns of ``messages``
with OpenAI's rules and 400s, and rendering the emulated model's calls whole or as stream
fragments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flyllm.emulator.tools import OfferedTool, PlannedCall, ToolResult
from flyllm.emulator.wire import Answer, Conversation, dumps, random_base62, text_parts

__all__ = [
    "MISSING_RESULTS",
    "NO_PARAMETERS",
    "ORPHAN_RESULT",
    "ToolTurns",
    "call_fragments",
    "call_object",
    "read_tool_turns",
    "read_tools",
]

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
CHOICES = ("none", "auto", "required")
NO_PARAMETERS = {"type": "object", "properties": {}}
"""The schema of a function sent without ``parameters`` (or with ``{}``): no arguments."""
ORPHAN_RESULT = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
    "with 'tool_calls'."
)
MISSING_RESULTS = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to "
    "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
)


def invalid(message: str, param: str | None = None, code: str | None = None) -> Answer:
    """A 400 ``invalid_request_error`` in OpenAI's shape."""
    payload = {"error": {"message": message, "type": "invalid_request_error", "param": param,
               "code": code}}  # fmt: skip
    return Answer(400, dumps(payload))


def call_object(call: PlannedCall) -> dict[str, Any]:
    """One whole call as ``message.tool_calls`` carries it, with a fresh ``call_`` id."""
    function = {"name": call.name, "arguments": call.arguments_json}
    return {"id": "call_" + random_base62(24), "type": "function", "function": function}


def call_fragments(calls: tuple[PlannedCall, ...]) -> list[dict[str, Any]]:
    """The ``delta.tool_calls`` items of a stream, as OpenAI sends them: per call, one with
    its index, id, type, name and empty arguments, then the arguments in three pieces."""
    out: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        first = call_object(call)
        first["function"]["arguments"] = ""
        out.append({"index": index, **first})
        text = call.arguments_json
        size = max(1, -(-len(text) // 3))
        out += [
            {"index": index, "function": {"arguments": text[i : i + size]}}
            for i in range(0, len(text), size)
        ]
    return out


def _kind(value: Any) -> str:
    """A JSON value's type as OpenAI's messages name it."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "null")


@dataclass(slots=True)
class ToolTurns:
    """What a valid ``messages`` array says: every turn's text, the last user text, the last
    role and the tool results of the last turns."""

    texts: list[str] = field(default_factory=list)
    prompt: str = ""
    last_role: str = "user"
    results: list[ToolResult] = field(default_factory=list)

    def fill(
        self, conv: Conversation, tools: tuple[OfferedTool, ...], choice: str, parallel: bool
    ) -> Conversation:
        """``conv`` with the tool fields set."""
        conv.tools, conv.tool_choice, conv.parallel_tools = tools, choice, parallel
        conv.last_role, conv.tool_results = self.last_role, tuple(self.results)
        return conv


def read_tool_turns(messages: list[dict[str, Any]]) -> ToolTurns | Answer:
    """The turns of ``messages`` (roles already checked) with OpenAI's pairing rules: every
    call id of an assistant turn answered by a ``tool`` message before the next other turn,
    and no ``tool`` message without such a call."""
    turns = ToolTurns()
    pending: dict[str, str] = {}  # call id -> tool name, awaiting its result
    for i, message in enumerate(messages):
        role, content = message["role"], message.get("content")
        if role != "tool" and pending:
            return invalid(MISSING_RESULTS + ", ".join(pending), f"messages.[{i}].role")
        text = text_parts(content)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                return invalid(
                    "Missing parameter 'tool_call_id': messages with role 'tool' must have a "
                    "'tool_call_id'.",
                    f"messages.[{i}].tool_call_id",
                )
            if call_id not in pending:
                return invalid(ORPHAN_RESULT, f"messages.[{i}].role")
            turns.results.append(ToolResult(pending.pop(call_id), text))
        else:
            turns.results = []
            if role == "assistant":
                calls = _read_calls(message.get("tool_calls"), f"messages[{i}]")
                if isinstance(calls, Answer):
                    return calls
                if content is None and not calls:
                    return invalid(
                        "Invalid value for 'content': expected a string, got null.",
                        f"messages.[{i}].content",
                    )
                pending = calls
            elif role == "user":
                turns.prompt = text
        turns.texts.append(text)
        turns.last_role = role
    if pending:
        return invalid(MISSING_RESULTS + ", ".join(pending), "messages")
    return turns


def _read_calls(calls: Any, where: str) -> dict[str, str] | Answer:
    """Call id -> name of an assistant turn's ``tool_calls`` (each ``{id, type: "function",
    function: {name, arguments: string}}``)."""
    if calls is None:
        return {}
    if not isinstance(calls, list):
        return invalid(
            f"Invalid type for '{where}.tool_calls': expected an array, but got "
            f"{_kind(calls)} instead.",
            f"{where}.tool_calls",
            "invalid_type",
        )
    found: dict[str, str] = {}
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            return invalid(f"Missing required parameter: '{at}.id'.", f"{at}.id")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return invalid(f"Missing required parameter: '{at}.function'.", f"{at}.function")
        if not isinstance(function.get("arguments"), str):
            return invalid(
                f"Invalid type for '{at}.function.arguments': expected a string, but got "
                f"{_kind(function.get('arguments'))} instead.",
                f"{at}.function.arguments",
                "invalid_type",
            )
        found[call["id"]] = function["name"]
    return found


def read_tools(body: dict[str, Any]) -> tuple[tuple[OfferedTool, ...], str, bool] | Answer:
    """(offered tools, neutral choice, parallel) from ``tools``, ``tool_choice`` and
    ``parallel_tool_calls``; the API's 400 for wrong shapes, or a choice or switch without
    tools."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if tools is None:
        for name, value in (("tool_choice", choice), ("parallel_tool_calls", parallel)):
            if value is not None:
                return invalid(
                    f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are "
                    "specified.",
                    name,
                )
        return (), "auto", True
    if not isinstance(tools, list) or not tools:
        return invalid(
            "Invalid 'tools': expected an array of objects with minimum length 1, but got "
            f"{_kind(tools) if tools else 'an empty array'} instead.",
            "tools",
            "invalid_type" if not isinstance(tools, list) else "empty_array",
        )
    offered: list[OfferedTool] = []
    for i, tool in enumerate(tools):
        read = _read_tool(tool, f"tools[{i}]")
        if isinstance(read, Answer):
            return read
        offered.append(read)
    picked = _read_choice(choice, [t.name for t in offered])
    if isinstance(picked, Answer):
        return picked
    if parallel is not None and not isinstance(parallel, bool):
        return invalid(
            "Invalid type for 'parallel_tool_calls': expected a boolean, but got "
            f"{_kind(parallel)} instead.",
            "parallel_tool_calls",
            "invalid_type",
        )
    return tuple(offered), picked, parallel is not False


def _read_tool(tool: Any, where: str) -> OfferedTool | Answer:
    kind = tool.get("type") if isinstance(tool, dict) else tool
    if kind != "function" or not isinstance(tool, dict):
        return invalid(
            f"Invalid value: {kind!r}. Supported values are: 'function' and 'custom'.",
            f"{where}.type",
            "invalid_value",
        )
    function = tool.get("function")
    if not isinstance(function, dict):
        return invalid(
            f"Missing required parameter: '{where}.function'.",
            f"{where}.function",
            "missing_required_parameter",
        )
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        return invalid(
            f"Invalid '{where}.function.name': string does not match pattern. Expected a "
            "string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            f"{where}.function.name",
            "invalid_value",
        )
    parameters = function.get("parameters", {})
    if not isinstance(parameters, dict):
        return invalid(
            f"Invalid type for '{where}.function.parameters': expected an object, but got "
            f"{_kind(parameters)} instead.",
            f"{where}.function.parameters",
            "invalid_type",
        )
    return OfferedTool(name, parameters or NO_PARAMETERS)


def _read_choice(choice: Any, names: list[str]) -> str | Answer:
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice in CHOICES:
            return choice
        return invalid(
            f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', and 'required'.",
            "tool_choice",
            "invalid_value",
        )
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(choice, dict) or choice.get("type") != "function" or name not in names:
        return invalid(
            "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or "
            "{'type': 'function', 'function': {'name': <one of the tools>}}.",
            "tool_choice",
            "invalid_value",
        )
    assert isinstance(name, str)
    return name
