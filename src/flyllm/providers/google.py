"""Google Gemini ``generateContent`` (Generative Language API).

URL: ``{base}/{api_version}/models/{model}:generateContent``, streams
``:streamGenerateContent?alt=sse``; base ``https://generativelanguage.googleapis.com``,
api_version ``v1`` by default (what google-genai 3.x calls), ``v1beta`` (or any other) when the
endpoint asks. A model may be given as a resource path ("models/x", "tunedModels/y"); the name
is percent-encoded into one path segment either way, so "?", "#", "/" or ".." in it cannot move
the URL.
Auth: ``x-goog-api-key``. System messages become ``systemInstruction.parts``; the other turns
become ``contents`` with roles user/model (consecutive same-role turns merged into one turn with
several parts, as Gemini wants alternating turns).

Parameters (flyllm name -> wire):

=============  ==========================================
flyllm         google
=============  ==========================================
max_tokens     ``generationConfig.maxOutputTokens``
temperature    ``generationConfig.temperature``, [0, 2]
top_p          ``generationConfig.topP``, [0, 1]
top_k          ``generationConfig.topK``, >= 1
stop           ``generationConfig.stopSequences``, first 5 kept
seed           ``generationConfig.seed``
other          top level, unchanged (a mapping given for ``generationConfig`` is merged)
=============  ==========================================

Tools (see :mod:`flyllm.providers._google_tools`): ``tools[].functionDeclarations`` with
``parametersJsonSchema``, ``toolConfig.functionCallingConfig`` (AUTO, NONE, ANY, ANY with
``allowedFunctionNames``; no parallel switch exists, none is sent); assistant calls become
``functionCall`` parts (with their ids and thought signatures; the documented dummy signature
for Gemini 3 when a call has none), results ``functionResponse`` parts of a user turn. Answers'
``functionCall`` parts become ToolCalls (ids kept, canonical ones made when absent; the part's
``thoughtSignature`` in ``provider_data["google"]``), one whole delta each in streams; "Function
calling is not enabled for models/..." is UnsupportedFeatureError(feature="tools").

Structured output (:mod:`flyllm.providers._google_output`): ``generationConfig.responseMimeType``
"application/json", with ``responseJsonSchema`` (the schema rewritten into Gemini's documented
subset, or refused saying why) for a schema; beside tools on models before Gemini 3 (which
answer "Function calling with a response mime type: 'application/json' is unsupported") the
schema goes into ``systemInstruction`` as words instead, and flyllm validates. Images
(:mod:`flyllm.providers._google_media`): ``inlineData`` parts for bytes (PNG, JPEG, WEBP, HEIC,
HEIF; 100 MB of inline data per request), ``fileData`` for ``gs://`` and Gemini File API URIs
(:meth:`GoogleProvider.accepts_image_url`). "Json mode is not enabled" / "Image input modality
is not enabled" 400s are UnsupportedFeatureError("structured_output" / "images").

Answers: text is the concatenation of ``candidates[0].content.parts[].text``, skipping
``thought: true`` parts (parts may hold only a thoughtSignature or a functionCall). Finish: STOP
-> stop (tool_calls when a functionCall part came), MAX_TOKENS -> length; the filter reasons
SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT
and IMAGE_RECITATION raise ContentFilterError (with any partial text), as does a blocked prompt
(HTTP 200, no candidates, ``promptFeedback.blockReason``); every other reason (LANGUAGE, OTHER,
MALFORMED_FUNCTION_CALL...) -> other. Usage: prompt = promptTokenCount, completion =
candidatesTokenCount + thoughtsTokenCount (thoughts are billed as output), total =
totalTokenCount (or the sum), cached = cachedContentTokenCount; absent counters are 0.

Errors (google.rpc.Status): 400 INVALID_ARGUMENT bad request, except an invalid key
(``details[].reason`` API_KEY_INVALID or "API key not valid") -> AuthenticationError and "input
token count ... exceeds the maximum" -> ContextLengthError; 400 FAILED_PRECONDITION (region or
billing) -> PermissionDeniedError; 401 authentication; 403 permission; 404 not found; 429
RESOURCE_EXHAUSTED -> RateLimitError, or QuotaError when a QuotaFailure violation is a per-day
quota (it will not clear in seconds); 499 CANCELLED connection; 500 server; 503 UNAVAILABLE ->
OverloadedError; 504 DEADLINE_EXCEEDED timeout. ``retry_after``: ``retry-after-ms``,
``retry-after``, then the body's RetryInfo ``retryDelay`` ("34.4s").

Embeddings (``:batchEmbedContents``, the "embeddings" capability): see
:mod:`flyllm.providers.google_embed`.

Streams end at EOF (no sentinel): ``done`` means a finishReason was seen, and ``finish`` raises
StreamInterruptedError if none ever was. Old models repeat STOP on every chunk, so a finishReason
is not treated as the end. ``usageMetadata`` is a cumulative snapshot (the last one wins). Errors
after HTTP 200 come as ``{"error": ...}`` either in a ``data:`` event or as bare JSON lines; the
decoder reports the latter as NON_SSE_LINE events and :class:`GeminiStream` reassembles them
(brace-balancing like python-genai) and raises the classified error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from flyllm.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    QuotaError,
    RateLimitError,
    StreamInterruptedError,
    UnsupportedFeatureError,
)
from flyllm.params import OutputFormat
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
    loads,
    make_error,
    malformed,
    parse_error_body,
    proto_duration,
    redacted_stream,
    served_model,
    stop_sequences,
    without_secrets,
    wrong_type,
)
from flyllm.providers._google_media import accepts_image_url, check_inline_size
from flyllm.providers._google_output import json_with_tools, output_config, output_instruction
from flyllm.providers._google_tools import (
    FAMILY,
    MAX_CALLS,
    GeminiParts,
    gemini_contents,
    read_parts,
    signed,
    to_tool_call,
    tool_fields,
)
from flyllm.providers._listing import items_of, name_of, paged_url, text, whole
from flyllm.providers._tools import ToolCallAssembler, new_call_id, unsupported_tools_message
from flyllm.providers.base import (
    ALL_CAPABILITIES,
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
from flyllm.providers.google_embed import GOOGLE_EMBEDDING_LIMITS, too_large
from flyllm.providers.google_embed import embed_body as google_embed_body
from flyllm.providers.google_embed import parse_embeddings as google_embeddings
from flyllm.types import Capability, FinishReason, Message, ProviderType, ToolCall, Usage

__all__ = [
    "DEFAULT_GOOGLE_VERSION",
    "GOOGLE_BASE_URL",
    "SPEC",
    "GeminiStream",
    "GoogleProvider",
    "google_auth",
]

GOOGLE_BASE_URL = "https://generativelanguage.googleapis.com"
"""The official SDK's default base URL; the API version and model path follow it."""

