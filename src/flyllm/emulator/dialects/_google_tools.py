"""Gemini's function calling in the emulator: the offered ``tools`` and ``toolConfig``, the
``functionCall``/``functionResponse`` parts of ``contents`` and their checks, and the calls of
an answer.

Requests come camelCase (REST) or snake_case (what google-genai sometimes sends:
``function_declarations``, ``parameters_json_schema``, ``function_call``,
``thought_signature`` as URL-safe base64); both are read. The checks the real API makes:
a declaration needs a name and at most one of ``parameters``/``parametersJsonSchema``; the
mode is one of the enum's names; call ``args`` and response ``response`` are objects; a
response names its function; a response turn follows a call turn and answers each of its
calls; ``thoughtSignature`` is base64; and for Gemini 3 models the first functionCall part of
every model step of the current turn carries a signature (the 400 text is Google's).
Answers for ``gemini-3*`` models carry call ids and a signature on the first call; other
models send calls without either, as Gemini 2.5 does.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyllm.emulator.tools import OfferedTool, PlannedCall, ToolResult
from flyllm.emulator.wire import random_base62

__all__ = ["GeminiTools", "call_parts", "lower_types", "new_signature", "read_tools", "signs"]

SIGNATURE_MISSING = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
RESPONSE_COUNT = (
    "Please ensure that the number of function response parts is equal to the number of "
    "function call parts of the function call turn."
)
RESPONSE_ORDER = (
    "Please ensure that function response turn comes immediately after a function call turn."
)
MODES = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
_MODE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode"
_STRUCT = "type.googleapis.com/google.protobuf.Struct"
_MAX_DEPTH = 32


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    return data[camel] if camel in data else data.get(snake)


def signs(model: str) -> bool:
    """True for the models that sign calls and check signatures (``gemini-3*``)."""
    return model.startswith("gemini-3")


@dataclass(slots=True)
class GeminiTools:
    """What a request says about tools: the offered tools, the neutral choice, the role of the
    last turn ("tool" when it brought only function responses) and those results."""

    tools: tuple[OfferedTool, ...] = ()
    choice: str = "auto"
    last_role: str = "user"
    results: tuple[ToolResult, ...] = ()


def read_tools(body: Mapping[str, Any], contents: list[Any], model: str) -> GeminiTools | str:
    """The request's tools and tool turns, or the 400 message of the first check that fails."""
    offered = _offered(body)
    if isinstance(offered, str):
        return offered
    choice, problem = _choice(body)
    if problem:
        return problem
    problem = _check_contents(contents, model)
    if problem:
        return problem
    last = contents[-1] if contents else {}
    parts = _parts(last)
    responses = [_pick(p, "functionResponse", "function_response") for p in parts]
    if parts and all(isinstance(r, dict) for r in responses):
        results = tuple(_result(r) for r in responses if isinstance(r, dict))
        return GeminiTools(offered, choice, "tool", results)
    return GeminiTools(offered, choice)


def _offered(body: Mapping[str, Any]) -> tuple[OfferedTool, ...] | str:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        return "Invalid value at 'tools', expected a list of Tool objects."
    offered: list[OfferedTool] = []
    for i, tool in enumerate(tools):
        declarations = (
            _pick(tool, "functionDeclarations", "function_declarations") or []
            if isinstance(tool, dict)
            else None
        )
        if not isinstance(declarations, list):
            return f"Invalid value at 'tools[{i}]', expected a Tool object."
        for j, declaration in enumerate(declarations):
            where = f"tools[{i}].function_declarations[{j}]"
            if not isinstance(declaration, dict) or not declaration.get("name"):
                return f"* GenerateContentRequest.{where}.name: Name cannot be empty.\n"
            schema = _pick(declaration, "parametersJsonSchema", "parameters_json_schema")
            openapi = declaration.get("parameters")
            if schema is not None and openapi is not None:
                return (
                    f"* GenerateContentRequest.{where}: parameters and parameters_json_schema "
                    "are mutually exclusive.\n"
                )
            if schema is None:
                schema = lower_types(openapi or {}, 0)
            offered.append(OfferedTool(str(declaration["name"]), schema))
    return tuple(offered)


