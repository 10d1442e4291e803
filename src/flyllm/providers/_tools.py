"""Tool-call helpers every provider shares: canonical ids and their per-provider rewriting,
argument decoding, and the assembly of streamed tool calls into the canonical delta order.

Pure and provider-neutral: each provider module says which of these its wire format needs.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from flyllm.errors import MalformedResponseError
from flyllm.types import Message, Tool, ToolCall, ToolCallDelta

__all__ = [
    "MAX_CALLS",
    "ToolCallAssembler",
    "arguments_text",
    "charset_id",
    "check_call_count",
    "check_call_head",
    "function_tools",
    "new_call_id",
    "parse_arguments",
    "short_id",
    "tool_names",
    "unsupported_tools_message",
]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_-]")
_UNSUPPORTED_TOOLS = re.compile(
    r"does not support tools|tools? (?:use |calling )?(?:is |are )?not supported"
    r"|not support(?:ed)? (?:for )?(?:tools|tool use|function calling)"
    r"|function calling is not (?:enabled|supported)|enable-auto-tool-choice",
    re.IGNORECASE,
)

MAX_CALLS = 1000
"""More tool calls than this in one answer is a hostile server, not a model: refused before
they cost memory (each is an object) and a run_tools task each."""


def check_call_count(count: int, provider: str) -> None:
    """MalformedResponseError when an answer holds more than MAX_CALLS tool calls."""
    if count > MAX_CALLS:
        raise MalformedResponseError(
            f"{provider} answer has more than {MAX_CALLS} tool calls", status=200, provider=provider
        )


MAX_NAME_CHARS = 256
"""The longest tool name read from an answer (providers allow 64 or 128)."""

MAX_ID_CHARS = 512
"""The longest call id read from an answer (providers' ids are a few dozen characters)."""


def check_call_head(call_id: str | None, name: str | None, provider: str) -> None:
    """MalformedResponseError for a call name or id longer than any provider makes: it would
    flow into reprs, logs and every later request of the conversation."""
    for part, value, limit in (("name", name, MAX_NAME_CHARS), ("id", call_id, MAX_ID_CHARS)):
        if value is not None and len(value) > limit:
            raise MalformedResponseError(
                f"{provider} answer has a tool call {part} longer than {limit} characters",
                status=200,
                provider=provider,
            )


def new_call_id() -> str:
    """A fresh canonical id for a call the provider sent without one ("call_" and 24
    random letters and digits: valid for every provider's id rules but Mistral's, which
    ``short_id`` rewrites)."""
    return "call_" + "".join(secrets.choice(_BASE62) for _ in range(24))


def _digest(call_id: str, length: int) -> str:
    """``length`` base-62 characters derived from ``call_id``: the same id always gives the
    same characters, so a call and its result are rewritten alike wherever they are sent."""
    number = int.from_bytes(hashlib.sha256(call_id.encode("utf-8", "replace")).digest(), "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        out.append(_BASE62[digit])
    return "".join(out)


def short_id(call_id: str, length: int = 9) -> str:
    """``call_id`` as exactly ``length`` letters and digits (Mistral's rule): unchanged when it
    already is, otherwise derived from it deterministically."""
    if len(call_id) == length and call_id.isascii() and call_id.isalnum():
        return call_id
    return _digest(call_id, length)


def charset_id(call_id: str) -> str:
    """``call_id`` as 1 to 64 characters of ``[A-Za-z0-9_-]`` (Anthropic's rule): unchanged
    when it already is; otherwise its valid characters (at most 40) and a digest of the whole,
    so two ids that differ only in rejected characters stay apart."""
    if _SAFE_ID.fullmatch(call_id):
        return call_id
    kept = _UNSAFE_CHAR.sub("_", call_id)[:40]
    return f"{kept}_{_digest(call_id, 12)}" if kept else f"call_{_digest(call_id, 12)}"


def parse_arguments(text: str) -> tuple[dict[str, Any], str | None]:
    """A call's arguments from their JSON text: ``(object, None)``, or ``({}, text)`` when
    the text is not a JSON object (a truncated answer, prose), so nothing is lost and the
    caller can tell. Empty text is an empty object (calls of tools without parameters)."""
    if not text.strip():
        return {}, None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}, text
    if not isinstance(value, dict):
        return {}, text
    return value, None


def arguments_text(call: ToolCall) -> str:
    """The arguments as the JSON text providers that take a string want: the model's own text
    when it was not a JSON object (replayed as it came), else the object serialised."""
    if call.raw_arguments is not None:
        return call.raw_arguments
    return json.dumps(call.arguments, ensure_ascii=False, separators=(",", ":"))


def function_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The offered tools in the OpenAI shape the chat providers, Cohere and Ollama share:
    ``[{type: "function", function: {name, description (when set), parameters}}]``."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                **({"description": tool.description} if tool.description else {}),
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]


