"""Anthropic Messages (``POST {base}/v1/messages``, base ``https://api.anthropic.com``).

Headers: ``x-api-key``, ``anthropic-version`` (the endpoint's api_version, default
``2023-06-01``; ``2026-10-21`` and later drop the sampling parameters), then the endpoint's own
(``anthropic-beta``...). System messages are joined with a blank line into the top-level
``system``; the other turns keep their order (consecutive same-role turns are allowed).

Tools, tool_use and tool_result blocks, and the thinking blocks sent back with them: see
:mod:`flyllm.providers._anthropic_tools` (and docs/providers/tools.md). Structured output
(``output_config.format``, or a forced tool with ``options={"structured_output": "tool"}``) and
images: :mod:`flyllm.providers._anthropic_output`. Extended thinking is
switched on with ``provider_params={"anthropic": {"thinking": {...}}}``; an answer's thinking
blocks ride in ``provider_data["anthropic"]`` and go back, unchanged, only to Anthropic.

Parameters (flyllm name -> wire):

=============  ====================================  ==========================================
flyllm         2023-06-01                            2026-10-21 (and later)
=============  ====================================  ==========================================
max_tokens     ``max_tokens`` (required: 4096 when   same
               absent)
temperature    ``temperature``, [0, 1]               left out (the API rejects it)
top_p          ``top_p``, [0, 1]                     left out
top_k          ``top_k``, >= 0                       left out
stop           ``stop_sequences``                    ``stop_sequences``
seed           left out (not in the API)             left out
other          top level, unchanged                  top level, unchanged
=============  ====================================  ==========================================

Finish: end_turn/stop_sequence -> stop, max_tokens/model_context_window_exceeded -> length,
tool_use -> tool_calls, pause_turn and others -> other, refusal -> ContentFilterError.
A model or server that cannot take tools ("... does not support tools") ->
UnsupportedFeatureError (feature "tools"). Usage:
prompt = input + cache_creation + cache_read (cached = the two cache counts), completion =
output, total = their sum; in streams ``message_delta.usage`` is cumulative, so the last wins.

Errors by ``error.type`` and status: 400 invalid_request_error (bad request; "prompt is too
long" -> ContextLengthError; "credit balance is too low" -> QuotaError), 401 authentication, 402
billing_error -> QuotaError, 403 permission, 404 not found, 413 request_too_large (bad request),
429 rate_limit_error, 500 api_error (server), 504 timeout_error (timeout), 529 overloaded_error
-> OverloadedError. ``retry_after``: ``retry-after-ms``, ``retry-after``, then on a 429 the
``anthropic-ratelimit-*-reset`` RFC 3339 timestamps. An ``event: error`` in a stream raises the
error its type names (``overloaded_error`` -> OverloadedError).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import (
    ContentFilterError,
    ContextLengthError,
    OverloadedError,
    ProviderError,
    QuotaError,
    RateLimitError,
    StreamInterruptedError,
    UnsupportedFeatureError,
)
from flyllm.params import OutputFormat
from flyllm.providers._anthropic_output import (
    IMAGE_URL_SCHEMES,
    check_images,
    check_tool_names,
    is_output_tool,
    output_mode,
    split_output,
    wire_output,
)
from flyllm.providers._anthropic_tools import (
    THINKING_TYPES,
    check_raw_arguments,
    read_blocks,
    stream_call_start,
    thinking_data,
    wire_tools,
    wire_turns,
)
from flyllm.providers._common import (
    ClockedProvider,
    add_extra,
    as_str,
    at_least,
    brief,
    clamp,
    clip,
    count,
    dumps,
    error_class_for_status,
    fallback_message,
    header_retry_after,
    join_url,
    json_headers,
    left_out,
    load_event,
    load_object,
    make_error,
    malformed,
    parse_error_body,
    redacted_stream,
    reset_delay,
    rfc3339_delay,
    served_model,
    should_retry,
    stop_sequences,
    without_secrets,
    wrong_type,
)
from flyllm.providers._listing import epoch, items_of, name_of, paged_url, text, whole
from flyllm.providers._listing import malformed as list_malformed
from flyllm.providers._tools import ToolCallAssembler, unsupported_tools_message
from flyllm.providers.base import (
    ALL_CAPABILITIES,
    NON_SSE_LINE,
    Completion,
    Delta,
    Endpoint,
    HttpRequest,
    HttpResponse,
    ModelInfo,
    ModelListing,
    Page,
    ProviderSpec,
    RateLimitHeaders,
    SseEvent,
    StreamParser,
    ToolSet,
)
from flyllm.types import Capability, FinishReason, Message, ProviderType, ToolCall, Usage

__all__ = [
    "ANTHROPIC_BASE_URL",
    "DEFAULT_ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "SPEC",
    "AnthropicProvider",
    "AnthropicStream",
    "anthropic_auth",
]

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
"""The official SDK's default base URL; requests go to ``{base}/v1/messages``."""

DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` sent when the endpoint names none."""

SAMPLING_REMOVED_VERSION = "2026-10-21"
"""From this API version on, temperature, top_p and top_k are rejected (WIRE.md, late 2026)."""

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` is required by the API; this is sent when no layer sets it."""

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}

_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_RATE_WINDOWS = ("requests", "tokens", "input-tokens", "output-tokens")
_SAMPLING = frozenset({"temperature", "top_p", "top_k"})
_RESERVED = frozenset({"model", "messages", "stream"})
# With the request's own tools, raw ones in the parameters would silently replace them; without,
# they pass through as any other parameter did before flyllm translated tools.
_TOOL_FIELDS = frozenset({"tools", "tool_choice"})
_UNSUPPORTED_OUTPUT = re.compile(
    r"(?:structured outputs?|output_config\.format|output_format)\b.*\bnot supported"
    r"|does not support (?:structured outputs?|output_config|output format)",
    re.IGNORECASE,
)
_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def anthropic_usage(counts: Mapping[str, Any]) -> Usage:
    """Usage from Anthropic's counters: cache creation and reads are billed input, so they
    count in ``prompt_tokens`` and, apart, in ``cached_tokens``."""
    cached = count(counts.get("cache_creation_input_tokens")) + count(
        counts.get("cache_read_input_tokens")
    )
    prompt = count(counts.get("input_tokens")) + cached
    completion = count(counts.get("output_tokens"))
    return Usage(prompt, completion, prompt + completion, cached)


class AnthropicProvider(ClockedProvider):
    """The Anthropic Messages wire format; stateless, shared by every instance. ``clock``
    (epoch seconds) dates ``retry-after`` HTTP-dates and the rate-limit reset timestamps."""

    name = "anthropic"
    default_base_url = ANTHROPIC_BASE_URL
    stream_framing = "sse"
    capabilities: frozenset[Capability] = ALL_CAPABILITIES
    image_url_schemes = IMAGE_URL_SCHEMES

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
        """The POST to ``{base_url}/v1/messages`` for this conversation."""
        version = endpoint.api_version or DEFAULT_ANTHROPIC_VERSION
        mode = output_mode(endpoint.options)
        check_images(messages)
        notes: list[str] = []
        system, turns = wire_turns(messages, notes)
        body: dict[str, Any] = {"model": endpoint.model, "max_tokens": DEFAULT_MAX_TOKENS}
        if system:
            body["system"] = "\n\n".join(system)
        body["messages"] = turns
        if tools is not None:
            check_tool_names(tools)
            body["tools"], body["tool_choice"] = wire_tools(tools)
        if output is not None:
            wire_output(body, output, tools, mode, params.get("thinking"))
        if stream:
            body["stream"] = True
        reserved = _RESERVED | _TOOL_FIELDS if "tools" in body else _RESERVED
        self._params(body, params, version, notes, reserved)
        headers = json_headers(endpoint, stream, anthropic_auth)
        url = join_url(endpoint.base_url or ANTHROPIC_BASE_URL, "/v1/messages")
        return HttpRequest("POST", url, headers, dumps(body), tuple(notes))

    def _params(
        self,
        body: dict[str, Any],
        params: Mapping[str, Any],
        version: str,
        notes: list[str],
        reserved: frozenset[str],
    ) -> None:
        no_sampling = version >= SAMPLING_REMOVED_VERSION
        extras: list[tuple[str, Any]] = []
        for key, value in params.items():
            if value is None:
                continue
            if key in _SAMPLING and no_sampling:
                left_out(key, "anthropic", notes, f"is not accepted by anthropic API {version}")
            elif key == "max_tokens":
                body["max_tokens"] = at_least(key, value, 1, "anthropic", notes)
            elif key == "temperature":
                body["temperature"] = clamp(key, value, 0.0, 1.0, "anthropic", notes)
            elif key == "top_p":
                body["top_p"] = clamp(key, value, 0.0, 1.0, "anthropic", notes)
            elif key == "top_k":
                body["top_k"] = at_least(key, value, 0, "anthropic", notes)
            elif key == "stop":
                stops = stop_sequences(value, None, "anthropic", notes)
                if stops:
                    body["stop_sequences"] = stops
            elif key == "seed":
                left_out(key, "anthropic", notes)
            elif key in reserved:
                left_out(key, "anthropic", notes, "is set by flyllm")
            else:
                extras.append((key, value))
        for key, value in extras:
            add_extra(body, key, value)

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The Completion in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        rid = response.headers.get("request-id")
        data = load_object(response, self.name, rid)
        content = data.get("content")
        if not isinstance(content, list):
            if data.get("type") == "error":
                raise self.stream_error(data.get("error"))
            raise malformed("no content list", self.name, response, rid)
        text, calls, thinking = read_blocks(content, self.name)
        answer, calls = split_output(calls)
        usage = data.get("usage")
        return self.conclude(
            text if answer is None else answer,
            as_str(data.get("stop_reason")),
            anthropic_usage(usage if isinstance(usage, dict) else {}),
            served_model(data.get("model")),
            rid,
            calls,
            thinking,
        )

    def conclude(
        self,
        text: str,
        raw: str | None,
        usage: Usage,
        model: str | None,
        rid: str | None,
        calls: tuple[ToolCall, ...] = (),
        thinking: list[dict[str, Any]] | None = None,
    ) -> Completion:
        """The Completion for a finished answer (its tool calls, and its thinking blocks as
        provider state); ContentFilterError for a refusal."""
        if raw == "refusal":
            raise ContentFilterError(
                clip("the model refused (stop_reason refusal)" + (f": {text}" if text else "")),
                status=200,
                provider=self.name,
                request_id=rid,
                partial_content=text,
            )
        finish = _FINISH.get(raw, "other") if raw else "other"
        if finish == "tool_calls" and not calls:  # the only call was the structured answer
            finish = "stop"
        data = thinking_data(thinking or [])
        return Completion(text, finish, raw, usage, model, rid, calls, data)

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A parser for one streamed answer."""
        return redacted_stream(AnthropicStream(self), endpoint)

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (see the module doc for the table)."""
        response = without_secrets(response, endpoint)
        status, headers = response.status, response.headers
        payload = parse_error_body(response.body)
        message, etype, body_rid = _error_fields(payload)
        retry_after = header_retry_after(headers, self._clock)
        if retry_after is None and status == 429:
            retry_after = self._reset_hint(headers)
        output = _UNSUPPORTED_OUTPUT.search(message or "") is not None
        if status in (400, 404, 422) and (output or unsupported_tools_message(message or "")):
            return UnsupportedFeatureError(
                clip(message or ""),
                feature="structured_output" if output else "tools",
                status=status,
                provider=self.name,
                retryable=should_retry(headers),
                request_id=headers.get("request-id") or body_rid,
            )
        return make_error(
            _error_class(status, etype, message or ""),
            message or fallback_message(status, response.body),
            status=status,
            provider=self.name,
            headers=headers,
            request_id=headers.get("request-id") or body_rid,
            retry_after=retry_after,
        )

    def stream_error(self, error: Any) -> ProviderError:
        """The typed error for an ``error`` event inside a 200 stream, by its ``error.type``."""
        message, etype, _ = _error_fields({"error": error})
        virtual = _TYPE_STATUS.get(etype or "", 500)
        return make_error(
            _error_class(virtual, etype, message or ""),
            message or f"error event: {brief(error)}",
            status=200,
            provider=self.name,
            headers={},
            request_id=None,
            retry_after=None,
        )

    def _reset_hint(self, headers: Mapping[str, str]) -> float | None:
        windows: list[tuple[str | None, float | None]] = []
        for window in _RATE_WINDOWS:
            reset = headers.get(f"anthropic-ratelimit-{window}-reset")
            if reset:
                remaining = headers.get(f"anthropic-ratelimit-{window}-remaining")
                windows.append((remaining, rfc3339_delay(reset, self._clock)))
        return reset_delay(windows)


def _error_fields(payload: Any) -> tuple[str | None, str | None, str | None]:
    """(message, error type, request id) from ``{"type":"error","error":{...},"request_id"}``."""
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    rid = as_str(payload.get("request_id"))
    if isinstance(error, dict):
        return as_str(error.get("message")), as_str(error.get("type")), rid
    return as_str(error) or as_str(payload.get("message")), None, rid


def _error_class(status: int, etype: str | None, message: str) -> type[ProviderError]:
    if etype == "overloaded_error" or status == 529:
        return OverloadedError
    lowered = message.lower()
    if etype == "billing_error" or "credit balance is too low" in lowered:
        return QuotaError
    if 400 <= status < 500 and (
        "prompt is too long" in lowered or "exceed context limit" in lowered
    ):
        return ContextLengthError
    if etype == "rate_limit_error":
        return RateLimitError
    return error_class_for_status(status)


class AnthropicStream:
    """StreamParser for Anthropic's named events.

    Dispatches on the SSE event name (or ``data.type`` when absent): ``text_delta`` blocks give
    text; a ``tool_use`` block's start and its ``input_json_delta`` pieces give tool-call
    deltas (numbered 0, 1, ... in call order, whatever Anthropic's block index, which counts
    text and thinking blocks too); thinking blocks (``thinking_delta``, ``signature_delta``)
    and redacted ones are kept for ``provider_data``; ``message_start`` and each
    ``message_delta`` update the usage counters (cumulative: last value wins);
    ``message_stop`` ends the stream; ``error`` raises; ``ping`` and unknown events are
    ignored.
    """

    __slots__ = (
        "_answer",
        "_calls",
        "_counts",
        "_done",
        "_model",
        "_parts",
        "_provider",
        "_stop_reason",
        "_thinking",
    )

    def __init__(self, provider: AnthropicProvider) -> None:
        self._provider = provider
        self._parts: list[str] = []
        self._counts: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._model: str | None = None
        self._done = False
        self._calls = ToolCallAssembler("anthropic")
        self._thinking: dict[int, dict[str, Any]] = {}
        self._answer: tuple[int, list[str]] | None = None  # the answer tool's block and JSON

    @property
    def done(self) -> bool:
        """True once ``message_stop`` has been seen."""
        return self._done

    def feed(self, event: SseEvent) -> str | Delta:
        """The text this event adds, or a Delta when it carries a tool-call piece; raises the
        classified error for an ``error`` event."""
        name = event.event
        if name == "ping" or name == NON_SSE_LINE:
            return ""
        obj = load_event(event.data, "anthropic")
        if not isinstance(obj, dict):
            raise malformed("a stream event that is not an object", "anthropic")
        kind = name or obj.get("type")
        if kind == "content_block_delta":
            return self._delta(obj)
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self._model = served_model(message.get("model"))
                self._update_usage(message.get("usage"))
        elif kind == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
            self._update_usage(obj.get("usage"))
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            err = self._provider.stream_error(obj.get("error"))
            err.partial_content = "".join(self._parts)
            raise err
        return ""

    def _block_start(self, obj: dict[str, Any]) -> str | Delta:
        """A ``content_block_start``: a tool call's first delta (id and name), or a thinking
        block opened; text blocks start empty."""
        block = obj.get("content_block")
        if not isinstance(block, dict):
            raise wrong_type("content_block_start.content_block", block, "anthropic")
        kind = block.get("type")
        if not isinstance(kind, str):
            raise wrong_type("content_block_start.content_block.type", kind, "anthropic")
        if kind == "tool_use":
            call_id, name, arguments = stream_call_start(block, "anthropic")
            if is_output_tool(name) and self._answer is None:  # its JSON streams as the text
                self._answer = (_index(obj), [arguments])
                return arguments
            start = self._calls.start(_index(obj), call_id, name, arguments=arguments)
            return Delta(tool_calls=(start,))
        if kind in THINKING_TYPES:
            self._thinking[_index(obj)] = dict(block)
        return ""

    def _delta(self, obj: dict[str, Any]) -> str | Delta:
        """What a ``content_block_delta`` adds: text, a piece of a call's arguments, or (kept
        aside) thinking text and its signature."""
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            raise wrong_type("content_block_delta.delta", delta, "anthropic")
        kind = delta.get("type")
        if not isinstance(kind, str):
            raise wrong_type("content_block_delta.delta.type", kind, "anthropic")
        if kind == "input_json_delta":
            return self._arguments(_index(obj), delta.get("partial_json"))
        if kind in ("thinking_delta", "signature_delta"):
            self._think(_index(obj), kind[: -len("_delta")], delta)
            return ""
        if kind != "text_delta":
            return ""
        text = delta.get("text")
        if not isinstance(text, str):
            raise wrong_type("text_delta.text", text, "anthropic")
        if text:
            self._parts.append(text)
        return text

    def _arguments(self, index: int, piece: Any) -> str | Delta:
        if not isinstance(piece, str):
            raise wrong_type("input_json_delta.partial_json", piece, "anthropic")
        if self._answer is not None and self._answer[0] == index:
            self._answer[1].append(piece)
            return piece
        if not self._calls.has(index):
            raise malformed(f"an input_json_delta for block {index}, not a tool_use", "anthropic")
        added = self._calls.add(index, piece)
        return Delta(tool_calls=(added,)) if added is not None else ""

    def _think(self, index: int, field: str, delta: dict[str, Any]) -> None:
        """Appends a thinking or signature piece to its thinking block (the signature comes
        whole, in one delta)."""
        piece = delta.get(field)
        if not isinstance(piece, str):
            raise wrong_type(f"{field}_delta.{field}", piece, "anthropic")
        block = self._thinking.get(index)
        if block is not None and block.get("type") == "thinking":
            before = block.get(field)
            block[field] = (before if isinstance(before, str) else "") + piece

    def _update_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            for key in _USAGE_KEYS:
                value = usage.get(key)
                if value is not None:
                    self._counts[key] = value

    def finish(self) -> Completion:
        """The whole answer; StreamInterruptedError when ``message_stop`` never came."""
        text = "".join(self._parts)
        if not self._done:
            raise StreamInterruptedError(
                f"anthropic stream ended before message_stop ({len(text)} characters received)",
                status=200,
                provider="anthropic",
                partial_content=text,
            )
        calls = self._calls.calls()
        check_raw_arguments(calls, "anthropic")
        if self._answer is not None:
            text = "".join(self._answer[1])
        thinking = [self._thinking[i] for i in sorted(self._thinking)]
        usage = anthropic_usage(self._counts)
        return self._provider.conclude(
            text, self._stop_reason, usage, self._model, None, calls, thinking
        )


def _index(obj: dict[str, Any]) -> int:
    """A content block event's ``index`` (MalformedResponseError unless a whole number)."""
    index = obj.get("index")
    if type(index) is not int:
        raise wrong_type("a content block event with index", index, "anthropic")
    return index