def lower_types(schema: Any, depth: int) -> Any:
    """An OpenAPI-style ``parameters`` schema ("OBJECT", "STRING") with JSON Schema's
    lower-case type names, which the tool model reads."""
    if depth > _MAX_DEPTH:
        return schema
    if isinstance(schema, dict):
        return {
            k: v.lower() if k == "type" and isinstance(v, str) else lower_types(v, depth + 1)
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [lower_types(v, depth + 1) for v in schema]
    return schema


def _choice(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(the neutral choice: "auto", "none", "required" or a tool name; an error message)."""
    config = _pick(body, "toolConfig", "tool_config") or {}
    calling = _pick(config, "functionCallingConfig", "function_calling_config") or {}
    if not isinstance(calling, dict):
        return "", "Invalid value at 'tool_config', expected a ToolConfig object."
    mode = calling.get("mode") or "AUTO"
    if mode not in MODES:
        where = "tool_config.function_calling_config.mode"
        return "", f"Invalid value at '{where}' ({_MODE_TYPE}), {json.dumps(mode)}"
    allowed = _pick(calling, "allowedFunctionNames", "allowed_function_names") or []
    if mode == "ANY" and isinstance(allowed, list) and len(allowed) == 1:
        return str(allowed[0]), None
    return MODES[mode], None


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _role(content: Any) -> Any:
    return content.get("role") if isinstance(content, dict) else None


def _check_contents(contents: list[Any], model: str) -> str | None:
    previous_calls = 0
    for i, content in enumerate(contents):
        calls = responses = 0
        for j, part in enumerate(_parts(content)):
            where = f"contents[{i}].parts[{j}]"
            problem = _check_part(part, where)
            if problem:
                return problem
            calls += _pick(part, "functionCall", "function_call") is not None
            responses += _pick(part, "functionResponse", "function_response") is not None
        if responses and not previous_calls:
            return RESPONSE_ORDER
        if responses and responses != previous_calls:
            return RESPONSE_COUNT
        previous_calls = calls
    return _check_signatures(contents) if signs(model) else None


def _check_part(part: dict[str, Any], where: str) -> str | None:
    call = _pick(part, "functionCall", "function_call")
    if call is not None:
        args = call.get("args") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not call.get("name"):
            return f"* GenerateContentRequest.{where}.function_call.name: Name cannot be empty.\n"
        if args is not None and not isinstance(args, dict):
            return f"Invalid value at '{where}.function_call.args' ({_STRUCT}), {_brief(args)}"
    response = _pick(part, "functionResponse", "function_response")
    if response is not None:
        if not isinstance(response, dict) or not response.get("name"):
            field = f"{where}.function_response.name"
            return f"* GenerateContentRequest.{field}: Name cannot be empty.\n"
        if not isinstance(response.get("response", {}), dict):
            value = _brief(response["response"])
            return f"Invalid value at '{where}.function_response.response' ({_STRUCT}), {value}"
    signature = _pick(part, "thoughtSignature", "thought_signature")
    if signature is not None and not _base64(signature):
        return (
            f"Invalid value at '{where}.thought_signature' (TYPE_BYTES), "
            f"Base64 decoding failed for {_brief(str(signature))}"
        )
    return None


def _brief(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:200]


def _base64(value: Any) -> bool:
    """True for standard or URL-safe base64, padded or not (what proto JSON accepts)."""
    if not isinstance(value, str):
        return False
    text = value.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _check_signatures(contents: list[Any]) -> str | None:
    """Gemini 3's rule: the current turn starts after the last user content with text; in
    it, the first functionCall part of every model content needs a signature."""
    start = 0
    for i, content in enumerate(contents):
        if _role(content) != "model" and any("text" in p for p in _parts(content)):
            start = i + 1
    for i in range(start, len(contents)):
        if _role(contents[i]) != "model":
            continue
        for part in _parts(contents[i]):
            call = _pick(part, "functionCall", "function_call")
            if call is None:
                continue
            if _pick(part, "thoughtSignature", "thought_signature") is None:
                return SIGNATURE_MISSING.format(name=call.get("name"), position=i + 1)
            break
    return None


def _result(response: dict[str, Any]) -> ToolResult:
    """A functionResponse as a ToolResult: its "output" (or "error") as text, else the whole
    response object as JSON."""
    value = response.get("response") or {}
    is_error = "error" in value and "output" not in value
    inner = (
        value.get("error" if is_error else "output", value) if isinstance(value, dict) else value
    )
    text = inner if isinstance(inner, str) else json.dumps(inner, ensure_ascii=False)
    return ToolResult(str(response.get("name")), text, is_error)


def new_signature() -> str:
    """A fresh opaque signature, standard base64 as Gemini sends them."""
    return base64.b64encode(random_base62(48).encode()).decode()


def call_parts(calls: tuple[PlannedCall, ...], model: str) -> list[dict[str, Any]]:
    """The ``functionCall`` parts of an answer: with ids and a signature on the first call for
    Gemini 3 models, bare for the others."""
    parts: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        function: dict[str, Any] = {"name": call.name, "args": dict(call.arguments)}
        part: dict[str, Any] = {"functionCall": function}
        if signs(model):
            function["id"] = random_base62(8).lower()
            if i == 0:
                part["thoughtSignature"] = new_signature()
        parts.append(part)
    return parts
