"""Reading an Anthropic Messages request body into flyllm's provider-neutral types.

Pure functions for :mod:`flyllm.server.anthropic_messages`: ``system`` (a string or text
blocks), the turns and their content blocks (text, image with a base64 or url source,
tool_use, tool_result, thinking and redacted_thinking), the custom tools and the
``tool_choice``. Every shape the gateway cannot carry is a 400 that names the field and says
what to send instead; nothing here raises anything else.

A user turn's ``tool_result`` blocks become flyllm "tool" turns (in their order, before the
turn's other blocks; images in a result join the user turn after them, as flyllm's tool
results are text); an assistant turn's thinking blocks ride in ``provider_data`` under
flyllm's Anthropic key, so they go back unchanged to Anthropic instances and are dropped for
every other provider (which could not read them).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flyllm.server.errors import GatewayError, bad_request
from flyllm.types import Image, Message, Tool, ToolCall

__all__ = ["read_system", "read_tool_choice", "read_tools", "read_turns"]

_THINKING = frozenset({"thinking", "redacted_thinking"})
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# The provider_data layout flyllm's Anthropic provider reads thinking blocks from (documented
# in flyllm.providers.anthropic: provider_data["anthropic"]["thinking_blocks"]).
_FAMILY, _BLOCKS = "anthropic", "thinking_blocks"


def read_system(value: Any) -> str | None:
    """``system``: a string or a list of text blocks (joined by newlines; cache_control and
    citations are dropped: no provider behind the gateway needs them to answer)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, list):
        return "\n".join(_text(block, f"system[{i}]") for i, block in enumerate(value)) or None
    raise bad_request("'system' must be a string or an array of text blocks", "system")


def read_turns(items: Any) -> list[Message]:
    """``messages`` as flyllm turns (see the module docstring)."""
    if not isinstance(items, list) or not items:
        raise bad_request("'messages' must be a non-empty array", "messages")
    turns: list[Message] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise bad_request(f"{where}: expected an object with role 'user' or 'assistant'", where)
        content = item.get("content")
        if isinstance(content, str):
            turns.append(Message(item["role"], content))
            continue
        if not isinstance(content, list):
            raise bad_request(f"{where}.content must be a string or an array of blocks", where)
        if item["role"] == "user":
            turns.extend(_user(content, where))
        else:
            turns.append(_assistant(content, where))
    return turns


def _user(blocks: list[Any], where: str) -> list[Message]:
    """A user turn's blocks: its tool results first, as tool turns, then its text and images
    (images a tool returned join them: flyllm's tool results are text)."""
    results: list[Message] = []
    parts: list[str | Image] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = _kind(block, at)
        if kind == "text":
            parts.append(_text(block, at))
        elif kind == "image":
            parts.append(_image(block.get("source"), at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at, parts))
        else:
            raise _unsupported(kind, at)
    if not parts:
        return results
    if all(isinstance(p, str) for p in parts):
        return [*results, Message("user", "\n".join(p for p in parts if isinstance(p, str)))]
    return [*results, Message.user(parts)]


def _assistant(blocks: list[Any], where: str) -> Message:
    texts: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = _kind(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_use(block, at))
        elif kind in _THINKING:
            thinking.append(block)
        else:
            raise _unsupported(kind, at)
    data = {_FAMILY: {_BLOCKS: thinking}} if thinking else None
    if data is None:
        return Message("assistant", "".join(texts), tool_calls=tuple(calls))
    return Message("assistant", "".join(texts), tool_calls=tuple(calls), provider_data=data)


def _kind(block: Any, at: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str):
        raise bad_request(f"{at}: expected a content block object with a 'type'", at)
    return kind


def _text(block: Any, at: str) -> str:
    text = block.get("text") if isinstance(block, dict) and block.get("type") == "text" else None
    if not isinstance(text, str):
        raise bad_request(f"{at}: expected a text block with a string 'text'", at)
    return text


