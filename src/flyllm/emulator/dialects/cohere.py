"""Cohere chat v2 (``POST /v2/chat``), docs/WIRE-more.md section 3.

Bearer auth, a strict schema (unknown fields are a 400), ``message.content[]`` text blocks,
usage in ``billed_units`` and ``tokens`` (the latter also counts the prompt template), named SSE
events from ``message-start`` to ``message-end``, errors as ``{"id", "message"}``. The models
list is ``GET /v1/models`` with ``page_size``/``page_token`` paging and an ``endpoint`` filter
(docs/WIRE-models.md section 7).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from flyllm.emulator.catalog import (
    CatalogModel,
    catalog,
    page_size,
    page_token,
    read_page_token,
)
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply
from flyllm.emulator.wire import (
    Answer,
    Conversation,
    Dialect,
    Route,
    StreamPlan,
    bearer_token,
    chat_route,
    dumps,
)

__all__ = ["CohereDialect"]

ROUTE = "/v2/chat"
MODELS_ROUTE = "/v1/models"
ENDPOINTS = ("chat", "embed", "classify", "summarize", "rerank", "rate", "generate")
CONTEXT_WINDOW = 256_000
TEMPLATE_TOKENS = 66
"""Tokens the chat template adds to the prompt: counted in ``usage.tokens``, not billed."""
ROLES = ("system", "user", "assistant", "tool")
FINISH = {"end": "COMPLETE", "stop_sequence": "STOP_SEQUENCE", "length": "MAX_TOKENS",
          "refusal": "COMPLETE"}  # fmt: skip
_FIELDS = """
    model messages tools strict_tools documents citation_options response_format safety_mode
    max_tokens stop_sequences temperature seed frequency_penalty presence_penalty k p logprobs
    tool_choice thinking priority stream"""
FIELDS = frozenset(_FIELDS.split())
SERVER_ERROR = "internal server error, this has been reported to our developers. id {rid}"
_FAULTS = {
    "quota": (
        402,
        "Please add or update your payment method at "
        "https://dashboard.cohere.com/billing?tab=payment to continue",
    ),
    "bad_gateway": (502, "bad gateway"),
    "unavailable": (503, "service unavailable"),
    "overloaded": (503, "the model is overloaded, please try again later"),
    "unauthorized": (401, "invalid api token"),
}


def error(status: int, message: str, rid: str) -> Answer:
    """An answer with Cohere's error body ``{"id": ..., "message": ...}``."""
    return Answer(status, dumps({"id": rid, "message": message}))


def invalid(message: str, rid: str) -> Answer:
    """A 400 ``invalid request: ...``."""
    return error(400, f"invalid request: {message}", rid)


