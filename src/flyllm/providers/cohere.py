"""Cohere chat v2 (``POST {base}/v2/chat``, base ``https://api.cohere.com``).

Auth: ``Authorization: Bearer``. Messages keep their roles (system, user, assistant) and text
content. Streams are SSE with named events (``event: content-delta`` + ``data: {"type":
"content-delta", ...}``) and end with ``message-end`` (no ``[DONE]``).

Parameters (flyllm name -> wire):

=============  ======================================================================
flyllm         cohere
=============  ======================================================================
max_tokens     ``max_tokens``
temperature    ``temperature``, [0, 1] (the API's errors name this range)
top_p          ``p``, [0.01, 0.99]
top_k          ``k``, [0, 500]
stop           ``stop_sequences``, first 5 kept
seed           ``seed``
other          top level, unchanged (``safety_mode``, ``frequency_penalty``...)
=============  ======================================================================

Tools (see docs/providers/tools.md): ``tools`` OpenAI-like; ``tool_choice`` REQUIRED or NONE
(auto left out; a named tool is UnsupportedFeatureError before sending); an assistant turn
with calls goes as ``tool_plan`` + ``tool_calls`` (arguments as JSON text), results as
``{role: tool, tool_call_id, content}``. Streams: ``tool-plan-delta`` is text,
``tool-call-start``/``tool-call-delta`` carry ONE call object each, keyed by ``index``.

Answers: text is ``message.tool_plan`` followed by the ``message.content[]`` blocks with
``type: "text"`` (``thinking`` blocks skipped); ``message.tool_calls`` are the calls.
Finish: COMPLETE and STOP_SEQUENCE -> stop, MAX_TOKENS -> length, TOOL_CALL -> tool_calls,
ERROR -> ServerError (retryable: the generation failed), TIMEOUT -> ProviderTimeoutError,
others -> other. Usage: ``usage.billed_units`` (what is billed) when present, else
``usage.tokens`` (which also counts the prompt template); cached = ``usage.cached_tokens``.

Errors are ``{"id": ..., "message": "..."}``: 400 bad request ("too many tokens" ->
ContextLengthError), 401 and 498 authentication, 402 quota, 403 permission, 404 not found,
422 bad request, 429 rate limit (QuotaError when a trial key's monthly limit is spent), 499
connection, 500 server, 503 overloaded, 504 timeout; a 4xx saying tools, images or
``response_format`` are not supported -> UnsupportedFeatureError (feature "tools", "images",
"structured_output"). ``retry_after`` from ``retry-after-ms`` /
``retry-after``. In a stream, ``message-end`` with ``finish_reason: "ERROR"`` raises a
ServerError carrying ``delta.error``.

Embeddings (``POST {base}/v2/embed``, the "embeddings" capability): see
:mod:`flyllm.providers.cohere_embed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import (
    AuthenticationError,
    ContextLengthError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    ServerError,
    StreamInterruptedError,
    UnsupportedFeatureError,
)
from flyllm.params import OutputFormat
from flyllm.providers._cohere_output import (
    check_images,
    response_format,
    unsupported_feature,
    user_content,
)
from flyllm.providers._common import (
    ClockedProvider,
    add_extra,
    as_str,
    at_least,
    bearer_auth,
    bearer_headers,
    block_text,
    clamp,
    clip,
    count,
    dumps,
    error_class_for_status,
    fallback_message,
    header_retry_after,
    join_url,
    left_out,
    load_event,
    load_object,
    make_error,
    malformed,
    parse_error_body,
    redacted_stream,
    stop_sequences,
    without_secrets,
    wrong_type,
)
from flyllm.providers._json_hint import with_json_hint
from flyllm.providers._listing import items_of, name_of, paged_url, text, whole
from flyllm.providers._tools import (
    ToolCallAssembler,
    arguments_text,
    charset_id,
    check_call_count,
    function_call,
    function_tools,
    new_call_id,
    parse_arguments,
    unsupported_tools_message,
)
from flyllm.providers.base import (
    NON_SSE_LINE,
    Completion,
    Delta,
    EmbeddingLimits,
    Embeddings,
    Endpoint,
    HttpRequest,
    HttpResponse,
    ModelInfo,
    ModelListing,
    Page,
    ProviderSpec,
    SseEvent,
    StreamParser,
    ToolSet,
)
from flyllm.providers.cohere_embed import (
    COHERE_EMBEDDING_LIMITS,
    embed_request,
    parse_embeddings,
)
from flyllm.types import Capability, FinishReason, Message, ProviderType, ToolCall, Usage

__all__ = ["COHERE_BASE_URL", "SPEC", "CohereProvider", "CohereStream"]

COHERE_BASE_URL = "https://api.cohere.com"
"""The official SDK's default base URL; requests go to ``{base}/v2/chat``."""

_FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
_RESERVED = frozenset({"model", "messages", "stream"})
_CHOICE = {"required": "REQUIRED", "none": "NONE"}
TOOLS_WITH_OUTPUT = "structured_output_with_tools"
"""The UnsupportedFeatureError feature of a request with both tools and a response_format."""
_PLAN = "I will call the tools."
"""The ``tool_plan`` sent with an assistant turn whose calls came without text (from another
provider): Cohere's examples always send the plan back with the calls."""


def cohere_usage(usage: Any) -> Usage:
    """Usage from ``billed_units`` (else ``tokens``), with ``cached_tokens``."""
    if not isinstance(usage, dict):
        return Usage()
    counts = usage.get("billed_units")
    if not isinstance(counts, dict) or not counts:
        counts = usage.get("tokens")
    if not isinstance(counts, dict):
        counts = {}
    prompt = count(counts.get("input_tokens"))
    completion = count(counts.get("output_tokens"))
    return Usage(prompt, completion, prompt + completion, count(usage.get("cached_tokens")))


def text_blocks(content: Any) -> str:
    """The text of a content list (its ``text`` blocks) or of a plain string; '' for none.
    MalformedResponseError for a value of another type or a list of something else."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise wrong_type("message.content", content, "cohere")
    return block_text(content, "message.content", "cohere")


class CohereProvider(ClockedProvider):
    """The Cohere chat v2 wire format; stateless, shared by every instance. ``clock`` (epoch
    seconds) dates the HTTP-date form of ``retry-after``."""

    name = "cohere"
    default_base_url = COHERE_BASE_URL
    stream_framing = "sse"
    capabilities: frozenset[Capability] = frozenset(
        {"tools", "structured_output", "images", "embeddings"}
    )
    """Tools, but no named tool choice: Cohere can force "some tool", never a given one."""
    embedding_limits: EmbeddingLimits = COHERE_EMBEDDING_LIMITS
    image_url_schemes = frozenset({"http", "https"})
    """Cohere fetches http(s) image URLs itself; other images go as data URIs."""

    def build(
        self,
        endpoint: Endpoint,
        messages: Sequence[Message],
        params: Mapping[str, Any],
        *,
        stream: bool = False,
        tools: ToolSet | None = None,
        output: OutputFormat | None = None,
    ) -> HttpRequest:
        """The POST to ``{base_url}/v2/chat`` for this conversation."""
        notes: list[str] = []
        check_images(messages)
        if output is not None:
            _refuse_with_tools(tools)
            messages = with_json_hint(messages)
        body: dict[str, Any] = {
            "model": endpoint.model,
            "messages": [_message(m) for m in messages],
            "stream": stream,
        }
        if output is not None:
            body["response_format"] = response_format(output)
        if tools is not None:
            _offer(body, tools, notes)
        for key, value in _translate(body, params, notes):
            add_extra(body, key, value)
        url = join_url(endpoint.base_url or COHERE_BASE_URL, "/v2/chat")
        return HttpRequest("POST", url, bearer_headers(endpoint, stream), dumps(body), tuple(notes))

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The Completion in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        data = load_object(response, self.name, None)
        message = data.get("message")
        if not isinstance(message, dict):
            raise malformed("no message", self.name, response)
        rid = as_str(data.get("id"))
        finish = as_str(data.get("finish_reason"))
        text = _plan(message.get("tool_plan")) + text_blocks(message.get("content"))
        calls = _calls(message.get("tool_calls"))
        usage = cohere_usage(data.get("usage"))
        return self.conclude(text, finish, usage, rid, None, calls)

    def conclude(
        self,
        text: str,
        raw: str | None,
        usage: Usage,
        rid: str | None,
        error: str | None,
        calls: tuple[ToolCall, ...] = (),
    ) -> Completion:
        """The Completion for a finished answer; ServerError for ``ERROR`` and
        ProviderTimeoutError for ``TIMEOUT`` (the generation failed, another try may not)."""
        if raw in ("ERROR", "TIMEOUT"):
            cls: type[ProviderError] = ServerError if raw == "ERROR" else ProviderTimeoutError
            raise cls(
                clip(
                    f"the generation ended with finish_reason {raw}"
                    + (f": {error}" if error else "")
                ),
                status=200,
                provider=self.name,
                request_id=rid,
                partial_content=text,
            )
        finish = _FINISH.get(raw, "other") if raw else "other"
        if calls and finish == "stop":
            finish = "tool_calls"
        return Completion(text, finish, raw, usage, None, rid, calls)

    def build_embed(
        self, endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
    ) -> HttpRequest:
        """The POST to ``{base_url}/v2/embed`` for these texts."""
        return embed_request(endpoint, inputs, params)

    def parse_embed(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Embeddings:
        """The Embeddings in a 2xx answer; the classified error otherwise ("too many
        tokens" is a ContextLengthError, which the engine answers by splitting)."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        return parse_embeddings(response)

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A parser for one streamed answer."""
        return redacted_stream(CohereStream(self), endpoint)

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (see the module doc for the table)."""
        response = without_secrets(response, endpoint)
        status, headers = response.status, response.headers
        payload = parse_error_body(response.body)
        message = as_str(payload.get("message")) if isinstance(payload, dict) else None
        rid = as_str(payload.get("id")) if isinstance(payload, dict) else None
        if 400 <= status < 500 and unsupported_tools_message(message or ""):
            return UnsupportedFeatureError(
                clip(f"{message} (this model cannot take tools)"),
                feature="tools",
                status=status,
                provider=self.name,
                request_id=rid,
            )
        feature = unsupported_feature(message or "") if 400 <= status < 500 else None
        if feature is not None:
            return UnsupportedFeatureError(
                clip(f"{message} (this model cannot take {feature.replace('_', ' ')})"),
                feature=feature,
                status=status,
                provider=self.name,
                request_id=rid,
            )
        return make_error(
            _error_class(status, message or ""),
            message or fallback_message(status, response.body),
            status=status,
            provider=self.name,
            headers=headers,
            request_id=rid,
            retry_after=header_retry_after(headers, self._clock),
        )


def _translate(
    body: dict[str, Any], params: Mapping[str, Any], notes: list[str]
) -> list[tuple[str, Any]]:
    """Write the known parameters into ``body``; return the others for the top level."""
    extras: list[tuple[str, Any]] = []
    for key, value in params.items():
        if value is None:
            continue
        if key == "max_tokens":
            body["max_tokens"] = at_least(key, value, 1, "cohere", notes)
        elif key == "temperature":
            body["temperature"] = clamp(key, value, 0.0, 1.0, "cohere", notes)
        elif key == "top_p":
            body["p"] = clamp(key, value, 0.01, 0.99, "cohere", notes)
        elif key == "top_k":
            body["k"] = int(clamp(key, value, 0, 500, "cohere", notes))
        elif key == "stop":
            stops = stop_sequences(value, 5, "cohere", notes)
            if stops:
                body["stop_sequences"] = stops
        elif key == "seed":
            body["seed"] = value
        elif key in _RESERVED:
            left_out(key, "cohere", notes, "is set by flyllm")
        else:
            extras.append((key, value))
    return extras


def _message(message: Message) -> dict[str, Any]:
    """One turn on Cohere's wire: an assistant turn with calls carries them and its text as
    ``tool_plan``; a tool result names its call (ids kept to ``[A-Za-z0-9_-]``, alike for a
    call and its result); Cohere has no error flag, so a failed call's text says it."""
    if message.role == "assistant" and message.tool_calls:
        calls = [
            {
                "id": charset_id(call.id),
                "type": "function",
                "function": {"name": call.name, "arguments": arguments_text(call)},
            }
            for call in message.tool_calls
        ]
        return {"role": "assistant", "tool_calls": calls, "tool_plan": message.content or _PLAN}
    if message.role == "tool":
        content = f"Error: {message.content}" if message.is_error else message.content
        return {
            "role": "tool",
            "tool_call_id": charset_id(message.tool_call_id or ""),
            "content": content,
        }
    if message.role == "user":
        return {"role": "user", "content": user_content(message)}
    return {"role": message.role, "content": message.content}


def _refuse_with_tools(tools: ToolSet | None) -> None:
    """Cohere documents ``response_format`` as unsupported together with ``tools``:
    refused before sending, so the request fails over. The feature names the combination,
    not a capability, so the instance keeps both "tools" and "structured_output"."""
    if tools is not None:
        raise UnsupportedFeatureError(
            "cohere cannot combine response_format with tools (its API refuses both in one "
            "request); ask for the structured answer in a request without tools, or use "
            "another provider",
            feature=TOOLS_WITH_OUTPUT,
            provider="cohere",
        )


def _offer(body: dict[str, Any], tools: ToolSet, notes: list[str]) -> None:
    """``tools`` and ``tool_choice`` (REQUIRED or NONE; auto is the default, left out).
    A named choice cannot be sent: UnsupportedFeatureError before anything is sent. Cohere
    has no switch for parallel calls, so ``parallel=False`` is noted and not sent."""
    choice = tools.choice
    if choice not in ("auto", "required", "none"):
        raise UnsupportedFeatureError(
            f"cohere cannot force the tool {choice!r} (tool_choice takes only REQUIRED or "
            "NONE); use tool_choice='required' or another provider",
            feature="named_tool_choice",
            provider="cohere",
        )
    body["tools"] = function_tools(tools.tools)
    if choice in _CHOICE:
        body["tool_choice"] = _CHOICE[choice]
    if tools.parallel is False:
        left_out("parallel_tool_calls=False", "cohere", notes, "has no cohere equivalent")


def _plan(value: Any) -> str:
    """``message.tool_plan``: the assistant's text before its calls ('' when absent)."""
    if value is None or isinstance(value, str):
        return value or ""
    raise wrong_type("message.tool_plan", value, "cohere")


def _calls(value: Any) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` in the model's order, arguments parsed; MalformedResponseError
    for a list, call or argument text of the wrong type."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise wrong_type("message.tool_calls", value, "cohere")
    check_call_count(len(value), "cohere")
    calls = []
    for n, item in enumerate(value):
        call_id, name, arguments = function_call(item, f"message.tool_calls[{n}]", "cohere")
        if arguments is not None and not isinstance(arguments, str):
            raise wrong_type(f"message.tool_calls[{n}].function.arguments", arguments, "cohere")
        parsed, raw = parse_arguments(arguments or "")
        calls.append(ToolCall(call_id or new_call_id(), name, parsed, raw_arguments=raw))
    return tuple(calls)


def _error_class(status: int, message: str) -> type[ProviderError]:
    lowered = message.lower()
    if 400 <= status < 500 and lowered.startswith("too many tokens"):
        return ContextLengthError
    if status == 498:
        return AuthenticationError
    if status == 429 and ("/ month" in lowered or "per month" in lowered):
        return QuotaError
    return error_class_for_status(status)


class CohereStream:
    """StreamParser for Cohere's v2 chat events.

    Dispatches on the event name (or ``data.type``): ``content-delta`` gives
    ``delta.message.content.text`` (thinking deltas are skipped) and ``tool-plan-delta``
    ``delta.message.tool_plan`` (the assistant's text before its calls); ``tool-call-start``
    (``delta.message.tool_calls``: ONE call object with id and name) and ``tool-call-delta``
    (its ``function.arguments`` pieces) become tool-call Deltas keyed by the event's
    ``index``; ``message-start`` carries the id; ``message-end`` carries ``finish_reason``
    and ``usage`` and ends the stream (an ``ERROR`` finish raises with ``delta.error``);
    other events (content-start, content-end, tool-call-end, citations, debug) add nothing.
    """

    __slots__ = ("_calls", "_done", "_error", "_finish", "_id", "_parts", "_provider", "_usage")

    def __init__(self, provider: CohereProvider) -> None:
        self._provider = provider
        self._parts: list[str] = []
        self._calls = ToolCallAssembler("cohere")
        self._id: str | None = None
        self._finish: str | None = None
        self._error: str | None = None
        self._usage = Usage()
        self._done = False

    @property
    def done(self) -> bool:
        """True once ``message-end`` has been seen."""
        return self._done

    def feed(self, event: SseEvent) -> str | Delta:
        """The text (or tool-call Delta) this event adds; raises for a failed generation."""
        if self._done or event.event == NON_SSE_LINE or event.data.startswith("[DONE]"):
            return ""
        obj = load_event(event.data, "cohere")
        if not isinstance(obj, dict):
            raise malformed("a stream event that is not an object", "cohere")
        kind = event.event or obj.get("type")
        delta = obj.get("delta")
        if delta is None:
            delta = {}
        elif not isinstance(delta, dict):
            raise wrong_type(f"{kind} delta", delta, "cohere")
        if kind == "content-delta":
            return self._text(_field(delta, "content", kind), "text", kind)
        if kind == "tool-plan-delta":
            return self._text(_field(delta, None, kind), "tool_plan", kind)
        if kind in ("tool-call-start", "tool-call-delta"):
            return self._call(kind, obj.get("index"), _field(delta, "tool_calls", kind))
        if kind == "message-start":
            self._id = as_str(obj.get("id"))
        elif kind == "message-end":
            self._done = True
            self._finish = as_str(delta.get("finish_reason"))
            self._error = as_str(delta.get("error"))
            self._usage = cohere_usage(delta.get("usage"))
            if self._finish in ("ERROR", "TIMEOUT"):
                self.finish()  # raises, carrying the partial text
        return ""

    def _text(self, part: dict[str, Any], key: str, kind: str) -> str:
        """The text under ``key`` ('' for none, as in a thinking delta)."""
        text = part.get(key)
        if text is None:
            return ""
        if not isinstance(text, str):
            raise wrong_type(f"{kind} {key}", text, "cohere")
        if text:
            self._parts.append(text)
        return text

    def _call(self, kind: str, key: Any, call: dict[str, Any]) -> str | Delta:
        """A call's start (id, name, first arguments) or a piece of its arguments."""
        if not isinstance(key, int) or isinstance(key, bool):
            raise wrong_type(f"{kind} index", key, "cohere")
        if kind == "tool-call-start":
            call_id, name, arguments = function_call(call, f"{kind} tool_calls", "cohere")
            return Delta(
                tool_calls=(self._calls.start(key, call_id, name, None, _args(arguments, kind)),)
            )
        function = call.get("function")
        if not isinstance(function, dict):
            raise wrong_type(f"{kind} function", function, "cohere")
        if not self._calls.has(key):
            raise malformed(f"a tool-call-delta for index {key} that never started", "cohere")
        piece = self._calls.add(key, _args(function.get("arguments"), kind))
        return Delta(tool_calls=(piece,)) if piece else ""

    def finish(self) -> Completion:
        """The whole answer; StreamInterruptedError when ``message-end`` never came."""
        text = "".join(self._parts)
        if not self._done:
            raise StreamInterruptedError(
                f"cohere stream ended before message-end ({len(text)} characters received)",
                status=200,
                provider="cohere",
                partial_content=text,
            )
        calls = self._calls.calls()
        return self._provider.conclude(
            text, self._finish, self._usage, self._id, self._error, calls
        )


def _field(delta: dict[str, Any], key: str | None, kind: str) -> dict[str, Any]:
    """``delta.message`` (or ``delta.message[key]``) as an object, {} when absent;
    MalformedResponseError for a value of another type (a list of calls included: Cohere
    sends one call object per event)."""
    value: Any = delta.get("message")
    where = f"{kind} message"
    if key is not None and isinstance(value, dict):
        value, where = value.get(key), f"{where}.{key}"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise wrong_type(where, value, "cohere")
    return value


def _args(value: Any, kind: str) -> str:
    """An arguments piece: text ('' when absent)."""
    if value is None or isinstance(value, str):
        return value or ""
    raise wrong_type(f"{kind} arguments", value, "cohere")


def _models_url(endpoint: Endpoint, cursor: str | None) -> str:
    keys = ("page_size", "page_token")
    return paged_url(endpoint, "/v1/models", cursor, keys, {"endpoint": "chat"})


def _models_page(data: Any, provider: str) -> Page:
    """``{"models": [{"name", "endpoints", "context_length", "is_deprecated"...}],
    "next_page_token"}``; only models whose ``endpoints`` include ``chat``."""
    models = [
        ModelInfo(
            name_of(item, ("name",), provider),
            provider,
            context_window=whole(item.get("context_length")),
            raw=item,
        )
        for item in items_of(data, "models", provider)
        if isinstance(item.get("endpoints"), list) and "chat" in item["endpoints"]
    ]
    return models, text(data.get("next_page_token"))


SPEC = ProviderSpec(
    ProviderType.COHERE,
    CohereProvider(),
    bearer_auth,
    ModelListing(_models_url, _models_page),
    base_url_env="CO_API_URL",
    key_env=("CO_API_KEY", "COHERE_API_KEY"),
)
"""Cohere v2 chat: ``GET {base}/v1/models?endpoint=chat`` paged by ``page_token``."""
