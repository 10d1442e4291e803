"""The stream parser and response helpers of the chat-completions format, shared by OpenAI,
the OpenAI-compatible presets, Azure and Mistral (re-exported by :mod:`flyllm.providers.openai`),
and the format's tool calls both ways: ``tools``/``tool_choice``/``parallel_tool_calls`` and the
tool turns of a request, ``tool_calls`` of an answer, and their stream fragments.

On the wire: ``tools[{type: "function", function: {name, description, parameters}}]`` (no
``strict``: pass your own ``tools`` through ``provider_params`` for strict schemas; a
pass-through parameter wins), ``tool_choice`` only when it is not "auto" (none | required |
``{type: "function", function: {name}}``), ``parallel_tool_calls`` only when the request sets
it. Assistant turns with calls send ``content: null`` when they have no text;
results are ``{role: "tool", tool_call_id, content}``, a failed one's text prefixed "Error: ".
Ids are sent as they are (the API takes any string). Answers' ``tool_calls`` become ToolCalls
(ids made up when absent, arguments sent as an object accepted); a "stop" finish with calls
reads as "tool_calls".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from flyllm.errors import ProviderError, StreamInterruptedError
from flyllm.providers._common import (
    block_text,
    count,
    load_event,
    malformed,
    served_model,
    wrong_type,
)
from flyllm.providers._tools import (
    ToolCallAssembler,
    arguments_text,
    check_call_head,
    function_tools,
    new_call_id,
    parse_arguments,
    tool_names,
)
from flyllm.providers.base import NON_SSE_LINE, Completion, Delta, SseEvent, ToolSet
from flyllm.providers.chat_output import ImageRules, user_content
from flyllm.types import FinishReason, Message, ToolCall, ToolCallDelta, Usage

__all__ = [
    "MAX_ARGUMENTS",
    "MAX_TOOL_CALLS",
    "ChatCompletionsStream",
    "Conclude",
    "chat_messages",
    "chat_tool_calls",
    "chat_tools",
    "chat_usage",
    "content_text",
    "tool_finish",
]

MAX_TOOL_CALLS = 256
"""The most tool calls one answer may carry; more is a hostile server (MalformedResponseError)."""

MAX_ARGUMENTS = 4 * 1024 * 1024
"""The longest arguments text of one call, in characters (MalformedResponseError beyond)."""


def _same(call_id: str) -> str:
    return call_id


def chat_messages(
    messages: Sequence[Message],
    *,
    call_id: Callable[[str], str] = _same,
    name_results: bool = False,
    images: ImageRules | None = None,
) -> list[dict[str, Any]]:
    """The ``messages`` array: system prompts stay system messages, in order; an assistant turn
    with calls gets ``tool_calls`` (``content`` null when it has no text, as the API sends it);
    a tool result is ``{role: "tool", tool_call_id, content}`` (``name`` too with
    ``name_results``: Mistral). ``call_id`` rewrites every id (the same way for a call and its
    result). The format has no error flag: a failed call's text is sent as "Error: ...".
    A user turn with images sends its parts, checked against ``images`` (the provider's
    rules; None: InvalidRequestError, it takes none)."""
    names = tool_names(messages) if name_results else {}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            ref = m.tool_call_id or ""
            entry: dict[str, Any] = {
                "role": "tool",
                "tool_call_id": call_id(ref),
                "content": f"Error: {m.content}" if m.is_error else m.content,
            }
            name = m.tool_name or names.get(ref)
            if name_results and name:
                entry["name"] = name
        elif m.tool_calls:
            entry = {
                "role": "assistant",
                "content": m.content or None,
                "tool_calls": [_call_entry(c, call_id) for c in m.tool_calls],
            }
        elif m.role == "user":
            entry = {"role": "user", "content": user_content(m, images)}
        else:
            entry = {"role": m.role, "content": m.content}
        out.append(entry)
    return out


def _call_entry(call: ToolCall, call_id: Callable[[str], str]) -> dict[str, Any]:
    function = {"name": call.name, "arguments": arguments_text(call)}
    return {"id": call_id(call.id), "type": "function", "function": function}


def chat_tools(body: dict[str, Any], tools: ToolSet, *, required: str = "required") -> None:
    """Write the offered tools into ``body``: ``tools`` (no ``strict``), ``tool_choice`` when
    it is not the default "auto" (``required`` is the provider's word for "required": Mistral
    says "any"; a name becomes ``{type: "function", function: {name}}``) and
    ``parallel_tool_calls`` only when the request sets it."""
    body["tools"] = function_tools(tools.tools)
    choice = tools.choice
    if choice == "required":
        body["tool_choice"] = required
    elif choice == "none":
        body["tool_choice"] = "none"
    elif choice != "auto":
        body["tool_choice"] = {"type": "function", "function": {"name": choice}}
    if tools.parallel is not None:
        body["parallel_tool_calls"] = tools.parallel


def _call_parts(item: Any, where: str, provider: str) -> tuple[str | None, str | None, str]:
    """(id, name, arguments text) of one call or stream fragment, each None or '' when absent;
    MalformedResponseError for a part of the wrong type. Arguments sent as an object (Mistral,
    some compatible servers) are serialised."""
    if not isinstance(item, dict):
        raise wrong_type(where, item, provider)
    call_id, function = item.get("id"), item.get("function")
    if call_id is not None and not isinstance(call_id, str):
        raise wrong_type(f"{where}.id", call_id, provider)
    if not isinstance(function, dict):
        raise wrong_type(f"{where}.function", function, provider)
    name, arguments = function.get("name"), function.get("arguments")
    if name is not None and not isinstance(name, str):
        raise wrong_type(f"{where}.function.name", name, provider)
    if isinstance(arguments, dict):
        try:
            arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        except (ValueError, RecursionError):
            raise malformed(f"{where}.function.arguments nested too deeply", provider) from None
    elif arguments is None:
        arguments = ""
    elif not isinstance(arguments, str):
        raise wrong_type(f"{where}.function.arguments", arguments, provider)
    check_call_head(call_id, name, provider)
    return call_id or None, name, arguments


def _checked_arguments(call: ToolCall, provider: str) -> ToolCall:
    """``call`` unchanged unless its arguments text is JSON nested too deeply to read (a
    hostile server, not an honest model's truncated text): MalformedResponseError then."""
    if call.raw_arguments is not None:
        try:
            json.loads(call.raw_arguments)
        except RecursionError:
            raise malformed("tool call arguments nested too deeply", provider) from None
        except ValueError:
            pass
    return call


def chat_tool_calls(raw: Any, provider: str) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` of an answer as ToolCalls in the model's order, arguments parsed
    and ids made up when absent; MalformedResponseError for wrong shapes, a call without a name,
    more than MAX_TOOL_CALLS calls or arguments longer than MAX_ARGUMENTS."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise wrong_type("message.tool_calls", raw, provider)
    if len(raw) > MAX_TOOL_CALLS:
        raise malformed(f"more than {MAX_TOOL_CALLS} tool calls", provider)
    calls = []
    for i, item in enumerate(raw):
        call_id, name, text = _call_parts(item, f"message.tool_calls[{i}]", provider)
        if not name:
            raise malformed(f"a tool call without a name (message.tool_calls[{i}])", provider)
        if len(text) > MAX_ARGUMENTS:
            raise malformed(f"tool call arguments over {MAX_ARGUMENTS} characters", provider)
        arguments, rest = parse_arguments(text)
        call = ToolCall(call_id or new_call_id(), name, arguments, raw_arguments=rest)
        calls.append(_checked_arguments(call, provider))
    return tuple(calls)


def tool_finish(finish: FinishReason, calls: Sequence[ToolCall]) -> FinishReason:
    """The normalised finish of an answer with ``calls``: "tool_calls" when its finish says
    only that it stopped (some compatible servers say "stop"); any other finish (a cut-off
    "length") is kept."""
    return "tool_calls" if calls and finish in ("stop", "other") else finish


def content_text(content: Any, provider: str, where: str = "message.content") -> str:
    """Message text: a string, or the ``text`` chunks of a list of content chunks (Mistral's
    reasoning models), ignoring ``thinking`` and other chunks; '' for null (a tool call).
    MalformedResponseError for any other value (``-5``, ``{"a": 1}``, ``[1, 2, 3]``)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        return block_text(content, where, provider)
    raise wrong_type(where, content, provider)


def chat_usage(usage: Any) -> Usage:
    """Usage from ``prompt_tokens``/``completion_tokens``/``total_tokens`` (+ cached tokens)."""
    if not isinstance(usage, dict):
        return Usage()
    prompt = count(usage.get("prompt_tokens"))
    completion = count(usage.get("completion_tokens"))
    total = count(usage.get("total_tokens")) or prompt + completion
    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(prompt, completion, total, cached)


Conclude = Callable[
    [str, str | None, Usage, str | None, str | None, str, tuple[ToolCall, ...]], Completion
]
"""A provider's last step: (text, raw finish, usage, model, request id, refusal, tool calls)
-> Completion, raising ContentFilterError (or another ProviderError) when the finish says so."""


class ChatCompletionsStream:
    """StreamParser for chat-completion chunks (OpenAI, compatible servers, Mistral).

    Text is ``choices[0].delta.content``; usage comes from whichever chunk carries it (OpenAI: a
    last chunk with ``choices: []``; Mistral, Together, Fireworks: the finish chunk; Groq:
    ``x_groq.usage`` on the last chunk; Perplexity: every chunk, cumulative), the last one
    winning; ``data: [DONE]`` ends the stream; a chunk with a top-level ``error`` raises the
    classified error. With ``require_done=False`` (servers that never send ``[DONE]``, such as
    Perplexity) a chunk with a finish_reason completes the stream too.

    Tool calls come as ``delta.tool_calls`` fragments keyed by ``index``: the first of a call
    has its id and name, later ones argument text. Some compatible servers reuse one index for
    every call of a parallel batch, so a fragment with a new id at a used index starts a new
    call. Calls leave as canonical ToolCallDeltas (see ToolCallAssembler).
    """

    __slots__ = (
        "_conclude",
        "_done",
        "_error_from",
        "_finish",
        "_model",
        "_name",
        "_parts",
        "_refusal",
        "_require_done",
        "_sizes",
        "_tool_ids",
        "_tools",
        "_usage",
    )

    def __init__(
        self,
        name: str,
        conclude: Conclude,
        error_from: Callable[[Any], ProviderError],
        *,
        require_done: bool = True,
    ) -> None:
        self._name = name
        self._conclude = conclude
        self._error_from = error_from
        self._require_done = require_done
        self._done = False
        self._parts: list[str] = []
        self._refusal: list[str] = []
        self._finish: str | None = None
        self._usage = Usage()
        self._model: str | None = None
        self._tools = ToolCallAssembler()
        self._tool_ids: dict[int, str | None] = {}
        self._sizes: list[int] = []

    @property
    def done(self) -> bool:
        """True once ``data: [DONE]`` has been seen (or, without ``require_done``, a finish
        reason)."""
        return self._done or (not self._require_done and bool(self._finish))

    def feed(self, event: SseEvent) -> str | Delta:
        """The text this chunk adds (a Delta when it carries tool-call fragments); raises the
        classified error for an error chunk."""
        data = event.data
        if self._done or event.event == NON_SSE_LINE:
            return ""
        if data.startswith("[DONE]"):
            self._done = True
            return ""
        chunk = load_event(data, self._name)
        if not isinstance(chunk, dict):
            raise malformed("a stream event that is not an object", self._name)
        if chunk.get("error") is not None:
            raise self._failed(chunk["error"])
        if chunk.get("object") == "error":  # Mistral's (and vLLM's) error shape
            raise self._failed(chunk)
        self._meta(chunk)
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise wrong_type("choices", choices, self._name)
        if not choices:  # none, or [] (a usage-only or prompt-filter chunk)
            return ""
        choice = choices[0]
        if not isinstance(choice, dict):
            raise wrong_type("choices[0]", choice, self._name)
        index = choice.get("index")
        if index is not None and type(index) is not int:
            raise wrong_type("choices[0].index", index, self._name)
        if index:  # another choice's delta (n > 1): not part of this answer
            return ""
        raw = choice.get("finish_reason")
        if isinstance(raw, str):
            self._finish = raw
        delta = choice.get("delta")
        if delta is None:
            return ""
        if not isinstance(delta, dict):
            raise wrong_type("choices[0].delta", delta, self._name)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refusal.append(refusal)
        content = delta.get("content")
        text = content if type(content) is str else content_text(content, self._name, "delta")
        if text:
            self._parts.append(text)
        fragments = delta.get("tool_calls")
        pieces = self._tool_deltas(fragments) if fragments else ()
        return Delta(text, pieces) if pieces else text

    def _tool_deltas(self, fragments: Any) -> tuple[ToolCallDelta, ...]:
        """The canonical deltas of one chunk's ``delta.tool_calls``."""
        name = self._name
        if not isinstance(fragments, list):
            raise wrong_type("delta.tool_calls", fragments, name)
        out = []
        for pos, item in enumerate(fragments):
            where = f"delta.tool_calls[{pos}]"
            call_id, tool, text = _call_parts(item, where, name)
            key = item.get("index", pos)
            if type(key) is not int:
                raise wrong_type(f"{where}.index", key, name)
            if not self._tools.has(key) or (call_id and call_id != self._tool_ids[key]):
                if not tool:
                    raise malformed(f"a tool call that starts without a name ({where})", name)
                if len(self._sizes) >= MAX_TOOL_CALLS:
                    raise malformed(f"more than {MAX_TOOL_CALLS} tool calls", name)
                self._tool_ids[key] = call_id
                self._sizes.append(0)
                # Mistral sends a whole call in its first fragment: one delta then.
                piece: ToolCallDelta | None = self._tools.start(key, call_id, tool, None, text)
            else:
                piece = self._tools.add(key, text)
            if piece is not None:
                self._grow(piece)
                out.append(piece)
        return tuple(out)

    def _grow(self, piece: ToolCallDelta) -> None:
        self._sizes[piece.index] += len(piece.arguments_delta)
        if self._sizes[piece.index] > MAX_ARGUMENTS:
            raise malformed(f"tool call arguments over {MAX_ARGUMENTS} characters", self._name)

    def _meta(self, chunk: dict[str, Any]) -> None:
        """Usage (top level, or Groq's ``x_groq.usage``) and the model name, when present.
        Azure's first chunk has an empty model, so a later one may still name it."""
        usage = chunk.get("usage")
        if not usage:
            extra = chunk.get("x_groq")
            usage = extra.get("usage") if isinstance(extra, dict) else None
        if usage:
            self._usage = chat_usage(usage)
        if not self._model:
            self._model = served_model(chunk.get("model"))

    def _failed(self, error: Any) -> ProviderError:
        err = self._error_from(error)
        err.partial_content = "".join(self._parts)
        return err

    def finish(self) -> Completion:
        """The whole answer; StreamInterruptedError when ``[DONE]`` never came (nor, without
        ``require_done``, a finish reason)."""
        text = "".join(self._parts)
        if not self.done:
            raise StreamInterruptedError(
                f"{self._name} stream ended before data: [DONE] ({len(text)} characters received)",
                status=200,
                provider=self._name,
                partial_content=text,
            )
        refusal = "".join(self._refusal)
        calls = tuple(_checked_arguments(c, self._name) for c in self._tools.calls())
        return self._conclude(text, self._finish, self._usage, self._model, None, refusal, calls)
