"""OpenAI Chat Completions (``POST {base}/chat/completions``), also used for OpenAI-compatible
servers (vLLM, llama.cpp, Ollama, gateways) under the name "openai_compatible".

The chat-completions pieces that Mistral's near-identical format reuses live here too:
:func:`chat_messages`, :func:`chat_params`, :func:`parse_chat`, and (from
:mod:`flyllm.providers.chat_stream`, re-exported) :class:`ChatCompletionsStream`. The
OpenAI-compatible services of :mod:`flyllm.providers.presets` and Azure
(:mod:`flyllm.providers.azure`) are this provider with other settings.

Parameters (flyllm name -> wire):

=============  =============================  ==============================================
flyllm         openai                         openai_compatible
=============  =============================  ==============================================
max_tokens     ``max_completion_tokens``      ``max_tokens`` (what local servers understand)
temperature    ``temperature``, [0, 2]        ``temperature``, [0, 2]
top_p          ``top_p``, [0, 1]              ``top_p``, [0, 1]
top_k          left out (not in the API)      left out
stop           ``stop``, first 4 kept         ``stop``, all kept
seed           ``seed``                       ``seed``
other          top level, unchanged           top level, unchanged
=============  =============================  ==============================================

Every clamp or omission adds a note to ``HttpRequest.notes``. Streams add ``"stream": true`` and
``"stream_options": {"include_usage": true}`` (usage then arrives in a last chunk with
``choices: []``). An empty api_key sends no Authorization header (local servers need none).

Tools: see :mod:`flyllm.providers.chat_stream`. "Does not support tools" answers (OpenAI's
``unsupported_parameter`` naming 'tools', Ollama's and vLLM's wording) raise
UnsupportedFeatureError(feature="tools").

Structured output and images: see :mod:`flyllm.providers.chat_output` (``response_format``
json_schema with :func:`output_schema`'s strict conversion, json_object with a JSON
instruction; ``image_url`` parts, PNG/JPEG/WEBP/still GIF up to 20 MB, 500 a request). Their
"not supported" answers raise UnsupportedFeatureError with "structured_output" or "images".

Embeddings (``POST {base}/embeddings``): see :mod:`flyllm.providers.openai_embed`; offered
by the instances built with ``embeddings=True`` (OpenAI, openai_compatible and the presets
whose service has the endpoint).

Errors: 400/413/422 bad request (``context_length_exceeded`` -> ContextLengthError), 401
authentication, 403 permission, 404 not found, 408 timeout, 409 server (retryable), 429 rate
limit (``insufficient_quota`` -> QuotaError), 503 (or any 5xx saying "overloaded"/"slow
down") -> OverloadedError, 504 timeout, other 5xx server. ``retry_after``: ``retry-after-ms``,
``retry-after``, then on a 429 the ``x-ratelimit-reset-{requests,tokens}`` Go durations. A
refusal (``message.refusal``) or a ``content_filter`` finish raises ContentFilterError carrying
the provider's text.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flyllm.errors import (
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    OverloadedError,
    ProviderError,
    QuotaError,
    RateLimitError,
    UnsupportedFeatureError,
)
from flyllm.params import OutputFormat
from flyllm.providers._common import (
    Clock,
    add_extra,
    as_str,
    at_least,
    bearer_auth,
    bearer_headers,
    brief,
    clamp,
    clip,
    dumps,
    error_class_for_status,
    fallback_message,
    go_duration,
    header_retry_after,
    join_url,
    left_out,
    load_object,
    make_error,
    malformed,
    parse_error_body,
    redacted_stream,
    reset_delay,
    served_model,
    stop_sequences,
    without_secrets,
)
from flyllm.providers._listing import first, items_of, name_of, path_url, text, whole
from flyllm.providers._listing import malformed as list_malformed
from flyllm.providers._tools import unsupported_tools_message
from flyllm.providers.base import (
    ALL_CAPABILITIES,
    Completion,
    EmbeddingLimits,
    Embeddings,
    Endpoint,
    HttpRequest,
    HttpResponse,
    ModelInfo,
    ModelListing,
    Page,
    ProviderSpec,
    RateLimitHeaders,
    StreamParser,
    ToolSet,
    url_scheme,
)
from flyllm.providers.chat_output import (
    MB,
    ImageRules,
    check_image_count,
    json_turns,
    openai_output_schema,
    unsupported_feature,
    write_output,
)
from flyllm.providers.chat_stream import (
    ChatCompletionsStream,
    Conclude,
    chat_messages,
    chat_tool_calls,
    chat_tools,
    chat_usage,
    content_text,
    tool_finish,
)
from flyllm.providers.openai_embed import (
    OPENAI_EMBEDDING_LIMITS,
    embed_body,
    parse_embeddings,
)
from flyllm.types import Capability, FinishReason, Message, ProviderType, ToolCall, Usage

__all__ = [
    "COMPATIBLE_SPEC",
    "OPENAI_BASE_URL",
    "OPENAI_IMAGES",
    "OPENAI_MODELS",
    "OPENAI_RATE_LIMITS",
    "SPEC",
    "ChatCompletionsStream",
    "ChatDialect",
    "OpenAIProvider",
    "chat_messages",
    "chat_params",
    "chat_tool_calls",
    "chat_tools",
    "chat_usage",
    "content_text",
    "openai_output_schema",
    "openai_page",
    "output_schema",
    "parse_chat",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""The official SDK's default base URL; requests go to ``{base}/chat/completions``."""

