"""Generation parameters: validation of the known ones and the merge of the layers.

Layers merge as instance defaults < task defaults < request params; then the ``provider_params``
of the instance's provider, in the same order, override them for that provider only. Validation
happens when a layer is given (at add_provider / define_task for set-up, before sending for a
request), so a bad value never reaches the wire.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.types import (
    GenerationRequest,
    Image,
    JsonSchema,
    Message,
    Tool,
    ToolCall,
    ToolChoice,
    sniff_media_type,
)

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # Gemini wants a letter or "_" first
_CHOICES = frozenset({"auto", "none", "required"})

__all__ = [
    "OutputFormat",
    "ToolSet",
    "conversation",
    "merge_params",
    "output_format",
    "tool_set",
    "validate_params",
    "validate_provider_params",
]


@dataclass(slots=True, frozen=True)
class ToolSet:
    """The tools of one request, validated: offered ``tools`` (at least one), the ``choice``
    ("auto", "none", "required" or one offered tool's name) and ``parallel`` (None: the
    provider's default)."""

    tools: tuple[Tool, ...]
    choice: ToolChoice = "auto"
    parallel: bool | None = None


@dataclass(slots=True, frozen=True)
class OutputFormat:
    """A request's ``response_format``, checked: ``schema`` is None for "json" (any JSON
    object); ``name`` the schema's name ("response" for "json"); ``strict`` whether the
    provider should enforce the schema where it can; ``model`` the pydantic class answers are
    validated into, when one was given."""

    name: str
    schema: Mapping[str, Any] | None
    strict: bool = False
    description: str | None = None
    model: Any = None


def _int(name: str, value: Any, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):  # NaN and the infinities are not JSON
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _sendable(name: str, value: Any) -> Any:
    """``value`` unchanged when JSON can carry it (what every provider sends); ValueError
    naming ``name`` otherwise, so a set, bytes, a datetime, NaN or a structure nested too deeply
    is refused before anything is sent instead of failing inside a provider."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ValueError(f"{name} cannot be sent as JSON: {why}") from None
    return value


def _stop(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return list(value)
    raise TypeError(f"stop must be a string or a list of strings, got {value!r}")


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "max_tokens": lambda v: _int("max_tokens", v, 1),
    "temperature": lambda v: _number("temperature", v),
    "top_p": lambda v: _number("top_p", v),
    "top_k": lambda v: _int("top_k", v, 0),
    "stop": _stop,
    "seed": lambda v: _int("seed", v, None),
}


def validate_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``params`` with the known parameters checked and normalised (``stop`` becomes a
    list, numbers become floats). Unknown parameters pass unchanged when JSON can carry them.
    Raises TypeError or ValueError naming the culprit (NaN, infinities, sets, bytes...);
    callers wrap it in the error type of their layer."""
    if not params:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping, got {type(params).__name__}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(f"parameter names must be strings, got {key!r}")
        check = _VALIDATORS.get(key)
        if value is None:
            out[key] = value
        elif check is not None:
            out[key] = check(value)
        else:
            out[key] = _sendable(key, value)
    return out


def validate_provider_params(
    provider_params: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """``provider_params`` checked: provider name -> validated parameters."""
    if not provider_params:
        return {}
    if not isinstance(provider_params, Mapping):
        raise TypeError("provider_params must map a provider name to a mapping of parameters")
    out: dict[str, dict[str, Any]] = {}
    for name, params in provider_params.items():
        if not isinstance(params, Mapping):
            raise TypeError(f"provider_params[{name!r}] must be a mapping, got {params!r}")
        out[str(name).lower()] = validate_params(params)
    return out


def merge_params(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The layers merged left to right (later wins). A None value removes a parameter, so a
    request can unset a task default."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return {k: v for k, v in merged.items() if v is not None}


def conversation(request: GenerationRequest) -> tuple[Message, ...]:
    """The conversation to send: system prompt, messages, then the prompt as a user turn."""
    prompt = request.prompt
    if request.messages is None and request.system is None and type(prompt) is str:
        return (Message("user", prompt),)  # the common case, checked cheaply
    out: list[Message] = []
    if request.system is not None:
        if not isinstance(request.system, str):
            raise InvalidRequestError("system must be a string")
        out.append(Message("system", request.system))
    if request.messages is not None:
        if isinstance(request.messages, str | bytes) or not isinstance(request.messages, Sequence):
            raise InvalidRequestError("messages must be a sequence of Message")
        for i, m in enumerate(request.messages):
            if not isinstance(m, Message):
                raise InvalidRequestError(f"messages[{i}] must be a Message, got {m!r}")
            _check_message(i, m)
            out.append(m)
    if request.prompt is not None:
        if not isinstance(request.prompt, str):
            raise InvalidRequestError(
                f"prompt must be a string, got {type(request.prompt).__name__}"
            )
        out.append(Message("user", request.prompt))
    if not any(m.role != "system" for m in out):
        if request.messages is not None and request.prompt is None:
            raise InvalidRequestError("the conversation is empty: messages has no user turn")
        raise InvalidRequestError("the request has neither a prompt nor messages")
    return tuple(out)


def _check_message(i: int, m: Message) -> None:
    """One turn of the caller's conversation checked: its role, text, and tool fields."""
    if m.role not in _ROLES:
        raise InvalidRequestError(
            f"messages[{i}] has role {m.role!r}; valid roles: system, user, assistant, tool"
        )
    if not isinstance(m.content, str):
        raise InvalidRequestError(f"messages[{i}].content must be a string")
    if m.parts:
        _check_parts(i, m)
    if m.tool_calls:
        if m.role != "assistant" or not isinstance(m.tool_calls, tuple):
            raise InvalidRequestError(
                f"messages[{i}]: only an assistant turn carries tool_calls (a tuple of ToolCall)"
            )
        for call in m.tool_calls:
            _check_call(i, call)
    if m.role == "tool":
        if not isinstance(m.tool_call_id, str) or not m.tool_call_id:
            raise InvalidRequestError(
                f"messages[{i}] is a tool result without the tool_call_id of its call; "
                "build it with Message.tool_result(call.id, ...)"
            )
    elif m.tool_call_id is not None:
        raise InvalidRequestError(f"messages[{i}]: only a tool result has a tool_call_id")


def _check_call(i: int, call: Any) -> None:
    if not isinstance(call, ToolCall):
        raise InvalidRequestError(f"messages[{i}].tool_calls holds {call!r}, not a ToolCall")
    if not isinstance(call.id, str) or not call.id or not isinstance(call.name, str):
        raise InvalidRequestError(f"messages[{i}] has a tool call without an id or a name")
    if not isinstance(call.arguments, Mapping):
        raise InvalidRequestError(f"messages[{i}]: tool call {call.id!r} arguments not a mapping")
    try:
        json.dumps(call.arguments, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise InvalidRequestError(
            f"messages[{i}]: the arguments of tool call {call.id!r} cannot be sent as JSON"
        ) from None


def tool_set(request: GenerationRequest) -> ToolSet | None:
    """The request's tools checked (names, schemas, choice); None when it offers none.
    Raises InvalidRequestError naming the culprit."""
    tools, choice, parallel = request.tools, request.tool_choice, request.parallel_tool_calls
    if tools is None and choice is None and parallel is None:  # the common case, at once
        return None
    if not tools:
        if tools is not None and not isinstance(tools, Sequence):
            raise InvalidRequestError("tools must be a sequence of Tool")
        if choice not in (None, "none", "auto") or parallel is not None:
            raise InvalidRequestError("tool_choice and parallel_tool_calls need tools")
        return None
    if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
        raise InvalidRequestError("tools must be a sequence of Tool")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        _check_tool(i, tool, names)
    choice = "auto" if choice is None else choice
    if not isinstance(choice, str) or (choice not in _CHOICES and choice not in names):
        raise InvalidRequestError(
            f"tool_choice must be 'auto', 'none', 'required' or an offered tool's name "
            f"({', '.join(sorted(names))}), got {choice!r}"
        )
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequestError("parallel_tool_calls must be True, False or None")
    return ToolSet(tuple(tools), choice, parallel)


def _check_tool(i: int, tool: Any, names: set[str]) -> None:
    if not isinstance(tool, Tool):
        raise InvalidRequestError(f"tools[{i}] must be a Tool, got {tool!r}")
    if not isinstance(tool.name, str) or not _TOOL_NAME.fullmatch(tool.name):
        raise InvalidRequestError(
            f"tools[{i}] has name {tool.name!r}: use 1 to 64 letters, digits, '_' or '-', and "
            "start with a letter or '_' (what every provider accepts)"
        )
    if tool.name in names:
        raise InvalidRequestError(f"tools[{i}]: two tools are named {tool.name!r}")
    names.add(tool.name)
    if not isinstance(tool.description, str):
        raise InvalidRequestError(f"tools[{i}] ({tool.name}): description must be a string")
    schema = tool.parameters
    if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
        raise InvalidRequestError(
            f"tools[{i}] ({tool.name}): parameters must be a JSON Schema of an object "
            '({"type": "object", "properties": {...}})'
        )
    _schema_sendable(f"tools[{i}].parameters", schema)


def _schema_sendable(name: str, schema: Mapping[str, Any]) -> None:
    """InvalidRequestError unless JSON carries ``schema`` as it is: json.dumps would turn a
    key such as 1 or None into a string, so the provider would get another schema than the
    one the answer is validated against."""
    try:
        _sendable(name, schema)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    stack: list[Any] = [schema]  # iterative: json.dumps has bounded the nesting already
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise InvalidRequestError(f"{name}: object keys must be strings, got {key!r}")
                stack.append(value)
        elif isinstance(node, list | tuple):
            stack.extend(node)


_DETAILS = frozenset({None, "auto", "low", "high", "original"})
_JPG = {"image/jpg": "image/jpeg"}  # a common misspelling, read as what it means


def _check_parts(i: int, m: Message) -> None:
    """A turn's text and image parts checked (images only in user turns)."""
    if m.role != "user" or not isinstance(m.parts, tuple):
        raise InvalidRequestError(
            f"messages[{i}]: only a user turn has parts (build it with Message.user([...]))"
        )
    for part in m.parts:
        if isinstance(part, str):
            continue
        if not isinstance(part, Image):
            raise InvalidRequestError(
                f"messages[{i}] holds {type(part).__name__}: a part is text or an Image"
            )
        if (part.data is None) == (part.url is None):
            raise InvalidRequestError(f"messages[{i}]: an Image has either data or a url")
        if part.data is not None and not isinstance(part.data, bytes):
            raise InvalidRequestError(f"messages[{i}]: an Image's data must be bytes")
        if part.data is not None and isinstance(part.media_type, str):
            sniffed = sniff_media_type(part.data)  # the first bytes only
            declared = part.media_type.lower()
            if sniffed is not None and _JPG.get(declared, declared) != sniffed:
                raise InvalidRequestError(
                    f"messages[{i}]: an Image says media_type {part.media_type} but the bytes "
                    f"are {sniffed}; build it with Image.from_bytes (which reads the type)"
                )
        if part.url is not None and not isinstance(part.url, str):
            raise InvalidRequestError(f"messages[{i}]: an Image's url must be a string")
        if part.media_type is not None and not isinstance(part.media_type, str):
            raise InvalidRequestError(f"messages[{i}]: an Image's media_type must be a string")
        if part.detail not in _DETAILS:
            raise InvalidRequestError(
                f"messages[{i}]: an Image's detail is 'auto', 'low', 'high' or 'original', "
                f"got {part.detail!r}"
            )


def output_format(request: GenerationRequest) -> OutputFormat | None:
    """The request's ``response_format`` checked and resolved; None when it has none.
    Raises InvalidRequestError naming what is wrong."""
    fmt = request.response_format
    if fmt is None:
        return None
    if fmt == "json" and isinstance(fmt, str):
        return OutputFormat("response", None)
    if isinstance(fmt, JsonSchema):
        return _json_schema(fmt)
    if isinstance(fmt, type) and callable(getattr(fmt, "model_json_schema", None)):
        return _pydantic(fmt)
    raise InvalidRequestError(
        f"response_format must be a JsonSchema, 'json' or a pydantic model class, got {fmt!r}"
    )


def _json_schema(fmt: JsonSchema) -> OutputFormat:
    if not isinstance(fmt.name, str) or not _TOOL_NAME.fullmatch(fmt.name):
        raise InvalidRequestError(
            f"JsonSchema name {fmt.name!r}: use 1 to 64 letters, digits, '_' or '-'"
        )
    schema = fmt.schema
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        raise InvalidRequestError(
            f"JsonSchema {fmt.name!r}: the schema must describe an object "
            '({"type": "object", ...}): providers\' structured output needs an object at the '
            "root (wrap a list or a value in a property)"
        )
    _schema_sendable(f"JsonSchema {fmt.name!r}", schema)
    if not isinstance(fmt.strict, bool):
        raise InvalidRequestError(f"JsonSchema {fmt.name!r}: strict must be True or False")
    if fmt.description is not None and not isinstance(fmt.description, str):
        raise InvalidRequestError(f"JsonSchema {fmt.name!r}: description must be a string")
    return OutputFormat(fmt.name, schema, fmt.strict, fmt.description)


def _pydantic(model: type) -> OutputFormat:
    """A pydantic model class as an output format (pydantic is the caller's, never ours)."""
    try:
        schema = model.model_json_schema()  # type: ignore[attr-defined]
    except Exception as exc:
        raise InvalidRequestError(
            f"response_format {model.__name__}: its JSON Schema cannot be built: {exc}"
        ) from None
    name = re.sub(r"[^A-Za-z0-9_-]", "_", model.__name__)[:64] or "response"
    fmt = JsonSchema(name, schema, True, description=(model.__doc__ or "").strip() or None)
    checked = _json_schema(fmt)
    return OutputFormat(checked.name, checked.schema, True, checked.description, model)
