"""Gemini's tool calling, both ways: flyllm's conversation as ``contents`` with
``functionCall`` and ``functionResponse`` parts, the offered tools as ``tools`` and
``toolConfig``, and the parts of an answer read back into text, calls and thought signatures.

Verified against google-genai 3.6 (``models.py`` ``_Part_to_mldev``, ``_Tool_to_mldev``,
``types.FunctionDeclaration``/``FunctionResponse``) and ai.google.dev's function-calling and
thought-signature pages; see docs/providers/tools.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flyllm.errors import InvalidRequestError, MalformedResponseError
from flyllm.params import ToolSet
from flyllm.providers._common import wrong_type
from flyllm.providers._google_media import user_parts
from flyllm.providers._tools import check_call_head, tool_names
from flyllm.types import Message, ToolCall

__all__ = [
    "DUMMY_SIGNATURE",
    "FAMILY",
    "MAX_ARGUMENT_DEPTH",
    "MAX_ARGUMENT_SIZE",
    "MAX_CALLS",
    "GeminiCall",
    "GeminiParts",
    "gemini_contents",
    "read_parts",
    "signed",
    "to_tool_call",
    "tool_fields",
]

FAMILY = "google"
"""The key of Gemini's state in ``provider_data`` (read and written only under it)."""

DUMMY_SIGNATURE = "skip_thought_signature_validator"
"""What Google documents as the ``thoughtSignature`` of a function call Gemini did not make
(history from another model): Gemini 3 then skips its signature check instead of a 400."""

MAX_ARGUMENT_DEPTH = 64
"""Arguments nested deeper than this are a hostile answer, not a model's call."""

MAX_ARGUMENT_SIZE = 1 << 20
"""Arguments bigger than this (characters of keys and strings, plus one per value) are
refused: a model's output is far smaller."""

MAX_CALLS = 1000
"""More function calls than this in one answer is a hostile answer."""

_SIGNATURE = "thoughtSignature"
_OLD_GEMINI = re.compile(r"gemini-[12](?:[.-]|$)")


@dataclass(slots=True, frozen=True)
class GeminiCall:
    """One ``functionCall`` part as read: its id (None when Gemini sent none), name,
    arguments object and the part's thought signature."""

    id: str | None
    name: str
    args: Mapping[str, Any]
    signature: str | None = None

    @property
    def provider_data(self) -> dict[str, dict[str, Any]]:
        """The call's Gemini state, under the family key ({} when there is none)."""
        return {FAMILY: {_SIGNATURE: self.signature}} if self.signature else {}


@dataclass(slots=True)
class GeminiParts:
    """What a Content's parts hold: the text of the non-thought parts, the function calls in
    order, and the last thought signature of a part that is not a call (Gemini 3 signs the
    last part of an answer without calls, sometimes an empty-text part of its own)."""

    text: str = ""
    calls: list[GeminiCall] = field(default_factory=list)
    signature: str | None = None


def tool_fields(tools: ToolSet) -> dict[str, Any]:
    """``tools`` (one Tool with every declaration, schemas as ``parametersJsonSchema``, which
    takes full JSON Schema where ``parameters`` rejects ``additionalProperties``, ``$ref`` and
    ``$defs``) and ``toolConfig.functionCallingConfig``. Gemini has no parallel-call switch:
    ``tools.parallel`` is not sent, and every call the model makes is kept."""
    declarations = []
    for tool in tools.tools:
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        declaration["parametersJsonSchema"] = dict(tool.parameters)
        declarations.append(declaration)
    choice = tools.choice
    config: dict[str, Any]
    if choice in ("auto", "none"):
        config = {"mode": choice.upper()}
    elif choice == "required":
        config = {"mode": "ANY"}
    else:
        config = {"mode": "ANY", "allowedFunctionNames": [choice]}
    return {
        "tools": [{"functionDeclarations": declarations}],
        "toolConfig": {"functionCallingConfig": config},
    }


