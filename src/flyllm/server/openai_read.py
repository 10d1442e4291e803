"""Reading an OpenAI Chat Completions request's pieces into flyllm's types.

Messages (system, developer, user, assistant, tool) and their content parts (text, images by
``data:`` or http(s) URL), the assistant's ``tool_calls``, ``tools``, ``tool_choice`` and
``response_format``. Pure functions; every refusal is a 400 whose ``param`` names the field the
way OpenAI's API does (``messages[2].content[1]``), with the reason.
"""

from __future__ import annotations

import json
from typing import Any

from flyllm.server.errors import GatewayError, bad_request
from flyllm.types import Image, JsonSchema, Message, Tool, ToolCall

__all__ = ["read_messages", "read_response_format", "read_tool_choice", "read_tools"]

_ROLES = ("system", "developer", "user", "assistant", "tool")
_CHOICES = ("auto", "none", "required")
# Parts flyllm cannot carry to every provider: refused by name rather than dropped.
_UNCARRIED_PARTS = {
    "input_audio": "audio input",
    "file": "file input",
}


def read_messages(items: Any) -> tuple[str | None, list[Message]]:
    """``messages`` as (system prompt, turns): system and developer turns join, in order,
    into flyllm's ``system`` (every provider takes one system prompt); the others become
    Messages."""
    if not isinstance(items, list) or not items:
        raise bad_request("'messages' must be a non-empty array", "messages")
    system: list[str] = []
    turns: list[Message] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        role = item.get("role") if isinstance(item, dict) else None
        if role not in _ROLES:
            if role == "function":
                raise bad_request(
                    f"{where}: the legacy 'function' role is not supported: "
                    "send tool results as 'tool' messages",
                    f"{where}.role",
                )
            raise bad_request(f"{where}: expected an object with a role in {_ROLES}", where)
        if role in ("system", "developer"):
            system.append(_text(item.get("content"), f"{where}.content"))
        elif role == "user":
            turns.append(_user(item.get("content"), f"{where}.content"))
        elif role == "assistant":
            turns.append(_assistant(item, where))
        else:
            turns.append(_tool_result(item, where))
    if not turns:
        raise bad_request("'messages' needs at least one user or assistant turn", "messages")
    return ("\n\n".join(system) if system else None), turns