"""What OpenAI's Chat Completions can do: tools (a named choice too), structured output, images."""

OPENAI_IMAGES = ImageRules(
    "openai",
    frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"}),
    max_bytes=20 * MB,
    max_images=500,
    original_detail=True,
)
"""OpenAI's vision limits: PNG, JPEG, WEBP and still GIF, 20 MB an image, 500 a request."""

output_schema = openai_output_schema

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}

# The kind of an error that arrives inside a 200 stream, from its type or code, as the status
# the same error would have had before the stream started.
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "insufficient_quota": 429,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_exceeded": 429,
    "requests": 429,
    "tokens": 429,
    "server_error": 500,
    "overloaded": 503,
}

_RESERVED = frozenset({"model", "messages", "stream"})


@dataclass(slots=True, frozen=True)
class ChatDialect:
    """How one chat-completions flavour names and bounds the known parameters.

    ``seed_field`` None leaves ``seed`` out; ``top_k`` sends ``top_k`` (servers of open models
    take it); ``stop`` False leaves ``stop`` out (servers that reject it)."""

    name: str
    max_tokens_field: str
    temperature_max: float
    max_stop: int | None
    seed_field: str | None
    top_k: bool = False
    stop: bool = True


def chat_params(
    body: dict[str, Any], params: Mapping[str, Any], dialect: ChatDialect, notes: list[str]
) -> None:
    """Write ``params`` into a chat-completions ``body``: the known ones translated and bounded,
    the others at the top level, after (so they win; see ``add_extra``)."""
    extras: list[tuple[str, Any]] = []
    name = dialect.name
    for key, value in params.items():
        if value is None:
            continue
        if key == "max_tokens":
            body[dialect.max_tokens_field] = at_least(key, value, 1, name, notes)
        elif key == "temperature":
            body["temperature"] = clamp(key, value, 0.0, dialect.temperature_max, name, notes)
        elif key == "top_p":
            body["top_p"] = clamp(key, value, 0.0, 1.0, name, notes)
        elif key == "top_k":
            if dialect.top_k:
                body["top_k"] = value
            else:
                left_out(key, name, notes)
        elif key == "stop":
            if not dialect.stop:
                left_out(key, name, notes)
                continue
            stops = stop_sequences(value, dialect.max_stop, name, notes)
            if stops:
                body["stop"] = stops
        elif key == "seed":
            if dialect.seed_field is None:
                left_out(key, name, notes)
            else:
                body[dialect.seed_field] = value
        elif key in _RESERVED:
            left_out(key, name, notes, "is set by flyllm")
        else:
            extras.append((key, value))
    for key, value in extras:
        add_extra(body, key, value)