def _image(source: Any, at: str) -> Image:
    if not isinstance(source, dict):
        raise bad_request(f"{at}.source must be an object", at)
    kind = source.get("type")
    try:
        media_type = source.get("media_type") if kind == "base64" else None
        if isinstance(source.get("data"), str) and isinstance(media_type, str | None):
            data = base64.b64decode(source["data"], validate=True)
            return Image.from_bytes(data, media_type)
        if kind == "url" and isinstance(source.get("url"), str):
            return Image.from_url(source["url"])
    except (ValueError, TypeError, binascii.Error) as exc:
        raise bad_request(f"{at}.source: {exc}", at) from None
    raise bad_request(
        f"{at}.source: expected {{type: base64, media_type, data}} or {{type: url, url}} "
        "(file sources need Anthropic's Files API, which the gateway does not have)", at,
    )  # fmt: skip


def _tool_use(block: dict[str, Any], at: str) -> ToolCall:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise bad_request(f"{at}: a tool_use block needs a string 'id' and 'name'", at)
    if not isinstance(arguments, dict):
        raise bad_request(f"{at}.input must be an object", at)
    return ToolCall(call_id, name, arguments)


def _tool_result(block: dict[str, Any], at: str, images: list[str | Image]) -> Message:
    """A tool_result block as a tool turn; the images in its content go to ``images``."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{at}: a tool_result block needs a string 'tool_use_id'", at)
    content = block.get("content", "")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            where = f"{at}.content[{k}]"
            kind = _kind(part, where)
            if kind == "image":
                images.append(_image(part.get("source"), where))
            elif kind == "text":
                texts.append(_text(part, where))
            else:
                raise _unsupported(kind, where)
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise bad_request(f"{at}.content must be a string or an array of blocks", at)
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise bad_request(f"{at}.is_error must be a boolean", at)
    return Message.tool_result(call_id, content, is_error=is_error)


def _unsupported(kind: str, at: str) -> GatewayError:
    return bad_request(
        f"{at}: content blocks of type {kind!r} are not supported by the gateway (it carries "
        "text, image, tool_use, tool_result, thinking and redacted_thinking blocks)", at,
    )  # fmt: skip


def read_tools(items: Any) -> list[Tool] | None:
    """``tools``: custom tools only; Anthropic's server tools (web search, code execution,
    bash, text editor...) run inside Anthropic's API, which no other provider has: a 400."""
    if items is None:
        return None
    if not isinstance(items, list):
        raise bad_request("'tools' must be an array", "tools")
    tools = []
    for i, item in enumerate(items):
        where = f"tools[{i}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object", where)
        kind = item.get("type")
        if kind not in (None, "custom"):
            raise bad_request(
                f"{where}: {kind!r} is one of Anthropic's server tools, which run inside "
                "Anthropic's API and not behind this gateway: offer a custom tool (name, "
                "description, input_schema) and run it yourself", where,
            )  # fmt: skip
        name, schema = item.get("name"), item.get("input_schema")
        description = item.get("description", "")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise bad_request(f"{where}: a tool needs a string 'name' and an 'input_schema'", where)
        if not isinstance(description, str):
            raise bad_request(f"{where}.description must be a string", where)
        tools.append(Tool(name, description, schema))
    return tools or None


def read_tool_choice(value: Any, has_tools: bool) -> tuple[str | None, bool | None]:
    """``tool_choice`` as flyllm's (choice, parallel_tool_calls)."""
    if value is None:
        return None, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise bad_request(
            "'tool_choice' must be an object with type auto, any, tool or none", "tool_choice"
        )
    if not has_tools:
        raise bad_request("'tool_choice' may only be given with 'tools'", "tool_choice")
    choice = _CHOICES.get(kind) or value.get("name")
    if not isinstance(choice, str) or not choice:
        raise bad_request("a tool_choice of type tool needs the tool's 'name'", "tool_choice")
    disable = value.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise bad_request("'disable_parallel_tool_use' must be a boolean", "tool_choice")
    return choice, (False if disable else None)