def anthropic_auth(endpoint: Endpoint) -> dict[str, str]:
    """``anthropic-version`` (the endpoint's api_version, else the default) and ``x-api-key``
    (none for an empty key)."""
    headers = {"anthropic-version": endpoint.api_version or DEFAULT_ANTHROPIC_VERSION}
    if endpoint.api_key:
        headers["x-api-key"] = endpoint.api_key
    return headers


def _models_url(endpoint: Endpoint, cursor: str | None) -> str:
    return paged_url(endpoint, "/v1/models", cursor, ("limit", "after_id"))


def _models_page(data: Any, provider: str) -> Page:
    """``{"data": [{"id", "display_name", "created_at", "max_input_tokens", "max_tokens"...}],
    "has_more", "first_id", "last_id"}``; the next page is ``after_id=last_id``."""
    models = [
        ModelInfo(
            name_of(item, ("id",), provider),
            provider,
            display_name=text(item.get("display_name")),
            created=epoch(item.get("created_at")),
            context_window=whole(item.get("max_input_tokens")),
            max_output_tokens=whole(item.get("max_tokens")),
            raw=item,
        )
        for item in items_of(data, "data", provider)
    ]
    if data.get("has_more") is not True:
        return models, None
    last = text(data.get("last_id"))
    if last is None:
        raise list_malformed(provider, "has_more without a last_id")
    return models, last


SPEC = ProviderSpec(
    ProviderType.ANTHROPIC,
    AnthropicProvider(),
    anthropic_auth,
    ModelListing(_models_url, _models_page),
    base_url_env="ANTHROPIC_BASE_URL",
    rate_limits=RateLimitHeaders(
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
        rfc3339_delay,
    ),
)
"""Anthropic's Messages API: ``GET {base}/v1/models?limit=1000`` paged by ``after_id``;
``anthropic-ratelimit-*`` headers with RFC 3339 resets."""