def _text(content: Any, where: str, *, refusal: bool = False) -> str:
    """Text content: a string, or an array of text parts (and refusal parts in an assistant
    turn, read as its text)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise bad_request(f"{where} must be a string or an array of parts", where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = "refusal" if refusal and kind == "refusal" else "text"
        if kind != key:
            raise bad_request(
                f"{where}[{j}]: expected a text part here, got {kind!r}", f"{where}[{j}]"
            )
        text = part.get(key)
        if not isinstance(text, str):
            raise bad_request(f"{where}[{j}].{key} must be a string", f"{where}[{j}].{key}")
        texts.append(text)
    return "".join(texts)


def _user(content: Any, where: str) -> Message:
    if not isinstance(content, list):
        return Message("user", _text(content, where))
    parts: list[str | Image] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str | None):  # a list or an object is no part type
            raise bad_request(f"{at}.type must be a string", f"{at}.type")
        if kind == "text":
            parts.append(_text([part], where))
        elif kind == "image_url":
            parts.append(_image(part.get("image_url"), f"{at}.image_url"))
        elif kind in _UNCARRIED_PARTS:
            raise bad_request(
                f"{at}: '{kind}' parts ({_UNCARRIED_PARTS[kind]}) are not supported: flyllm's "
                "gateway carries text and images to every provider",
                at,
            )
        else:
            raise bad_request(f"{at}: unknown content part type {kind!r}", f"{at}.type")
    if all(isinstance(p, str) for p in parts):
        return Message("user", "".join(p for p in parts if isinstance(p, str)))
    return Message.user(parts)


def _image(value: Any, where: str) -> Image:
    url = value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}.url must be a non-empty string", f"{where}.url")
    if not url.startswith(("data:", "http://", "https://")):
        raise bad_request(f"{where}.url must be an http(s) URL or a data: URI", f"{where}.url")
    detail = value.get("detail")
    if detail not in (None, "auto", "low", "high"):
        raise bad_request(f"{where}.detail must be 'auto', 'low' or 'high'", f"{where}.detail")
    try:
        return Image.from_url(url, detail=detail)
    except (TypeError, ValueError) as exc:
        raise bad_request(f"{where}.url: {exc}", f"{where}.url") from None


def _assistant(item: dict[str, Any], where: str) -> Message:
    for legacy in ("function_call", "audio"):
        if item.get(legacy) is not None:
            raise bad_request(
                f"{where}.{legacy} is not supported: "
                + ("use tool_calls" if legacy == "function_call" else "audio is not carried"),
                f"{where}.{legacy}",
            )
    text = _text(item.get("content"), f"{where}.content", refusal=True)
    calls = item.get("tool_calls")
    if calls is None:
        return Message("assistant", text)
    if not isinstance(calls, list):
        raise bad_request(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    return Message.assistant(
        text, [_call(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(calls)]
    )


def _call(value: Any, where: str) -> ToolCall:
    function = value.get("function") if isinstance(value, dict) else None
    if not isinstance(function, dict) or value.get("type", "function") != "function":
        raise bad_request(
            f"{where}: expected a function tool call "
            '({"id", "type": "function", "function": {...}})',
            where,
        )
    call_id, name, raw = value.get("id"), function.get("name"), function.get("arguments", "")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{where}.id must be a non-empty string", f"{where}.id")
    if not isinstance(name, str) or not name:
        raise bad_request(
            f"{where}.function.name must be a non-empty string", f"{where}.function.name"
        )
    if not isinstance(raw, str):
        raise bad_request(
            f"{where}.function.arguments must be a JSON string", f"{where}.function.arguments"
        )
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        arguments = None
    if isinstance(arguments, dict):
        return ToolCall(call_id, name, arguments)
    return ToolCall(call_id, name, {}, raw_arguments=raw)  # kept as the model sent it


def _tool_result(item: dict[str, Any], where: str) -> Message:
    call_id = item.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(
            f"{where}.tool_call_id must be a non-empty string", f"{where}.tool_call_id"
        )
    return Message.tool_result(call_id, _text(item.get("content"), f"{where}.content"))


def read_tools(value: Any) -> list[Tool] | None:
    """``tools`` (function tools only) as flyllm Tools; None when absent. A tool's ``strict``
    is accepted and not carried (flyllm sends each provider the schema as it is)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("'tools' must be an array", "tools")
    tools = []
    for i, item in enumerate(value):
        where = f"tools[{i}]"
        kind = item.get("type") if isinstance(item, dict) else None
        function = item.get("function") if isinstance(item, dict) else None
        if kind != "function" or not isinstance(function, dict):
            raise bad_request(
                f"{where}: only function tools are supported "
                f'({{"type": "function", "function": {{...}}}}), got {kind!r}',
                f"{where}.type",
            )
        name, description = function.get("name"), function.get("description") or ""
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(name, str) or not isinstance(description, str):
            raise bad_request(
                f"{where}.function: name and description must be strings", f"{where}.function"
            )
        if not isinstance(parameters, dict):
            raise bad_request(
                f"{where}.function.parameters must be a JSON Schema object",
                f"{where}.function.parameters",
            )
        tools.append(Tool(name, description, parameters))
    return tools


def read_tool_choice(value: Any) -> str | None:
    """``tool_choice`` as flyllm's: "auto", "none", "required" or the named tool."""
    if value is None or value in _CHOICES:
        return value  # type: ignore[no-any-return]
    function = value.get("function") if isinstance(value, dict) else None
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(function, dict):
        name = function.get("name")
        if isinstance(name, str) and name:
            return name
    raise bad_request(
        "tool_choice must be 'auto', 'none', 'required' or "
        '{"type": "function", "function": {"name": ...}} (allowed_tools and custom tools are '
        "not supported)",
        "tool_choice",
    )


def read_response_format(value: Any) -> JsonSchema | str | None:
    """``response_format``: text (None), json_object ("json") or json_schema (a JsonSchema;
    ``strict`` as sent, false when absent, as OpenAI's API defaults)."""
    kind = value.get("type") if isinstance(value, dict) else None
    if value is None or kind == "text":
        return None
    if kind == "json_object":
        return "json"
    spec = value.get("json_schema") if kind == "json_schema" else None
    if not isinstance(spec, dict):
        raise _format_error(
            "response_format must be {'type': 'text'}, {'type': 'json_object'} or "
            "{'type': 'json_schema', 'json_schema': {...}}"
        )
    name, schema, strict = spec.get("name"), spec.get("schema"), spec.get("strict")
    if not isinstance(name, str) or not name:
        raise _format_error("response_format.json_schema.name must be a non-empty string")
    if schema is None:
        return "json"
    if not isinstance(schema, dict) or not isinstance(strict, bool | None):
        raise _format_error(
            "response_format.json_schema: schema must be an object and strict a boolean"
        )
    description = spec.get("description")
    return JsonSchema(
        name,
        schema,
        bool(strict),
        description=description if isinstance(description, str) else None,
    )


def _format_error(message: str) -> GatewayError:
    return bad_request(message, "response_format")