DEFAULT_GOOGLE_VERSION = "v1"
"""The API version used when the endpoint names none (google-genai 3.x's default)."""

FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
"""The finishReasons that mean the content was blocked: they raise ContentFilterError."""

_RPC_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

_RESERVED = frozenset({"model", "contents", "stream"})
_RESOURCE_KINDS = ("models", "tunedModels")  # "models/x" and "tunedModels/y" name resources
_MAX_BARE_LINES = 10_000  # bare JSON longer than this is not an error object; stop collecting


def model_path(model: str) -> str:
    """The URL path of a model, each name percent-encoded into one segment (``?``, ``#``, ``/``
    and ``..`` cannot move the URL): "models/{name}", or "tunedModels/{name}" when given so.
    ConfigurationError for an empty name."""
    kind, slash, name = model.partition("/")
    if not (slash and kind in _RESOURCE_KINDS):
        kind, name = "models", model
    if not name:
        raise ConfigurationError(f"google model {model!r} has no name")
    return f"{kind}/{quote(name, safe='')}"


def gemini_usage(meta: Any) -> Usage:
    """Usage from ``usageMetadata`` (counters that are zero are omitted by the API)."""
    if not isinstance(meta, dict):
        return Usage()
    prompt = count(meta.get("promptTokenCount"))
    completion = count(meta.get("candidatesTokenCount")) + count(meta.get("thoughtsTokenCount"))
    total = count(meta.get("totalTokenCount")) or prompt + completion
    return Usage(prompt, completion, total, count(meta.get("cachedContentTokenCount")))


