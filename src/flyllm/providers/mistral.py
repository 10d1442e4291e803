"""Mistral chat completions (``POST {base}/v1/chat/completions``, base ``https://api.mistral.ai``).

The format is OpenAI's chat completions with a strict schema (unknown fields are a 422), so the
shared pieces come from :mod:`flyllm.providers.openai` and only the differences live here.

Parameters (flyllm name -> wire):

=============  ================================================================
flyllm         mistral
=============  ================================================================
max_tokens     ``max_tokens``
temperature    ``temperature``, [0, 1.5] (the API's documented range; Mistral
               recommends 0-0.7 and some models reject > 1 with a 422)
top_p          ``top_p``, [0, 1]
top_k          left out (not in the API)
stop           ``stop``, all kept
seed           ``random_seed``
other          top level, unchanged (Mistral rejects unknown fields with 422)
=============  ================================================================

Streams add ``"stream": true`` only: usage always rides on the chunk with the finish_reason.
Content may be a string or a list of chunks (reasoning models): only ``text`` chunks count.
Finish: stop -> stop, length/model_length -> length, tool_calls -> tool_calls, others -> other;
``error`` raises ServerError (retryable: the model failed mid-answer).

Tools: OpenAI's shapes, except that "required" is sent as ``tool_choice: "any"``, every call id
(of a call and of its result alike) is rewritten to nine letters and digits (``short_id``:
valid ids kept, others digested), and results carry the tool's ``name``. Streams send whole
calls (one delta each). "Function calling is not enabled" answers raise
UnsupportedFeatureError(feature="tools").

Structured output: ``response_format: {type: "json_schema", json_schema: {name, schema,
strict, description?}}`` (strict closes every object with ``additionalProperties: false``, as
the mistralai SDK's helper does: :func:`output_schema`), ``{type: "json_object"}`` for "json"
(with a system turn asking for JSON when no turn says it, as Mistral's docs require). Images:
``{type: "image_url", image_url: {url, detail?}}`` (a data URI for bytes); PNG, JPEG, WEBP and
still GIF, at most 10 MB each and 8 a request, checked before sending.

Errors: bodies are ``{"object":"error","message":...,"type","code"}`` where ``message`` may be an
object ``{"detail":[{loc,msg,...}]}`` (rendered as "body.field: msg"), or the gateway's
``{"message": "..."}``. 400/422 bad request (``invalid_model`` -> NotFoundError; "too large for
model"/"context length" -> ContextLengthError), 401 authentication, 403 permission, 404 not
found, 429 rate limit (``service_tier_capacity_exceeded`` -> OverloadedError: the provider is
out of capacity, not this key; a "monthly" limit -> QuotaError: it will not clear soon), 503
overloaded, 504 timeout, other 5xx server. ``retry_after`` from ``retry-after-ms`` /
``retry-after``.

Embeddings (``POST {base}/v1/embeddings``): see :mod:`flyllm.providers.mistral_embed`; "too
many tokens" (a request over 16,384 tokens) is a ContextLengthError too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import (
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    OverloadedError,
    ProviderError,
    QuotaError,
    RateLimitError,
    ServerError,
    UnsupportedFeatureError,
)
from flyllm.params import OutputFormat
from flyllm.providers._common import (
    ClockedProvider,
    as_str,
    bearer_auth,
    bearer_headers,
    brief,
    clip,
    dumps,
    error_class_for_status,
    fallback_message,
    header_retry_after,
    join_url,
    make_error,
    parse_error_body,
    redacted_stream,
    without_secrets,
)
from flyllm.providers._listing import path_url
from flyllm.providers._tools import short_id, unsupported_tools_message
from flyllm.providers.base import (
    ALL_CAPABILITIES,
    Completion,
    EmbeddingLimits,
    Embeddings,
    Endpoint,
    HttpRequest,
    HttpResponse,
    ModelListing,
    ProviderSpec,
    StreamParser,
    ToolSet,
)
from flyllm.providers.chat_output import (
    MB,
    ImageRules,
    check_image_count,
    json_turns,
    mistral_output_schema,
    unsupported_feature,
    write_output,
)
from flyllm.providers.chat_stream import tool_finish
from flyllm.providers.mistral_embed import MISTRAL_EMBEDDING_LIMITS, embed_body, parse_vectors
from flyllm.providers.openai import (
    ChatCompletionsStream,
    ChatDialect,
    chat_messages,
    chat_params,
    chat_tools,
    openai_page,
    parse_chat,
)
from flyllm.types import Capability, FinishReason, Message, ProviderType, ToolCall, Usage

__all__ = ["MISTRAL_BASE_URL", "MISTRAL_IMAGES", "SPEC", "MistralProvider", "output_schema"]

MISTRAL_BASE_URL = "https://api.mistral.ai"
"""The official SDK's default server; requests go to ``{base}/v1/chat/completions``."""