def parse_chat(
    response: HttpResponse,
    provider: str,
    request_id: str | None,
    conclude: Conclude,
    error_from: Callable[[Any], ProviderError],
) -> Completion:
    """A 2xx chat-completions body -> Completion (through ``conclude``)."""
    data = load_object(response, provider, request_id)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if data.get("error") is not None:  # some compatible servers answer 200 with an error
            raise error_from(data["error"])
        raise malformed("no choices", provider, response, request_id)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise malformed("no choices[0].message", provider, response, request_id)
    refusal = message.get("refusal")
    calls = message.get("tool_calls")
    return conclude(
        content_text(message.get("content"), provider),
        as_str(choice.get("finish_reason")),
        chat_usage(data.get("usage")),
        served_model(data.get("model")),
        request_id,
        refusal if isinstance(refusal, str) else "",
        chat_tool_calls(calls, provider) if calls is not None else (),
    )


class OpenAIProvider:
    """The OpenAI Chat Completions wire format; stateless, shared by every instance.

    ``OpenAIProvider()`` is OpenAI itself; :meth:`compatible` the same format for other servers
    (``max_tokens``, no stop limit, no default base URL); the services in
    :mod:`flyllm.providers.presets` are instances built from a table. The keywords say how a
    service differs: which field carries max_tokens, how many stop sequences it takes, whether it
    takes ``top_k``, ``seed`` and ``stop``, whether streams must ask for usage with
    ``stream_options`` (``stream_usage``) and whether they end with ``data: [DONE]``
    (``require_done``), and ``capabilities`` what its API can do (a service without tool
    calling leaves out "tools"; its requests with tools are refused before sending).
    ``clock`` (epoch seconds) dates the HTTP-date form of ``retry-after``; tests inject a fixed
    one.
    """

    stream_framing = "sse"
    request_id_header = "x-request-id"
    image_url_schemes = frozenset({"http", "https"})

    def accepts_image_url(self, url: str) -> bool:
        """True when the image URL's scheme is one this provider fetches itself."""
        return url_scheme(url) in self.image_url_schemes

    def __init__(
        self,
        *,
        name: str = "openai",
        default_base_url: str = OPENAI_BASE_URL,
        max_tokens_field: str = "max_completion_tokens",
        max_stop: int | None = 4,
        top_k: bool = False,
        seed: bool = True,
        stop: bool = True,
        stream_usage: bool = True,
        require_done: bool = True,
        capabilities: frozenset[Capability] = ALL_CAPABILITIES,
        json_schema: bool = True,
        embeddings: bool = False,
        embed_base64: bool = False,
        clock: Clock = time.time,
    ) -> None:
        self.name = name
        embed: frozenset[Capability] = frozenset({"embeddings"} if embeddings else ())
        self.capabilities: frozenset[Capability] = capabilities | embed
        # base64 carries a float32 in 5.33 characters; JSON text in up to ~24.
        self.embedding_limits: EmbeddingLimits = dataclasses.replace(
            OPENAI_EMBEDDING_LIMITS, bytes_per_value=6.0 if embed_base64 else 24.0
        )
        self._embed_base64 = embed_base64
        self.default_base_url = default_base_url
        seed_field = "seed" if seed else None
        self._dialect = ChatDialect(name, max_tokens_field, 2.0, max_stop, seed_field, top_k, stop)
        self._stream_usage = stream_usage
        self._require_done = require_done
        self._json_schema = json_schema
        # "original" detail is OpenAI's own; compatible services get "high"
        self._images = dataclasses.replace(
            OPENAI_IMAGES, provider=name, original_detail=name == "openai"
        )
        self._clock = clock

    @classmethod
    def compatible(cls, *, clock: Clock = time.time) -> OpenAIProvider:
        """The variant for OpenAI-compatible servers: name "openai_compatible", ``max_tokens``,
        every stop sequence kept, and no default base URL (each instance must give one)."""
        return cls(
            name="openai_compatible",
            default_base_url="",
            max_tokens_field="max_tokens",
            max_stop=None,
            embeddings=True,
            clock=clock,
        )

    @property
    def requires_base_url(self) -> bool:
        """True when instances must give a base_url (no default one)."""
        return not self.default_base_url

    def __repr__(self) -> str:
        return f"OpenAIProvider(name={self.name!r})"

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
        """The POST to ``{base_url}/chat/completions`` for this conversation."""
        notes: list[str] = []
        body = self.chat_body(
            endpoint.model, messages, params, stream, notes, tools=tools, output=output
        )
        base_url = endpoint.base_url or self.default_base_url
        if not base_url:
            raise ConfigurationError(f"{self.name} instances need a base_url")
        headers = bearer_headers(endpoint, stream)
        url = join_url(base_url, "/chat/completions")
        return HttpRequest("POST", url, headers, dumps(body), tuple(notes))

    def chat_body(
        self,
        model: str,
        messages: Sequence[Message],
        params: Mapping[str, Any],
        stream: bool,
        notes: list[str],
        *,
        dialect: ChatDialect | None = None,
        stream_usage: bool | None = None,
        tools: ToolSet | None = None,
        output: OutputFormat | None = None,
    ) -> dict[str, Any]:
        """The JSON body: model, messages (images checked against the provider's limits), the
        stream flags, the tools, ``response_format``, then the translated parameters
        (``dialect`` and ``stream_usage`` override the provider's own, for variants such as
        Azure's API versions). UnsupportedFeatureError for a capability the service lacks."""
        if tools is not None or output is not None:  # plain text requests skip the checks
            self._require(tools is not None, "tools", "tool calling")
            self._require(output is not None, "structured_output", "structured output")
            messages = json_turns(messages, output, json_schema=self._json_schema)
        if any(m.parts for m in messages) and any(m.images for m in messages if m.parts):
            self._require(True, "images", "image input")
            check_image_count(messages, self._images)
        turns = chat_messages(messages, images=self._images)
        body: dict[str, Any] = {"model": model, "messages": turns}
        if output is not None:
            write_output(body, output, openai_output_schema, json_schema=self._json_schema)
        if stream:
            body["stream"] = True
            if self._stream_usage if stream_usage is None else stream_usage:
                body["stream_options"] = {"include_usage": True}
        if tools is not None:
            chat_tools(body, tools)
        chat_params(body, params, dialect or self._dialect, notes)
        return body

    def build_embed(
        self, endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
    ) -> HttpRequest:
        """The POST to ``{base_url}/embeddings`` for these inputs."""
        self._require(True, "embeddings", "embeddings endpoint")
        notes: list[str] = []
        body = embed_body(endpoint.model, inputs, params, provider=self.name,
                          base64_wire=self._embed_base64, notes=notes)  # fmt: skip
        return HttpRequest(
            "POST", self.embed_url(endpoint), self.embed_headers(endpoint), body, tuple(notes)
        )

    def embed_url(self, endpoint: Endpoint) -> str:
        """Where an instance's embeddings requests go."""
        base_url = endpoint.base_url or self.default_base_url
        if not base_url:
            raise ConfigurationError(f"{self.name} instances need a base_url")
        return join_url(base_url, "/embeddings")

    def embed_headers(self, endpoint: Endpoint) -> dict[str, str]:
        """The headers of an embeddings request (the key's, JSON)."""
        return bearer_headers(endpoint, False)

    def parse_embed(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Embeddings:
        """The Embeddings in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        return parse_embeddings(response, self.name, response.headers.get(self.request_id_header))

    def _require(self, needed: bool, feature: Capability, what: str) -> None:
        """UnsupportedFeatureError before sending when the request needs ``feature`` and the
        service's API lacks it."""
        if needed and feature not in self.capabilities:
            raise UnsupportedFeatureError(
                f"{self.name} has no {what}; send such requests to another provider",
                provider=self.name,
                feature=feature,
            )

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The Completion in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        rid = response.headers.get(self.request_id_header)
        return parse_chat(response, self.name, rid, self._conclude, self.stream_error)

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A parser for one streamed answer."""
        parser = ChatCompletionsStream(
            self.name, self._conclude, self.stream_error, require_done=self._require_done
        )
        return redacted_stream(parser, endpoint)

    def _conclude(
        self,
        text: str,
        raw: str | None,
        usage: Usage,
        model: str | None,
        request_id: str | None,
        refusal: str,
        tool_calls: tuple[ToolCall, ...] = (),
    ) -> Completion:
        if refusal:
            raise ContentFilterError(
                clip(f"the model refused: {refusal}"),
                status=200,
                provider=self.name,
                request_id=request_id,
                partial_content=text,
            )
        finish = _FINISH.get(raw, "other") if raw else "other"
        if finish == "content_filter":
            raise ContentFilterError(
                "the answer was stopped by the content filter (finish_reason content_filter)",
                status=200,
                provider=self.name,
                request_id=request_id,
                partial_content=text,
            )
        if tool_calls:
            finish = tool_finish(finish, tool_calls)
        return Completion(text, finish, raw, usage, model, request_id, tool_calls)

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (see the module doc for the table)."""
        response = without_secrets(response, endpoint)
        status, headers = response.status, response.headers
        payload = parse_error_body(response.body)
        message, etype, code = _error_fields(payload)
        feature = _unsupported(message or "", code) if 400 <= status < 500 else None
        if feature is not None:
            return UnsupportedFeatureError(
                clip(message or ""),
                feature=feature,
                status=status,
                provider=self.name,
                request_id=headers.get(self.request_id_header),
            )
        cls = _error_class(status, etype, code, message or "")
        retry_after = header_retry_after(headers, self._clock)
        if retry_after is None and status == 429:
            retry_after = self.rate_limit_hint(headers, etype, message or "")
        return make_error(
            cls,
            message or fallback_message(status, response.body),
            status=status,
            provider=self.name,
            headers=headers,
            request_id=headers.get(self.request_id_header),
            retry_after=retry_after,
        )

    def stream_error(self, error: Any) -> ProviderError:
        """The typed error for an ``error`` object that arrived inside a 200 answer: its kind
        from its type or code (``server_error`` -> ServerError, ...)."""
        message, etype, code = _error_fields({"error": error})
        virtual = (
            _TYPE_STATUS.get(code or "")
            or _TYPE_STATUS.get(etype or "")
            or _numeric_status(code)
            or 500
        )
        cls = _error_class(virtual, etype, code, message or "")
        return make_error(
            cls,
            message or f"error event: {brief(error)}",
            status=200,
            provider=self.name,
            headers={},
            request_id=None,
            retry_after=None,
        )

    def rate_limit_hint(
        self, headers: Mapping[str, str], etype: str | None, message: str
    ) -> float | None:
        """The wait a 429 implies when no ``retry-after`` says it: the exhausted window's
        reset in ``x-ratelimit-reset-*``. Sees the whole message (variants read it there)."""
        return _reset_hint(headers, etype)


def _error_fields(payload: Any) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from ``{"error": {...}}``, or the looser shapes compatible servers
    use (``{"error": "text"}``, ``{"message": ...}``, ``{"detail": ...}``)."""
    if not isinstance(payload, dict):
        return None, None, None
    error = payload.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return (
            as_str(error.get("message")),
            as_str(error.get("type")),
            str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        )
    if isinstance(error, str):
        return error, None, None
    return as_str(payload.get("message")) or as_str(payload.get("detail")), None, None


def _unsupported(message: str, code: str | None) -> Capability | None:
    """The capability an error says the model or server lacks: "tools" (OpenAI's
    ``unsupported_parameter`` naming 'tools', or the wording of compatible servers),
    "structured_output" or "images" (see ``unsupported_feature``); None otherwise."""
    if (code == "unsupported_parameter" and "'tools'" in message) or unsupported_tools_message(
        message
    ):
        return "tools"
    feature = unsupported_feature(message)
    return "images" if feature == "images" else "structured_output" if feature else None


def _numeric_status(code: str | None) -> int | None:
    """An HTTP status carried as the error's code (OpenRouter's ``"code": 502``, Azure's
    ``"code": "429"``), else None."""
    if code is not None and code.isdigit() and 400 <= int(code) < 600:
        return int(code)
    return None


def _error_class(
    status: int, etype: str | None, code: str | None, message: str
) -> type[ProviderError]:
    lowered = message.lower()
    if 400 <= status < 500 and (
        code in ("context_length_exceeded", "max_tokens_per_request")  # the latter: embeddings
        or "maximum context length" in lowered
        or "context length exceeded" in lowered
    ):
        return ContextLengthError
    if status == 429:
        quota = "insufficient_quota" in (etype, code)
        return QuotaError if quota else RateLimitError
    if code in ("content_filter", "content_policy_violation") or (
        status == 403 and "flagged" in lowered  # OpenRouter's moderation
    ):
        return ContentFilterError
    if status >= 500 and ("overloaded" in lowered or "slow down" in lowered):
        return OverloadedError
    if code == "model_not_found":
        return NotFoundError
    return error_class_for_status(status)


def _reset_hint(headers: Mapping[str, str], etype: str | None) -> float | None:
    """Seconds until the exhausted window resets, from the Go durations in
    ``x-ratelimit-reset-{requests,tokens}``; the error's type ("tokens"/"requests") says which
    window when the body names it."""
    windows: dict[str, tuple[str | None, float | None]] = {}
    for window in ("requests", "tokens"):
        reset = headers.get(f"x-ratelimit-reset-{window}")
        seconds = go_duration(reset) if reset else None
        windows[window] = (headers.get(f"x-ratelimit-remaining-{window}"), seconds)
    if etype in windows and windows[etype][1] is not None:
        return windows[etype][1]
    return reset_delay(list(windows.values()))


# --- models listing and rate-limit headers -----------------------------------------------

_CONTEXT_KEYS = ("context_window", "context_length", "max_context_length", "max_model_len")


def openai_page(data: Any, provider: str, *, chat_flag: str | None = None) -> Page:
    """``{"object": "list", "data": [...]}`` (or a bare array, as Together sends). Services add
    their own fields: Groq ``context_window`` and ``max_completion_tokens``; Together
    ``display_name``, ``organization`` and ``context_length``; OpenRouter ``name``,
    ``context_length`` and ``top_provider.max_completion_tokens``; vLLM ``max_model_len``;
    Mistral ``name`` and ``max_context_length``; Azure ``created_at``. ``chat_flag`` names the
    capability that says whether a model can chat (Mistral, Azure)."""
    items = data if isinstance(data, list) else items_of(data, "data", provider)
    if not all(isinstance(i, dict) for i in items):
        raise list_malformed(provider, "an entry that is not an object")
    models = []
    for item in items:
        capabilities = item.get("capabilities")
        if chat_flag and isinstance(capabilities, dict) and capabilities.get(chat_flag) is False:
            continue
        top = item.get("top_provider")
        max_output = first(item, ("max_completion_tokens", "max_output_tokens"), whole)
        if max_output is None and isinstance(top, dict):
            max_output = whole(top.get("max_completion_tokens"))
        models.append(
            ModelInfo(
                name_of(item, ("id",), provider),
                provider,
                display_name=first(item, ("display_name", "name"), text),
                created=first(item, ("created", "created_at"), whole),
                owned_by=first(item, ("owned_by", "organization"), text),
                context_window=first(item, _CONTEXT_KEYS, whole),
                max_output_tokens=max_output,
                raw=item,
            )
        )
    return models, None


OPENAI_MODELS = ModelListing(path_url("/models"), openai_page)
"""``GET {base}/models``, one page; every model is listed (the list does not say which chat)."""

OPENAI_RATE_LIMITS = RateLimitHeaders(
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    lambda value, _clock: go_duration(value),
)
"""OpenAI's (and most OpenAI-compatible servers') headers, with Go-style reset durations."""

SPEC = ProviderSpec(
    ProviderType.OPENAI,
    OpenAIProvider(embeddings=True, embed_base64=True),
    bearer_auth,
    OPENAI_MODELS,
    base_url_env="OPENAI_BASE_URL",
    rate_limits=OPENAI_RATE_LIMITS,
)
"""OpenAI itself."""

COMPATIBLE_SPEC = ProviderSpec(
    ProviderType.OPENAI_COMPATIBLE,
    OpenAIProvider.compatible(),
    bearer_auth,
    OPENAI_MODELS,
    aliases=("openai-compatible",),
    key_required=False,
    rate_limits=OPENAI_RATE_LIMITS,
)
"""Any OpenAI-compatible server: no default base URL, the key optional."""