class GoogleProvider(ClockedProvider):
    """The Gemini generateContent wire format; stateless, shared by every instance. ``clock``
    (epoch seconds) dates the HTTP-date form of ``retry-after``."""

    name = "google"
    default_base_url = GOOGLE_BASE_URL
    stream_framing = "sse"
    capabilities: frozenset[Capability] = ALL_CAPABILITIES | {"embeddings"}
    embedding_limits: EmbeddingLimits = GOOGLE_EMBEDDING_LIMITS
    image_url_schemes = frozenset({"gs"})
    """``gs://`` only: Gemini File API URIs are https, like the URLs it does not fetch, so
    :meth:`accepts_image_url` tells them apart."""

    def accepts_image_url(self, url: str) -> bool:
        """True for an image URL Gemini fetches itself (``gs://`` and Gemini File API URIs);
        any other must be downloaded and sent as bytes."""
        return accepts_image_url(url)

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
        """The POST to ``.../models/{model}:generateContent`` (or the SSE stream URL).
        InvalidRequestError for an image Gemini does not take (format, URL, inline size) or
        a ``response_format`` schema it cannot follow."""
        check_inline_size(messages)
        system, contents = gemini_contents(messages, endpoint.model)
        instructed = (
            output is not None and tools is not None and not json_with_tools(endpoint.model)
        )
        if instructed:  # Gemini 1.x/2.x refuse JSON mode beside tools: ask in words instead
            assert output is not None
            system.append({"text": output_instruction(output)})
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        if tools is not None:
            body.update(tool_fields(tools))
        notes: list[str] = []
        self._params(body, params, notes)
        if output is not None and not instructed:
            config = body.get("generationConfig")
            body["generationConfig"] = {
                **(config if isinstance(config, dict) else {}),
                **output_config(output),
            }
        headers = json_headers(endpoint, stream, google_auth)
        model = model_path(endpoint.model)
        method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        version = endpoint.api_version or DEFAULT_GOOGLE_VERSION
        url = join_url(endpoint.base_url or GOOGLE_BASE_URL, f"/{version}/{model}{method}")
        return HttpRequest("POST", url, headers, dumps(body), tuple(notes))

    def build_embed(
        self, endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
    ) -> HttpRequest:
        """The POST to ``.../models/{model}:batchEmbedContents`` for these inputs."""
        notes: list[str] = []
        model = model_path(endpoint.model)
        body = google_embed_body(endpoint.model, model, inputs, params, notes)
        version = endpoint.api_version or DEFAULT_GOOGLE_VERSION
        url = join_url(
            endpoint.base_url or GOOGLE_BASE_URL, f"/{version}/{model}:batchEmbedContents"
        )
        headers = json_headers(endpoint, False, google_auth)
        return HttpRequest("POST", url, headers, body, tuple(notes))

    def parse_embed(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Embeddings:
        """The Embeddings in a 2xx answer; the classified error otherwise (too large: a
        ContextLengthError)."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise too_large(self.classify_error(response))
        return google_embeddings(response, self.name)

    def _params(self, body: dict[str, Any], params: Mapping[str, Any], notes: list[str]) -> None:
        config: dict[str, Any] = {}
        extras: list[tuple[str, Any]] = []
        for key, value in params.items():
            if value is None:
                continue
            if key == "max_tokens":
                config["maxOutputTokens"] = at_least(key, value, 1, "google", notes)
            elif key == "temperature":
                config["temperature"] = clamp(key, value, 0.0, 2.0, "google", notes)
            elif key == "top_p":
                config["topP"] = clamp(key, value, 0.0, 1.0, "google", notes)
            elif key == "top_k":
                config["topK"] = at_least(key, value, 1, "google", notes)
            elif key == "stop":
                stops = stop_sequences(value, 5, "google", notes)
                if stops:
                    config["stopSequences"] = stops
            elif key == "seed":
                config["seed"] = value
            elif key in _RESERVED:
                left_out(key, "google", notes, "is set by flyllm")
            else:
                extras.append((key, value))
        if config:
            body["generationConfig"] = config
        for key, value in extras:
            add_extra(body, key, value)

    def parse(self, response: HttpResponse, endpoint: Endpoint | None = None) -> Completion:
        """The Completion in a 2xx answer; the classified error otherwise."""
        response = without_secrets(response, endpoint)
        if not 200 <= response.status < 300:
            raise self.classify_error(response)
        data = load_object(response, self.name, None)
        if data.get("error") is not None:
            raise self.stream_error(data["error"])
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise self.blocked_prompt(data) or malformed("no candidates", self.name, response)
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise malformed("a candidate that is not an object", self.name, response)
        if candidate.get("content") is None and candidate.get("finishReason") is None:
            raise malformed("a candidate with neither content nor finishReason", self.name)
        parts = read_parts(candidate.get("content"))
        return self.conclude(
            parts,
            as_str(candidate.get("finishReason")),
            gemini_usage(data.get("usageMetadata")),
            served_model(data.get("modelVersion")),
            as_str(candidate.get("finishMessage")),
            tuple(to_tool_call(c, c.id or new_call_id()) for c in parts.calls),
        )

    def blocked_prompt(self, data: Mapping[str, Any]) -> ContentFilterError | None:
        """The error for a blocked prompt (no candidates, ``promptFeedback.blockReason``)."""
        feedback = data.get("promptFeedback")
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if not isinstance(reason, str):
            return None
        detail = as_str(feedback.get("blockReasonMessage")) if feedback else None
        return ContentFilterError(
            clip(
                f"the prompt was blocked (blockReason {reason})" + (f": {detail}" if detail else "")
            ),
            status=200,
            provider=self.name,
        )

    def conclude(
        self,
        parts: GeminiParts,
        raw: str | None,
        usage: Usage,
        model: str | None,
        finish_message: str | None,
        calls: tuple[ToolCall, ...],
    ) -> Completion:
        """The Completion for a finished answer (``parts`` its text and text signature,
        ``calls`` its function calls as ToolCalls); ContentFilterError for a filter reason."""
        text = parts.text
        finish: FinishReason
        if raw == "STOP":
            finish = "tool_calls" if calls else "stop"
        elif raw == "MAX_TOKENS":
            finish = "length"
        elif raw in FILTER_REASONS:
            detail = f": {finish_message}" if finish_message else ""
            raise ContentFilterError(
                clip(f"the answer was blocked (finishReason {raw}){detail}"),
                status=200,
                provider=self.name,
                partial_content=text,
            )
        else:
            finish = "other"
        return Completion(text, finish, raw, usage, model, None, calls, signed(parts.signature))

    def stream_parser(self, endpoint: Endpoint | None = None) -> StreamParser:
        """A parser for one streamed answer."""
        return redacted_stream(GeminiStream(self), endpoint)

    def classify_error(
        self, response: HttpResponse, endpoint: Endpoint | None = None
    ) -> ProviderError:
        """The typed error for a failed response (see the module doc for the table)."""
        response = without_secrets(response, endpoint)
        status, headers = response.status, response.headers
        error = _error_object(parse_error_body(response.body))
        message = as_str(error.get("message"))
        retry_after = header_retry_after(headers, self._clock)
        if retry_after is None:
            retry_after = _retry_delay(error)
        return _typed(
            _error_class(status, error, message or ""),
            message or fallback_message(status, response.body),
            status,
            headers,
            retry_after,
        )

    def stream_error(self, error: Any) -> ProviderError:
        """The typed error for an ``error`` object inside a 200 answer: its kind from its
        ``code`` (an HTTP status) or, failing that, its RPC ``status``."""
        if not isinstance(error, dict):
            error = {"message": error if isinstance(error, str) else brief(error)}
        code = error.get("code")
        virtual = code if type(code) is int and 400 <= code < 600 else 0
        virtual = virtual or _RPC_STATUS.get(as_str(error.get("status")) or "", 500)
        message = as_str(error.get("message"))
        return _typed(
            _error_class(virtual, error, message or ""),
            message or f"error event: {brief(error)}",
            200,
            {},
            _retry_delay(error),
        )


def _typed(
    cls: type[ProviderError],
    message: str,
    status: int,
    headers: Mapping[str, str],
    retry_after: float | None,
) -> ProviderError:
    """The error of class ``cls`` (UnsupportedFeatureError names the feature its message
    says the model lacks)."""
    if cls is UnsupportedFeatureError:
        return UnsupportedFeatureError(
            clip(message),
            feature=unsupported_feature(message) or "tools",
            status=status,
            provider=FAMILY,
            retryable=False,
        )
    return make_error(
        cls,
        message,
        status=status,
        provider=FAMILY,
        headers=headers,
        request_id=None,
        retry_after=retry_after,
    )


def _error_object(payload: Any) -> dict[str, Any]:
    """The ``error`` object of a google.rpc.Status body (also inside a one-element list)."""
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    return {}


def _details(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict)]


def _error_class(status: int, error: Mapping[str, Any], message: str) -> type[ProviderError]:
    lowered = message.lower()
    details = _details(error)
    rpc = error.get("status")
    if status == 400 or rpc == "INVALID_ARGUMENT":
        if "api key not valid" in lowered or any(
            d.get("reason") == "API_KEY_INVALID" for d in details
        ):
            return AuthenticationError
        if "input token count" in lowered and "exceeds the maximum" in lowered:
            return ContextLengthError
        if unsupported_feature(message):
            return UnsupportedFeatureError
    if rpc == "FAILED_PRECONDITION":
        return PermissionDeniedError
    if status == 429 or rpc == "RESOURCE_EXHAUSTED":
        return QuotaError if _per_day_quota(details) else RateLimitError
    if status == 503 or rpc == "UNAVAILABLE":
        return OverloadedError
    return error_class_for_status(status)


_NO_JSON_MODE = re.compile(
    r"json mode is not enabled|response_?mime_?type.{0,40}(?:is )?(?:not supported|unsupported)"
    r"|response_?(?:json_?)?schema.{0,40}(?:is )?(?:not supported|unsupported)",
    re.IGNORECASE,
)
_NO_IMAGES = re.compile(
    r"image input modality is not enabled|(?:image|multimodal) input is not supported",
    re.IGNORECASE,
)


def unsupported_feature(message: str) -> Capability | None:
    """The capability a 400's message says the model lacks: "tools" ("Function calling is
    not enabled for models/..."), "structured_output" ("Json mode is not enabled for
    models/...", a response mime type or schema "is unsupported") or "images" ("Image input
    modality is not enabled for models/..."); None for any other message."""
    if _NO_JSON_MODE.search(message):
        return "structured_output"
    if _NO_IMAGES.search(message):
        return "images"
    if unsupported_tools_message(message):
        return "tools"
    return None


def _per_day_quota(details: list[dict[str, Any]]) -> bool:
    """True when a QuotaFailure violation names a per-day quota (``...PerDay...``)."""
    for detail in details:
        violations = detail.get("violations")
        if isinstance(violations, list):
            for violation in violations:
                if isinstance(violation, dict):
                    quota = as_str(violation.get("quotaId")) or ""
                    if "perday" in quota.lower():
                        return True
    return False


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    """Seconds from a RetryInfo detail's ``retryDelay`` ("34.4s")."""
    for detail in _details(error):
        if "retryDelay" in detail:
            return proto_duration(detail["retryDelay"])
    return None


class GeminiStream:
    """StreamParser for Gemini's SSE chunks (each a GenerateContentResponse); see the module
    doc for the end-of-stream rule and the bare-JSON errors."""

    __slots__ = (
        "_bare",
        "_calls",
        "_depth",
        "_finish",
        "_finish_message",
        "_model",
        "_parts",
        "_provider",
        "_signature",
        "_usage",
    )

    def __init__(self, provider: GoogleProvider) -> None:
        self._provider = provider
        self._parts: list[str] = []
        self._finish: str | None = None
        self._finish_message: str | None = None
        self._usage = Usage()
        self._model: str | None = None
        self._calls = ToolCallAssembler()
        self._signature: str | None = None  # the last text part's thought signature
        self._bare: list[str] = []  # lines of a bare JSON payload being reassembled
        self._depth = 0

    @property
    def done(self) -> bool:
        """True once a finishReason has been seen (the stream itself ends at EOF)."""
        return self._finish is not None

    def feed(self, event: SseEvent) -> str | Delta:
        """The text this chunk adds, or a Delta when it carries function calls (whole: one
        ToolCallDelta each); raises the classified error for an error payload and
        ContentFilterError for a blocked prompt."""
        if event.event == NON_SSE_LINE:
            return self._bare_line(event.data)
        return self._chunk(load_event(event.data, "google"))

    def _chunk(self, obj: Any, nested: bool = False) -> str | Delta:
        if isinstance(obj, list) and not nested:  # the non-SSE array form, one level deep
            outs = [self._chunk(item, nested=True) for item in obj]
            if all(isinstance(out, str) for out in outs):
                return "".join([out for out in outs if isinstance(out, str)])
            return Delta(
                "".join([out if isinstance(out, str) else out.text for out in outs]),
                tuple(d for out in outs if isinstance(out, Delta) for d in out.tool_calls),
            )
        if not isinstance(obj, dict):
            raise malformed("a stream event that is not an object", "google")
        if obj.get("error") is not None:
            raise self._failed(obj["error"])
        usage = obj.get("usageMetadata")
        if usage:
            self._usage = gemini_usage(usage)
        if self._model is None:
            self._model = served_model(obj.get("modelVersion"))
        candidates = obj.get("candidates")
        if candidates is not None and not isinstance(candidates, list):
            raise wrong_type("candidates", candidates, "google")
        if not candidates:
            blocked = self._provider.blocked_prompt(obj)
            if blocked is not None:
                blocked.partial_content = "".join(self._parts)
                raise blocked
            return ""
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise wrong_type("candidates[0]", candidate, "google")
        reason = candidate.get("finishReason")
        if isinstance(reason, str):
            self._finish = reason
            self._finish_message = as_str(candidate.get("finishMessage"))
        parts = read_parts(candidate.get("content"))
        text = parts.text
        if text:
            self._parts.append(text)
        if parts.signature:
            self._signature = parts.signature
        if not parts.calls:
            return text
        deltas = tuple(
            self._calls.whole(c.id, c.name, c.args, c.provider_data) for c in parts.calls
        )
        if deltas[-1].index >= MAX_CALLS:
            raise malformed(f"more than {MAX_CALLS} function calls", "google")
        return Delta(text, deltas)

    def _failed(self, error: Any) -> ProviderError:
        err = self._provider.stream_error(error)
        err.partial_content = "".join(self._parts)
        return err

    def _bare_line(self, line: str) -> str | Delta:
        """Collect a line of bare JSON; once its brackets balance and it parses, handle it as a
        chunk (normally it is ``{"error": ...}``, which raises)."""
        if not self._bare and not line.lstrip().startswith(("{", "[")):
            return ""  # not JSON: the SSE rules say ignore it
        self._bare.append(line)
        self._depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
        if self._depth > 0:
            if len(self._bare) > _MAX_BARE_LINES:
                self._bare, self._depth = [], 0
            return ""
        try:
            obj = loads("\n".join(self._bare))
        except ValueError:
            return ""  # brackets inside strings fooled the count: wait for more lines
        self._bare, self._depth = [], 0
        return self._chunk(obj)

    def finish(self) -> Completion:
        """The whole answer at EOF; StreamInterruptedError when no finishReason ever came."""
        text = "".join(self._parts)
        if self._bare:
            try:
                obj = loads("\n".join(self._bare))
            except ValueError:
                obj = None
            self._bare = []
            if isinstance(obj, dict) and obj.get("error") is not None:
                raise self._failed(obj["error"])
        if self._finish is None:
            raise StreamInterruptedError(
                f"google stream ended without a finishReason ({len(text)} characters received)",
                status=200,
                provider="google",
                partial_content=text,
            )
        return self._provider.conclude(
            GeminiParts(text, signature=self._signature),
            self._finish,
            self._usage,
            self._model,
            self._finish_message,
            self._calls.calls(),
        )


def google_auth(endpoint: Endpoint) -> dict[str, str]:
    """``x-goog-api-key`` (none for an empty key)."""
    return {"x-goog-api-key": endpoint.api_key} if endpoint.api_key else {}


def _models_url(endpoint: Endpoint, cursor: str | None) -> str:
    version = endpoint.api_version or DEFAULT_GOOGLE_VERSION
    return paged_url(endpoint, f"/{version}/models", cursor, ("pageSize", "pageToken"))


def _models_page(data: Any, provider: str) -> Page:
    """``{"models": [{"name": "models/x", "displayName", "inputTokenLimit",
    "outputTokenLimit", "supportedGenerationMethods"}], "nextPageToken"}``; an empty page
    omits ``models``. Only generateContent models, ids without ``models/``."""
    models = []
    for item in items_of(data, "models", provider, required=False):
        name = name_of(item, ("name",), provider)
        methods = item.get("supportedGenerationMethods")
        if not isinstance(methods, list) or "generateContent" not in methods:
            continue
        models.append(
            ModelInfo(
                name.removeprefix("models/"),
                provider,
                display_name=text(item.get("displayName")),
                context_window=whole(item.get("inputTokenLimit")),
                max_output_tokens=whole(item.get("outputTokenLimit")),
                raw=item,
            )
        )
    return models, text(data.get("nextPageToken"))


SPEC = ProviderSpec(
    ProviderType.GOOGLE,
    GoogleProvider(),
    google_auth,
    ModelListing(_models_url, _models_page),
    aliases=("gemini",),
    base_url_env="GOOGLE_GEMINI_BASE_URL",
    key_env=("GOOGLE_API_KEY", "GEMINI_API_KEY"),  # google-genai's precedence
)
"""Gemini: ``GET {base}/{api_version}/models`` paged by ``pageToken``; no rate-limit headers."""