def content_text(content: Any) -> str | None:
    """A message's text (a string, or text blocks joined with newlines); None when invalid."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    return None


def _check_number(body: dict[str, Any], name: str, low: float, high: float) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        return f"{name} must be between {low:g} and {high:g} inclusive."
    return None


def _check_params(body: dict[str, Any]) -> str | None:
    """The first problem with the sampling parameters, as the API words it."""
    for name in body:
        if name not in FIELDS:
            return f"unknown field: parameter {name} is not a valid field"
    limit = body.get("max_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        return "max_tokens must be a positive integer."
    for name, low, high in (("temperature", 0, 1), ("p", 0.01, 0.99), ("k", 0, 500)):
        problem = _check_number(body, name, low, high)
        if problem:
            return problem
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or len(stops) > 5 or not all(isinstance(s, str) for s in stops)
    ):
        return "stop_sequences must be a list of at most 5 strings."
    return None


def _endpoints(model: CatalogModel) -> list[str]:
    if model.chat:
        return ["chat", "generate", "summarize"]
    return ["rerank"] if model.id.startswith("rerank") else ["embed", "classify"]


def _model(model: CatalogModel) -> dict[str, Any]:
    """One model as ``GET /v1/models`` lists it."""
    return {
        "name": model.id,
        "endpoints": _endpoints(model),
        "finetuned": False,
        "context_length": model.context_window,
        "tokenizer_url": f"https://storage.googleapis.com/cohere-public/tokenizers/{model.id}.json",
        "default_endpoints": [],
        "features": ["tools", "strict_tools", "json_mode", "json_schema"] if model.chat else [],
        "is_deprecated": False,
    }


class CohereDialect(Dialect):
    """Cohere's v2 chat dialect: strict schema, billed and raw token counts, named events."""

    provider = "cohere"
    supports_refusal = False

    def base_url(self, root: str) -> str:
        """``http://host:port``, what ``cohere.AsyncClientV2(base_url=...)`` takes."""
        return root

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST /v2/chat`` and ``GET /v1/models``."""
        return chat_route(method, path, ROUTE, MODELS_ROUTE)

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """``{"models": [...], "next_page_token"}``: ``endpoint`` keeps the models of one
        endpoint, ``page_size`` 1..1000 (default 20; the emulator serves at most 2),
        ``page_token`` from the previous page; no token on the last page."""
        endpoint = query.get("endpoint")
        if endpoint is not None and endpoint not in ENDPOINTS:
            return invalid(f"endpoint must be one of {', '.join(ENDPOINTS)}", rid)
        models = [
            m
            for m in catalog("cohere", self.models)
            if endpoint is None or endpoint in _endpoints(m)
        ]
        size = page_size(query.get("page_size"), 20, 1000)
        if size is None:
            return invalid("page_size must be between 1 and 1000", rid)
        start = 0
        if query.get("page_token"):
            found = read_page_token(query["page_token"], models)
            if found is None:
                return invalid("invalid page_token", rid)
            start = found
        body: dict[str, Any] = {"models": [_model(m) for m in models[start : start + size]]}
        if start + size < len(models):
            body["next_page_token"] = page_token(start + size)
        return Answer(200, dumps(body))

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The ``Authorization: Bearer`` token."""
        return bearer_token(headers)

    def request_id(self) -> str:
        """A UUID, as Cohere's ids are."""
        return str(uuid.uuid4())

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """401 ``no api key supplied`` or ``invalid api token``."""
        return error(401, "no api key supplied" if key is None else "invalid api token", rid)

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """404 for an unknown URL."""
        return error(404, f"{method} {path} not found", rid)

    def malformed_json(self, rid: str) -> Answer:
        """400 for a body that is not a JSON object."""
        return invalid("the request body is not valid JSON", rid)

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Fields, model, messages, ranges and stop sequences, as the API checks them."""
        problem = _check_params(body)
        if problem:
            return invalid(problem, rid)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return invalid("a model parameter is required for this endpoint.", rid)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return invalid("messages must not be empty", rid)
        texts: list[str] = []
        prompt = ""
        for message in messages:
            role = message.get("role") if isinstance(message, dict) else None
            text = content_text(message.get("content")) if isinstance(message, dict) else None
            if role not in ROLES or text is None:
                return invalid(f"invalid message: role must be one of {', '.join(ROLES)}", rid)
            texts.append(text)
            if role == "user":
                prompt = text
        return Conversation.from_texts(
            model,
            texts,
            prompt,
            max_tokens=body.get("max_tokens"),
            stop=tuple(body.get("stop_sequences") or ()),
            stream=body.get("stream") is True,
        )

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """404 ``model 'x' not found, ...``."""
        message = (
            f"model '{model}' not found, make sure the correct model ID was used and that you "
            "have access to the model."
        )
        return error(404, message, rid)

    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """400 ``too many tokens: ...``."""
        received = CONTEXT_WINDOW + conv.prompt_tokens
        message = (
            f"too many tokens: total number of tokens in the prompt cannot exceed "
            f"{CONTEXT_WINDOW} - received {received}. Try using a shorter prompt, or enabling "
            "prompt truncating. See https://docs.cohere.com/reference/generate for more details."
        )
        return error(400, message, rid)

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """``{"id", "message"}`` with each failure's status and wording."""
        kind = fault.kind
        if kind == "rate_limit":
            answer = error(
                429,
                "You are past the per minute request limit, please wait and try again later.",
                rid,
            )
            answer.throttled_for = fault.retry_after or 0.0
        elif kind in _FAULTS:
            status, message = _FAULTS[kind]
            answer = error(status, message, rid)
        else:
            answer = error(500, SERVER_ERROR.format(rid=rid), rid)
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def _usage(self, conv: Conversation, output: int) -> dict[str, Any]:
        prompt = conv.prompt_tokens
        return {
            "billed_units": {"input_tokens": prompt, "output_tokens": output},
            "tokens": {"input_tokens": prompt + TEMPLATE_TOKENS, "output_tokens": output},
        }

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The v2 chat response: id, message with text blocks, finish_reason, usage."""
        return dumps(
            {
                "id": rid,
                "message": {"role": "assistant", "content": [{"type": "text", "text": reply.text}]},
                "finish_reason": FINISH[reply.finish],
                "usage": self._usage(conv, reply.tokens),
            }
        )

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """message-start, content-start, one content-delta per token, content-end,
        message-end with the finish reason and usage. No ``[DONE]``."""
        start = _event(
            "message-start",
            {
                "id": rid,
                "type": "message-start",
                "delta": {
                    "message": {
                        "role": "assistant",
                        "content": [],
                        "tool_plan": "",
                        "tool_calls": [],
                        "citations": [],
                    }
                },
            },
        )
        block = _event(
            "content-start",
            {"type": "content-start", "index": 0,
             "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        )  # fmt: skip
        content = [
            (
                'event: content-delta\ndata: {"type":"content-delta","index":0,"delta":'
                f'{{"message":{{"content":{{"text":{json.dumps(piece)}}}}}}}}}\n\n'
            ).encode()
            for piece in reply.chunks
        ]
        end = _event(
            "message-end",
            {
                "type": "message-end",
                "delta": {
                    "finish_reason": FINISH[reply.finish],
                    "usage": self._usage(conv, reply.tokens),
                },
            },
        )
        tail = [_event("content-end", {"type": "content-end", "index": 0}), end]
        return StreamPlan([start, block], content, tail)

    def stream_error(self, rid: str) -> bytes:
        """``message-end`` with ``finish_reason: ERROR`` and the error text."""
        return _event(
            "message-end",
            {
                "type": "message-end",
                "delta": {"error": "internal server error", "finish_reason": "ERROR"},
            },
        )

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """The tracing headers Cohere's edge adds."""
        return {
            "x-debug-trace-id": rid.replace("-", ""),
            "x-envoy-upstream-service-time": str(round(elapsed_s * 1000)),
            "num_tokens": str(sum(tokens)),
        }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + dumps(data) + b"\n\n"
