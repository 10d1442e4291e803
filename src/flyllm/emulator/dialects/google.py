"""Gemini ``generateContent`` / ``streamGenerateContent`` under ``/v1`` and ``/v1beta``.

After Gemini's API reference. Non-streaming and error bodies are pretty-printed like Google's
servers; SSE chunks use Google's ``": "``/``,"`` spacing and CRLF event separators and end at EOF.
Embeddings: ``:batchEmbedContents`` and ``:embedContent`` (:mod:`._google_embed`).
The models list is ``GET /{v1,v1beta}/models`` with ``pageSize``/``pageToken`` paging
(docs/WIRE-models.md section 4).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from flyllm.emulator.catalog import (
    CatalogModel,
    catalog,
    page_size,
    page_token,
    read_page_token,
)
from flyllm.emulator.dialects._google_embed import EMBED_METHODS, embed_answer
from flyllm.emulator.dialects._google_output import (
    instructed_output,
    read_images,
    read_output,
)
from flyllm.emulator.dialects._google_tools import call_parts, new_signature, read_tools, signs
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply, count_words
from flyllm.emulator.wire import (
    Answer,
    Conversation,
    Dialect,
    Route,
    StreamPlan,
    random_base62,
)

__all__ = ["GoogleDialect", "retry_delay"]

JSON_TYPE = "application/json; charset=UTF-8"
CONTEXT_WINDOW = 1_048_576
METHODS = ("generateContent", "streamGenerateContent")
VERSIONS = ("v1", "v1beta")
CHAT_METHODS = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
FINISH = {
    "end": "STOP",
    "stop_sequence": "STOP",
    "length": "MAX_TOKENS",
    "refusal": "SAFETY",
    "tool_calls": "STOP",  # Gemini has no tool-call finish reason
}
_SSE = json.JSONEncoder(separators=(",", ": "), ensure_ascii=False).encode
_PRETTY = json.JSONEncoder(indent=2, ensure_ascii=False).encode
UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use "
    "API Key or other form of API consumer identity to call this API."
)
BAD_KEY = "API key not valid. Please pass a valid API key."
INTERNAL = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
BAD_GATEWAY_HTML = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <p><b>502.</b> <ins>That\u2019s an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds.  <ins>That\u2019s all we know.</ins>\n"
).encode()
SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]
TOOLS_WITH_JSON = "Function calling with a response mime type: 'application/json' is unsupported"
"""Gemini 1.x and 2.x's 400 for function declarations beside JSON mode (Gemini 3 takes both)."""
_FAULTS = {
    "server_error": (500, "INTERNAL", INTERNAL),
    "stream_error": (500, "INTERNAL", INTERNAL),
    "unavailable": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
}


def retry_delay(seconds: float) -> str:
    """A google.protobuf.Duration in JSON form: ``1s``, ``0.5s``, ``34.4s``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def status_body(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> bytes:
    """A google.rpc.Status error body, pretty-printed."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return _PRETTY({"error": error}).encode()