MISTRAL_IMAGES = ImageRules(
    "mistral",
    frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"}),
    max_bytes=10 * MB,
    max_images=8,
)
"""Mistral's vision limits: PNG, JPEG, WEBP and still GIF, 10 MB an image, 8 a request."""

output_schema = mistral_output_schema

_DIALECT = ChatDialect("mistral", "max_tokens", 1.5, None, "random_seed")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
}

_TYPE_STATUS = {
    "invalid_request_error": 400,
    "invalid_model": 400,
    "service_tier_capacity_exceeded": 429,
}


class MistralProvider(ClockedProvider):
    """The Mistral chat-completions wire format; stateless, shared by every instance.
    ``clock`` (epoch seconds) dates the HTTP-date form of ``retry-after``."""

    name = "mistral"
    default_base_url = MISTRAL_BASE_URL
    stream_framing = "sse"
    capabilities: frozenset[Capability] = ALL_CAPABILITIES | {"embeddings"}
    embedding_limits: EmbeddingLimits = MISTRAL_EMBEDDING_LIMITS

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
        """The POST to ``{base_url}/v1/chat/completions`` for this conversation."""
        notes: list[str] = []
        if any(m.parts and m.images for m in messages):
            check_image_count(messages, MISTRAL_IMAGES)
        messages = json_turns(messages, output)
        turns = chat_messages(messages, call_id=short_id, name_results=True, images=MISTRAL_IMAGES)
        body: dict[str, Any] = {"model": endpoint.model, "messages": turns}
        write_output(body, output, mistral_output_schema)
        if stream:
            body["stream"] = True
        if tools is not None:
            chat_tools(body, tools, required="any")
        chat_params(body, params, _DIALECT, notes)
        url = join_url(endpoint.base_url or MISTRAL_BASE_URL, "/v1/chat/completions")
        return HttpRequest("POST", url, bearer_headers(endpoint, stream), dumps(body), tuple(notes))

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The Completion in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        return parse_chat(response, self.name, None, self._conclude, self._payload_error)

    def build_embed(
        self, endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
    ) -> HttpRequest:
        """The POST to ``{base_url}/v1/embeddings`` for these inputs."""
        notes: list[str] = []
        body = embed_body(endpoint.model, inputs, params, notes)
        url = join_url(endpoint.base_url or MISTRAL_BASE_URL, "/v1/embeddings")
        return HttpRequest("POST", url, bearer_headers(endpoint, False), body, tuple(notes))

    def parse_embed(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Embeddings:
        """The Embeddings in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        return parse_vectors(response, response.headers.get("mistral-correlation-id"))

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A parser for one streamed answer (usage arrives on the finish chunk)."""
        parser = ChatCompletionsStream(self.name, self._conclude, self._payload_error)
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
        if refusal:  # not in Mistral's schema today; kept for parity with the shared parser
            raise ContentFilterError(
                clip(f"the model refused: {refusal}"),
                status=200,
                provider=self.name,
                partial_content=text,
            )
        if raw == "error":
            raise ServerError(
                "the model stopped with finish_reason error",
                status=200,
                provider=self.name,
                request_id=request_id,
                partial_content=text,
            )
        finish = tool_finish(_FINISH.get(raw, "other") if raw else "other", tool_calls)
        return Completion(text, finish, raw, usage, model, request_id, tool_calls)

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (see the module doc for the table)."""
        response = without_secrets(response, endpoint)
        status, headers = response.status, response.headers
        payload = parse_error_body(response.body)
        message, etype, rid = _error_fields(payload)
        feature = _unsupported(message or "") if 400 <= status < 500 else None
        if feature is not None:
            return UnsupportedFeatureError(
                clip(message or ""),
                feature=feature,
                status=status,
                provider=self.name,
                request_id=rid or headers.get("x-request-id"),
            )
        return make_error(
            _error_class(status, etype, message or ""),
            message or fallback_message(status, response.body),
            status=status,
            provider=self.name,
            headers=headers,
            request_id=rid or headers.get("x-request-id"),
            retry_after=header_retry_after(headers, self._clock),
        )

    def _payload_error(self, payload: Any) -> ProviderError:
        """The typed error for an error object inside a 200 answer."""
        if not isinstance(payload, dict):
            payload = {"message": payload}
        elif "message" not in payload and "type" not in payload and "error" in payload:
            payload = payload["error"] if isinstance(payload["error"], dict) else payload
        message, etype, _ = _error_fields(payload)
        raw_status = payload.get("raw_status_code")
        virtual = raw_status if type(raw_status) is int else _TYPE_STATUS.get(etype or "", 500)
        return make_error(
            _error_class(virtual, etype, message or ""),
            message or f"error event: {brief(payload)}",
            status=200,
            provider=self.name,
            headers={},
            request_id=None,
            retry_after=None,
        )


def _unsupported(message: str) -> str | None:
    """The capability an error says the model lacks ("tools", "structured_output",
    "images": Mistral's "does not support vision"), or None."""
    if unsupported_tools_message(message):
        return "tools"
    return unsupported_feature(message)


def _error_fields(payload: Any) -> tuple[str | None, str | None, str | None]:
    """(readable message, type, request id) from Mistral's API, validation or gateway shapes."""
    if not isinstance(payload, dict):
        return None, None, None
    message = payload.get("message")
    if message is None and "detail" in payload:  # a bare FastAPI validation body
        message = {"detail": payload["detail"]}
    return _message_text(message), as_str(payload.get("type")), as_str(payload.get("request_id"))


def _message_text(message: Any) -> str | None:
    """``message`` as text: a string as is; ``{"detail": [...]}`` as "body.field: msg"."""
    if isinstance(message, str):
        return message
    if not isinstance(message, dict):
        return None
    detail = message.get("detail")
    if isinstance(detail, str):
        return detail
    if not isinstance(detail, list) or not detail:
        return brief(message)
    first = detail[0]
    if isinstance(first, dict):
        loc = first.get("loc")
        where = ".".join(_part(p) for p in loc[:20]) if isinstance(loc, list) else ""
        msg = as_str(first.get("msg")) or as_str(first.get("type")) or "invalid"
        text = f"{where}: {msg}" if where else msg
    else:
        text = brief(first)
    more = len(detail) - 1
    return f"{text} (and {more} more)" if more else text


def _part(segment: Any) -> str:
    """One segment of a validation error's ``loc`` path."""
    return clip(str(segment), 60) if isinstance(segment, str | int) else "?"


def _error_class(status: int, etype: str | None, message: str) -> type[ProviderError]:
    if etype == "invalid_model":
        return NotFoundError
    lowered = message.lower()
    if 400 <= status < 500 and ("too large for model" in lowered or "context length" in lowered):
        return ContextLengthError
    if status == 400 and "too many tokens" in lowered:  # embeddings: over 16,384 a request
        return ContextLengthError
    if status == 429:
        if etype == "service_tier_capacity_exceeded":
            return OverloadedError
        return QuotaError if "monthly" in lowered else RateLimitError
    return error_class_for_status(status)


SPEC = ProviderSpec(
    ProviderType.MISTRAL,
    MistralProvider(),
    bearer_auth,
    ModelListing(
        path_url("/v1/models"), functools.partial(openai_page, chat_flag="completion_chat")
    ),
    base_url_env="MISTRAL_BASE_URL",  # ours: the official SDK reads none
)
"""Mistral: ``GET {base}/v1/models``, one page, without the models whose
``capabilities.completion_chat`` is false; no rate-limit headers relied on (undocumented)."""