def tool_names(messages: Sequence[Message]) -> dict[str, str]:
    """Call id -> tool name for every call in the conversation: for providers whose result
    turns must name the tool (Gemini, Ollama) when the result does not say it itself."""
    return {c.id: c.name for m in messages for c in m.tool_calls}


def unsupported_tools_message(text: str) -> bool:
    """True when an error message says the model or server cannot take tools at all (Ollama's
    "does not support tools", vLLM's missing --enable-auto-tool-choice, ...)."""
    return _UNSUPPORTED_TOOLS.search(text) is not None


class ToolCallAssembler:
    """Builds a stream's tool calls from the provider's pieces and emits them as canonical
    deltas: calls are numbered 0, 1, ... in the order they start, whatever key the provider
    uses (OpenAI's ``index``, Anthropic's content block index, Cohere's index); the first
    delta of a call has its id and name, later ones argument text. One per stream; more
    than MAX_CALLS calls are MalformedResponseError naming ``provider``.
    """

    __slots__ = ("_calls", "_keys", "_provider")

    def __init__(self, provider: str = "the provider's") -> None:
        self._calls: list[tuple[str, str, list[str], Mapping[str, Mapping[str, Any]]]] = []
        self._keys: dict[Hashable, int] = {}
        self._provider = provider

    def __bool__(self) -> bool:
        return bool(self._calls)

    def start(
        self,
        key: Hashable,
        call_id: str | None,
        name: str,
        provider_data: Mapping[str, Mapping[str, Any]] | None = None,
        arguments: str = "",
    ) -> ToolCallDelta:
        """A new call under the provider's ``key`` (a later call may reuse a key: it then
        names the new one); a call without an id gets a canonical one."""
        index = len(self._calls)
        check_call_count(index + 1, self._provider)
        call_id = call_id or new_call_id()
        self._calls.append((call_id, name, [arguments] if arguments else [], provider_data or {}))
        self._keys[key] = index
        return ToolCallDelta(index, call_id, name, arguments)

    def has(self, key: Hashable) -> bool:
        """True when a call was started under ``key``."""
        return key in self._keys

    def add(self, key: Hashable, fragment: str) -> ToolCallDelta | None:
        """A piece of the arguments of the call under ``key``; None when the fragment is
        empty. KeyError when no call started under ``key`` (the provider decides whether
        that is malformed)."""
        index = self._keys[key]
        if not fragment:
            return None
        self._calls[index][2].append(fragment)
        return ToolCallDelta(index, arguments_delta=fragment)

    def whole(
        self,
        call_id: str | None,
        name: str,
        arguments: Mapping[str, Any] | str,
        provider_data: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ToolCallDelta:
        """A call the provider sent whole (Gemini, Ollama): one delta with all of it."""
        text = arguments if isinstance(arguments, str) else _compact(arguments)
        return self.start(object(), call_id, name, provider_data, text)

    def calls(self) -> tuple[ToolCall, ...]:
        """Every call so far, complete and parsed, in the canonical order."""
        out = []
        for call_id, name, pieces, data in self._calls:
            arguments, raw = parse_arguments("".join(pieces))
            out.append(ToolCall(call_id, name, arguments, raw_arguments=raw, provider_data=data))
        return tuple(out)


def _compact(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def function_call(item: Any, where: str, provider: str) -> tuple[str | None, str, Any]:
    """``(id, name, arguments)`` of one OpenAI-like call object ``{id?, function: {name,
    arguments}}`` as a server sent it (arguments left as they came: text or an object, None
    when absent); MalformedResponseError naming ``where`` for a call, function, name or id of
    the wrong type (a hostile or broken server, never read as a call)."""

    def bad(what: str, value: Any) -> MalformedResponseError:
        why = "empty" if value == "" else f"of the wrong type ({type(value).__name__})"
        return MalformedResponseError(
            f"{provider} answer has {where}{what} {why}",
            status=200,
            provider=provider,
        )

    if not isinstance(item, dict):
        raise bad("", item)
    function = item.get("function")
    if not isinstance(function, dict):
        raise bad(".function", function)
    name, call_id = function.get("name"), item.get("id")
    if not isinstance(name, str) or not name:
        raise bad(".function.name", name)
    if call_id is not None and not isinstance(call_id, str):
        raise bad(".id", call_id)
    check_call_head(call_id, name, provider)
    return call_id or None, name, function.get("arguments")