def gemini_contents(
    messages: Sequence[Message], model: str
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents) for ``messages``: assistant turns become ``model``
    contents (text, then functionCall parts with their ids and signatures), tool results
    ``functionResponse`` parts of a ``user`` content, a user turn's images image parts
    (:mod:`flyllm.providers._google_media`); consecutive turns of one role merge
    into one content, as Gemini wants the roles to alternate. InvalidRequestError for a tool
    result whose tool cannot be named."""
    names: dict[str, str] | None = None
    system: list[dict[str, str]] = []
    contents: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append({"text": m.content})
            continue
        if m.role == "assistant":
            role, parts = "model", _model_parts(m)
        elif m.role == "tool":
            if names is None:
                names = tool_names(messages)
            role, parts = "user", [_response_part(m, names)]
        else:
            role, parts = "user", user_parts(m)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if needs_signatures(model):
        for content in contents:
            _sign_first_call(content)
    return system, contents


def needs_signatures(model: str) -> bool:
    """True for models that check thought signatures (Gemini 3 and later, and the
    ``-latest`` aliases that point at them); False for Gemini 1.x and 2.x and non-Gemini
    models (Gemma), which never ask for them."""
    name = model.rpartition("/")[2].lower()
    return "gemini" in name and _OLD_GEMINI.search(name) is None


def _model_parts(m: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if m.content or not m.tool_calls:
        part: dict[str, Any] = {"text": m.content}
        signature = _signature(m.provider_data)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    for call in m.tool_calls:
        args = dict(call.arguments) if call.raw_arguments is None else {"raw": call.raw_arguments}
        part = {"functionCall": {"id": call.id, "name": call.name, "args": args}}
        signature = _signature(call.provider_data)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _signature(provider_data: Mapping[str, Mapping[str, Any]]) -> str | None:
    value = provider_data.get(FAMILY, {}).get(_SIGNATURE)
    return value if isinstance(value, str) and value else None


def _sign_first_call(content: dict[str, Any]) -> None:
    """Gemini 3 checks the first functionCall part of each model step: one without a
    signature (a call another provider made) gets the documented dummy."""
    if content["role"] != "model":
        return
    for part in content["parts"]:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", DUMMY_SIGNATURE)
            return


def _response_part(m: Message, names: Mapping[str, str]) -> dict[str, Any]:
    """A ``functionResponse`` part; ``response`` is an object, so the result's text goes
    under "output", or "error" for a failed call (the keys Google's docs name)."""
    call_id = m.tool_call_id or ""
    name = m.tool_name or names.get(call_id)
    if not name:
        raise InvalidRequestError(
            f"google: the tool result for call {call_id!r} names no tool and no call in the "
            "conversation has that id; Gemini needs the tool's name: pass "
            "Message.tool_result(..., name=...) or keep the assistant turn with the call"
        )
    response = {"error" if m.is_error else "output": m.content}
    result: dict[str, Any] = {"name": name, "response": response}
    if call_id:
        result["id"] = call_id
    return {"functionResponse": result}


def read_parts(content: Any) -> GeminiParts:
    """The text, calls and signature of a candidate's ``content`` (empty for none).
    MalformedResponseError for parts, calls, names, ids, arguments or signatures of the wrong
    type, and for arguments nested too deeply or too big."""
    out = GeminiParts()
    if content is None:
        return out
    if not isinstance(content, dict):
        raise wrong_type("candidates[0].content", content, FAMILY)
    parts = content.get("parts")
    if parts is None:
        return out
    if not isinstance(parts, list):
        raise wrong_type("content.parts", parts, FAMILY)
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            raise wrong_type("an item of content.parts", part, FAMILY)
        signature = _optional_str(part.get("thoughtSignature"), "a part's thoughtSignature")
        if "functionCall" in part:
            out.calls.append(_call(part["functionCall"], signature))
            if len(out.calls) > MAX_CALLS:
                raise MalformedResponseError(
                    f"google answer has more than {MAX_CALLS} function calls", provider=FAMILY
                )
            continue
        text = _optional_str(part.get("text"), "a part's text")
        if part.get("thought"):
            continue
        if text:
            texts.append(text)
        if signature:
            out.signature = signature
    out.text = "".join(texts)
    return out


def _optional_str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise wrong_type(where, value, FAMILY)
    return value


def _call(value: Any, signature: str | None) -> GeminiCall:
    if not isinstance(value, dict):
        raise wrong_type("a functionCall", value, FAMILY)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise wrong_type("a functionCall's name", name, FAMILY)
    call_id = _optional_str(value.get("id"), "a functionCall's id")
    check_call_head(call_id, name, FAMILY)
    args = value.get("args")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        raise wrong_type("a functionCall's args", args, FAMILY)
    _check_size(args)
    return GeminiCall(call_id or None, name, args, signature)


def _check_size(args: dict[str, Any]) -> None:
    """MalformedResponseError when ``args`` nest deeper than MAX_ARGUMENT_DEPTH or weigh more
    than MAX_ARGUMENT_SIZE (walked without recursion, so no depth can overflow the stack)."""
    size = 0
    stack: list[tuple[Any, int]] = [(args, 1)]
    while stack:
        value, depth = stack.pop()
        size += 1
        if isinstance(value, dict):
            size += sum(len(k) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            size += len(value)
        if depth > MAX_ARGUMENT_DEPTH or size > MAX_ARGUMENT_SIZE:
            why = "nested too deeply" if depth > MAX_ARGUMENT_DEPTH else "too big"
            raise MalformedResponseError(
                f"google answer has function-call arguments {why}", provider=FAMILY
            )


def signed(signature: str | None) -> dict[str, dict[str, Any]]:
    """The ``provider_data`` of an answer whose text parts carried ``signature``."""
    return {FAMILY: {_SIGNATURE: signature}} if signature else {}


def to_tool_call(call: GeminiCall, call_id: str) -> ToolCall:
    """The ToolCall for a call read whole (non-streamed answers)."""
    return ToolCall(call_id, call.name, dict(call.args), provider_data=call.provider_data)