def error(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> Answer:
    """An answer carrying a google.rpc.Status body."""
    return Answer(code, status_body(code, status, message, details), JSON_TYPE)


def invalid(message: str) -> Answer:
    """400 ``INVALID_ARGUMENT``."""
    return error(400, "INVALID_ARGUMENT", message)


def _pretty_answer(payload: Any) -> Answer:
    return Answer(200, _PRETTY(payload).encode(), JSON_TYPE)


def parts_text(content: Any) -> str:
    """The text of a Content's parts, joined with newlines (thought parts skipped)."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    return "\n".join(
        str(part["text"])
        for part in content["parts"]
        if isinstance(part, dict) and "text" in part and not part.get("thought")
    )


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    return data[camel] if camel in data else data.get(snake)


def _quota_details(model: str, quota_id: str, retry_after: float | None) -> list[dict[str, Any]]:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": "1000",
    }
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if retry_after is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": retry_delay(retry_after),
            }
        )
    return details


def _model(model: CatalogModel) -> dict[str, Any]:
    """One ``Model`` resource as ``models.list`` returns it."""
    entry: dict[str, Any] = {
        "name": f"models/{model.id}",
        "version": "001",
        "displayName": model.display_name,
        "description": f"Emulated {model.display_name}.",
        "inputTokenLimit": model.context_window,
        "outputTokenLimit": model.max_output,
    }
    if not model.chat:
        entry["supportedGenerationMethods"] = ["embedContent"]
        return entry
    entry["supportedGenerationMethods"] = CHAT_METHODS
    entry.update(temperature=1, topP=0.95, topK=64, maxTemperature=2, thinking=True)
    return entry


class GoogleDialect(Dialect):
    """Gemini's dialect: ``x-goog-api-key`` or ``?key=``, google.rpc.Status errors, CRLF SSE."""

    provider = "google"
    json_type = JSON_TYPE

    def base_url(self, root: str) -> str:
        """``http://host:port``; the SDK appends ``/v1/models/...`` (or ``/v1beta/...``)."""
        return root

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST /{v1,v1beta}/models/{model}:{generateContent,streamGenerateContent}``, the
        embeddings methods (``:batchEmbedContents``, ``:embedContent``) and ``GET
        /{v1,v1beta}/models``."""
        if method == "GET" and path in ("/v1/models", "/v1beta/models"):
            return Route(path, listing=True, version=path[1:].partition("/")[0])
        if method != "POST":
            return None
        version, sep, rest = path[1:].partition("/models/")
        if not sep or version not in VERSIONS:
            return None
        model, colon, action = rest.rpartition(":")
        if not colon or not model or "/" in model or action not in METHODS + EMBED_METHODS:
            return None
        if action in EMBED_METHODS:
            return Route(f"/{version}/models/{{model}}:{action}", model, version=version,
                         embed=True)  # fmt: skip
        stream = action == "streamGenerateContent"
        sse = not stream or query.get("alt") == "sse"
        return Route(f"/{version}/models/{{model}}:{action}", model, stream, sse, version)

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """``x-goog-api-key``, else the ``key`` query parameter."""
        key = headers.get("x-goog-api-key", "").strip() or query.get("key", "").strip()
        return key or None

    def request_id(self) -> str:
        """A ``responseId``-like token (Gemini sends no request-id header)."""
        return random_base62(22)

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """403 for a missing key; 400 ``API_KEY_INVALID`` (not 401) for a wrong one."""
        if key is None:
            return error(403, "PERMISSION_DENIED", UNREGISTERED)
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": BAD_KEY,
            },
        ]
        return error(400, "INVALID_ARGUMENT", BAD_KEY, details)

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """404 ``NOT_FOUND``."""
        return error(404, "NOT_FOUND", "Method not found.")

    def malformed_json(self, rid: str) -> Answer:
        """400 with a BadRequest field violation, as for any unparsable payload."""
        message = "Invalid JSON payload received. Unexpected token."
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"description": message}],
            }
        ]
        return error(400, "INVALID_ARGUMENT", message, details)

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Contents with roles user/model only; camelCase or snake_case request fields; the
        output form and image parts checked (:mod:`._google_output`)."""
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return invalid("* GenerateContentRequest.contents: contents is not specified\n")
        system = _pick(body, "systemInstruction", "system_instruction")
        texts = [parts_text(system)] if system else []
        prompt = ""
        for content in contents:
            role = content.get("role") if isinstance(content, dict) else None
            if role not in (None, "", "user", "model"):
                return invalid("Please use a valid role: user, model.")
            text = parts_text(content)
            texts.append(text)
            if role != "model" and text:
                prompt = text  # the last user text, also when tool results follow it
        config = _pick(body, "generationConfig", "generation_config") or {}
        if not isinstance(config, dict):
            return invalid(
                "Invalid value at 'generation_config', expected a GenerationConfig object."
            )
        limit = _pick(config, "maxOutputTokens", "max_output_tokens")
        stops = _pick(config, "stopSequences", "stop_sequences") or []
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            return invalid(
                f"Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), \"{limit}\""
            )
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            return invalid(
                "Invalid value at 'generation_config.stop_sequences', expected a list of strings."
            )
        if len(stops) > 5:
            return invalid(
                "* GenerateContentRequest.generation_config.stop_sequences: "
                "at most 5 stop sequences\n"
            )
        tools = read_tools(body, contents, route.model or "")
        if isinstance(tools, str):
            return invalid(tools)
        output = read_output(config)
        if isinstance(output, str):
            return invalid(output)
        if tools.tools and output.json and not signs(route.model or ""):
            return invalid(TOOLS_WITH_JSON)
        if not output.json and system:
            output = instructed_output(texts[0]) or output
        images = read_images(contents)
        if isinstance(images, str):
            return invalid(images)
        conv = Conversation.from_texts(
            route.model or "",
            texts,
            prompt,
            max_tokens=limit if limit else None,
            stop=tuple(stops),
            stream=route.stream,
            sse=route.sse,
        )
        conv.tools, conv.tool_choice = tools.tools, tools.choice
        conv.last_role, conv.tool_results = tools.last_role, tools.results
        conv.output_json, conv.output_schema, conv.images = output.json, output.schema, images
        return conv

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """The embeddings (:mod:`._google_embed`), or Gemini's 400 for what it refuses."""
        model = route.model or ""
        if not self.known_model(model):
            return self.unknown_model(model, route, rid)
        method = route.label.rpartition(":")[2]
        return embed_answer(method, model, body, input_limit, invalid, _pretty_answer)

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """400 ``INVALID_ARGUMENT``, as Gemini answers for models without function calling."""
        return invalid(f"Function calling is not enabled for models/{conv.model}")

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """``{"models": [Model...], "nextPageToken"}``, pretty-printed; ``pageSize`` defaults
        to 50 (the emulator serves at most 2), ``nextPageToken`` only while more remain."""
        models = catalog("google", self.models)
        size = page_size(query.get("pageSize"), 50, 1 << 31)
        if size is None:
            return invalid(f"Invalid value at 'page_size' (TYPE_INT32), \"{query['pageSize']}\"")
        start = 0
        if query.get("pageToken"):
            found = read_page_token(query["pageToken"], models)
            if found is None:
                return invalid("Invalid page token.")
            start = found
        body: dict[str, Any] = {"models": [_model(m) for m in models[start : start + size]]}
        if start + size < len(models):
            body["nextPageToken"] = page_token(start + size)
        return Answer(200, _PRETTY(body).encode(), JSON_TYPE)

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """404 ``NOT_FOUND`` naming the model and API version."""
        action = route.label.rpartition(":")[2]
        return error(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version {route.version}, or is not supported "
            f"for {action}. Call ListModels to see the list of available models and their "
            "supported methods.",
        )

    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """400 ``INVALID_ARGUMENT`` about the input token count."""
        tokens = CONTEXT_WINDOW + conv.prompt_tokens
        return invalid(
            f"The input token count ({tokens}) exceeds the maximum number of tokens allowed "
            f"({CONTEXT_WINDOW})."
        )

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """RESOURCE_EXHAUSTED with RetryInfo in the body (no header), GFE's HTML 502, etc."""
        kind = fault.kind
        if kind == "rate_limit":
            quota_id = "GenerateRequestsPerMinutePerProjectPerModel"
            answer = error(
                429,
                "RESOURCE_EXHAUSTED",
                QUOTA,
                _quota_details(conv.model, quota_id, fault.retry_after),
            )
            answer.throttled_for = fault.retry_after or 0.0
        elif kind == "quota":
            quota_id = "GenerateRequestsPerDayPerProjectPerModel"
            answer = error(
                429, "RESOURCE_EXHAUSTED", QUOTA, _quota_details(conv.model, quota_id, None)
            )
        elif kind == "bad_gateway":
            answer = Answer(502, BAD_GATEWAY_HTML, "text/html; charset=UTF-8")
        elif kind == "unauthorized":
            answer = self.auth_error("invalid", rid)
        else:
            code, status, message = _FAULTS.get(kind, _FAULTS["server_error"])
            answer = error(code, status, message)
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def _usage(self, conv: Conversation, candidates: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"promptTokenCount": conv.prompt_tokens}
        if candidates:
            usage["candidatesTokenCount"] = candidates
        usage["totalTokenCount"] = conv.prompt_tokens + candidates
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": conv.prompt_tokens}]
        return usage

    def _response(self, conv: Conversation, reply: Reply, rid: str) -> dict[str, Any]:
        if conv.trigger == "blocked":
            feedback = {"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS}
            return {
                "promptFeedback": feedback,
                "usageMetadata": self._usage(conv, 0),
                "modelVersion": conv.model,
                "responseId": rid,
            }
        if reply.finish == "refusal":
            candidate: dict[str, Any] = {
                "finishReason": "SAFETY",
                "index": 0,
                "safetyRatings": SAFETY_RATINGS,
            }
            return {
                "candidates": [candidate],
                "usageMetadata": self._usage(conv, 0),
                "modelVersion": conv.model,
                "responseId": rid,
            }
        parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
        if parts and signs(conv.model):  # Gemini 3 signs the last part of a text answer
            parts[-1]["thoughtSignature"] = new_signature()
        parts += call_parts(reply.calls, conv.model)
        content: dict[str, Any] = {"parts": parts, "role": "model"} if parts else {"role": "model"}
        candidate = {"content": content, "finishReason": FINISH[reply.finish], "index": 0}
        return {
            "candidates": [candidate],
            "usageMetadata": self._usage(conv, reply.tokens),
            "modelVersion": conv.model,
            "responseId": rid,
        }

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The GenerateContentResponse, pretty-printed."""
        return _PRETTY(self._response(conv, reply, rid)).encode()

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """One chunk per token with cumulative usage, then a finishReason chunk; EOF ends it."""
        if conv.trigger == "blocked" or reply.finish == "refusal":
            return self._frame(conv, [self._response(conv, reply, rid)], [])
        chunks = []
        emitted = 0
        for piece in reply.chunks:
            emitted += count_words(piece)
            chunks.append(
                {
                    "candidates": [
                        {"content": {"parts": [{"text": piece}], "role": "model"}, "index": 0}
                    ],
                    "usageMetadata": self._usage(conv, emitted),
                    "modelVersion": conv.model,
                    "responseId": rid,
                }
            )
        if reply.calls:  # Gemini streams calls whole, all in one chunk
            content = {"parts": call_parts(reply.calls, conv.model), "role": "model"}
            chunks.append(
                {
                    "candidates": [{"content": content, "index": 0}],
                    "usageMetadata": self._usage(conv, reply.tokens),
                    "modelVersion": conv.model,
                    "responseId": rid,
                }
            )
        last: dict[str, Any] = {"role": "model"}
        if reply.text and signs(conv.model):  # in an empty-text part of the last chunk
            last["parts"] = [{"text": "", "thoughtSignature": new_signature()}]
        final = {
            "candidates": [{"content": last, "finishReason": FINISH[reply.finish], "index": 0}],
            "usageMetadata": self._usage(conv, reply.tokens),
            "modelVersion": conv.model,
            "responseId": rid,
        }
        return self._frame(conv, chunks, [final])

    def _frame(
        self, conv: Conversation, content: list[dict[str, Any]], tail: list[dict[str, Any]]
    ) -> StreamPlan:
        if conv.sse:
            return StreamPlan(
                [],
                [b"data: " + _SSE(c).encode() + b"\r\n\r\n" for c in content],
                [b"data: " + _SSE(c).encode() + b"\r\n\r\n" for c in tail],
                "text/event-stream",
            )
        # Without alt=sse the endpoint streams one JSON array of pretty-printed responses.
        pieces = [_PRETTY(c).encode() for c in [*content, *tail]]
        framed = [(b"[" if i == 0 else b",\r\n") + piece for i, piece in enumerate(pieces)]
        framed[-1] += b"]"
        split = len(content)
        return StreamPlan([], framed[:split], framed[split:], JSON_TYPE)

    def stream_error(self, rid: str) -> bytes:
        """A ``{"error": ...}`` chunk, which google-genai raises as ``APIError``."""
        payload = {"error": {"code": 500, "message": INTERNAL, "status": "INTERNAL"}}
        return b"data: " + _SSE(payload).encode() + b"\r\n\r\n"

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """No request-id or rate-limit headers exist; Google's usual front-end headers instead."""
        return {
            "vary": "Origin, X-Origin, Referer",
            "server": "scaffolding on HTTPServer2",
            "server-timing": f"gfet4t7; dur={math.ceil(elapsed_s * 1000)}",
            "x-xss-protection": "0",
            "x-frame-options": "SAMEORIGIN",
            "x-content-type-options": "nosniff",
        }
