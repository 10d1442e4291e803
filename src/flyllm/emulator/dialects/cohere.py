"""Cohere chat v2 (``POST /v2/chat``), docs/WIRE-more.md section 3.

Bearer auth, a strict schema (unknown fields are a 400), ``message.content[]`` text blocks,
``response_format`` and image blocks (see ``_cohere_output``), usage in ``billed_units`` and
``tokens`` (the latter also counts the prompt template), named SSE
events from ``message-start`` to ``message-end``, errors as ``{"id", "message"}``. The models
list is ``GET /v1/models`` with ``page_size``/``page_token`` paging and an ``endpoint`` filter
(docs/WIRE-models.md section 7). Embeddings: ``POST /v2/embed``, see ``_cohere_embed``.
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
from flyllm.emulator.dialects._cohere_embed import embed_body
from flyllm.emulator.dialects._cohere_output import image_types, model_lacks, read_format
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply
from flyllm.emulator.tools import OfferedTool, PlannedCall, ToolResult
from flyllm.emulator.wire import (
    Answer,
    Conversation,
    Dialect,
    Route,
    StreamPlan,
    bearer_token,
    chat_route,
    dumps,
    random_base62,
)

__all__ = ["CohereDialect"]

ROUTE = "/v2/chat"
EMBED_ROUTE = "/v2/embed"
MODELS_ROUTE = "/v1/models"
ENDPOINTS = ("chat", "embed", "classify", "summarize", "rerank", "rate", "generate")
CONTEXT_WINDOW = 256_000
TEMPLATE_TOKENS = 66
"""Tokens the chat template adds to the prompt: counted in ``usage.tokens``, not billed."""
ROLES = ("system", "user", "assistant", "tool")
FINISH = {"end": "COMPLETE", "stop_sequence": "STOP_SEQUENCE", "length": "MAX_TOKENS",
          "refusal": "COMPLETE", "tool_calls": "TOOL_CALL"}  # fmt: skip
CHOICES = {"REQUIRED": "required", "NONE": "none"}
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
        """``POST /v2/chat``, ``POST /v2/embed`` and ``GET /v1/models``."""
        if method == "POST" and path == EMBED_ROUTE:
            return Route(EMBED_ROUTE, embed=True)
        return chat_route(method, path, ROUTE, MODELS_ROUTE)

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """The ``/v2/embed`` answer (vectors by type, ``meta.billed_units``), or Cohere's
        error for what the API refuses."""
        model = body.get("model")
        if isinstance(model, str) and model and not self.known_model(model):
            return self.unknown_model(model, route, rid)
        outcome = embed_body(body, input_limit)
        if isinstance(outcome, tuple):
            return error(*outcome, rid)
        return Answer(200, dumps({"id": rid, **outcome}))

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
        offered = _read_tools(body)
        if isinstance(offered, str):
            return invalid(offered, rid)
        read = _read_messages(messages)
        if isinstance(read, str):
            return invalid(read, rid)
        texts, prompt, last_role, results = read
        output, images = read_format(body), image_types(messages)
        if isinstance(output, str) or isinstance(images, str):
            return invalid(output if isinstance(output, str) else str(images), rid)
        lacking = model_lacks(model, output[0], bool(images))
        if lacking:
            return invalid(lacking, rid)
        conv = Conversation.from_texts(
            model,
            texts,
            prompt,
            max_tokens=body.get("max_tokens"),
            stop=tuple(body.get("stop_sequences") or ()),
            stream=body.get("stream") is True,
        )
        conv.tools, conv.tool_choice = offered
        conv.last_role, conv.tool_results = last_role, results
        (conv.output_json, conv.output_schema), conv.images = output, images
        return conv

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """400 ``invalid request: tool use is not supported for model 'x'``."""
        return invalid(f"tool use is not supported for model '{conv.model}'", rid)

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
        """The v2 chat response: id, message with text blocks (or, for tool calls, the
        ``tool_plan`` and ``tool_calls`` with arguments as JSON text), finish_reason, usage."""
        message: dict[str, Any] = {"role": "assistant"}
        if reply.calls:
            message["tool_plan"] = _plan(reply.calls)
            message["tool_calls"] = [
                {"id": _call_id(c), "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments_json}}
                for c in reply.calls
            ]  # fmt: skip
        else:
            message["content"] = [{"type": "text", "text": reply.text}]
        return dumps(
            {
                "id": rid,
                "message": message,
                "finish_reason": FINISH[reply.finish],
                "usage": self._usage(conv, reply.tokens),
            }
        )

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """message-start, content-start, one content-delta per token, content-end,
        message-end with the finish reason and usage. No ``[DONE]``. Tool calls instead:
        tool-plan-delta per word, then per call tool-call-start (id, name, empty
        arguments), tool-call-delta with pieces of the arguments, tool-call-end."""
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
        if reply.calls:
            content = _call_events(reply.calls)
        else:
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
        if reply.calls:
            return StreamPlan([start], content, [end])
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


def _read_tools(body: dict[str, Any]) -> tuple[tuple[OfferedTool, ...], str] | str:
    """The offered tools and the neutral tool choice, or the problem as the API words it."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if choice is not None and choice not in CHOICES:
        return "tool_choice must be one of REQUIRED, NONE"
    if tools is None:
        return ((), "auto") if choice is None else "tool_choice requires tools to be specified"
    if not isinstance(tools, list):
        return "tools must be a list of tools"
    offered = []
    for n, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            return f"tools[{n}] must be a function tool"
        name, schema = function.get("name"), function.get("parameters", {})
        if not isinstance(name, str) or not name or not isinstance(schema, dict):
            return f"tools[{n}].function must have a name and an object of parameters"
        offered.append(OfferedTool(name, schema))
    if choice == "REQUIRED" and not offered:
        return "tool_choice requires tools to be specified"
    return tuple(offered), CHOICES.get(choice or "", "auto")


def _read_messages(
    messages: list[Any],
) -> tuple[list[str], str, str, tuple[ToolResult, ...]] | str:
    """(every turn's text, the last user text, the last turn's role, the trailing tool
    results), or the problem: a role or content of the wrong shape, a call of the wrong shape,
    or a tool result whose ``tool_call_id`` no earlier assistant turn made."""
    texts: list[str] = []
    prompt, role = "", "user"
    calls: dict[str, str] = {}
    results: list[ToolResult] = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"invalid message: role must be one of {', '.join(ROLES)}"
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            problem = _read_calls(message, n, calls)
            if problem:
                return problem
        content = message.get("content", "")
        if role == "assistant" and content is None:
            content = ""  # an assistant turn with calls may have no content at all
        text = _tool_text(message) if role == "tool" else content_text(content)
        if text is None:
            return f"invalid message: messages[{n}] has content of the wrong type"
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in calls:
                return f"invalid message: tool call id {call_id} not found in previous messages"
            results.append(ToolResult(calls[call_id], text))
        else:
            results = []
        texts.append(f"{message.get('tool_plan') or ''} {text}".strip())
        if role == "user":
            prompt = text
    return texts, prompt, role, tuple(results)


def _read_calls(message: dict[str, Any], n: int, calls: dict[str, str]) -> str | None:
    """Record the calls of an assistant turn (id -> name); the problem when one is of the
    wrong shape (arguments must be JSON text)."""
    items = message["tool_calls"]
    if not isinstance(items, list):
        return f"invalid message: messages[{n}].tool_calls must be a list"
    for item in items:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(item.get("id"), str):
            return f"invalid message: messages[{n}].tool_calls needs an id and a function"
        name, arguments = function.get("name"), function.get("arguments", "")
        if not isinstance(name, str) or not isinstance(arguments, str):
            return f"invalid message: messages[{n}].tool_calls[].function has a wrong type"
        calls[item["id"]] = name
    return None


def _tool_text(message: dict[str, Any]) -> str | None:
    """A tool result's text: a string, or its text and document blocks (a document's
    ``data`` as JSON); None when invalid."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        return None
    parts = []
    for block in content:
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "document" and isinstance(block.get("document"), dict):
            data = block["document"].get("data")
            parts.append(data if isinstance(data, str) else json.dumps(data))
    return "\n".join(parts)


def _call_id(call: PlannedCall) -> str:
    """An id as Cohere makes them: the tool's name and 12 lower-case letters and digits."""
    return f"{call.name}_{random_base62(12).lower()}"


def _plan(calls: tuple[PlannedCall, ...]) -> str:
    names = sorted({c.name for c in calls})
    return f"I will use {' and '.join(names)} to answer."


def _call_events(calls: tuple[PlannedCall, ...]) -> list[bytes]:
    """tool-plan-delta events (one per word), then each call's start, argument pieces and
    end: Cohere sends the arguments' JSON in small fragments."""
    events = [_delta("tool-plan-delta", None, {"tool_plan": w}) for w in _pieces(_plan(calls), " ")]
    for index, call in enumerate(calls):
        function = {"name": call.name, "arguments": ""}
        start = {"id": _call_id(call), "type": "function", "function": function}
        events.append(_delta("tool-call-start", index, {"tool_calls": start}))
        for piece in _pieces(call.arguments_json, '"'):
            fragment = {"function": {"arguments": piece}}
            events.append(_delta("tool-call-delta", index, {"tool_calls": fragment}))
        events.append(_event("tool-call-end", {"type": "tool-call-end", "index": index}))
    return events


def _delta(kind: str, index: int | None, message: dict[str, Any]) -> bytes:
    data: dict[str, Any] = {"type": kind}
    if index is not None:
        data["index"] = index
    data["delta"] = {"message": message}
    return _event(kind, data)


def _pieces(text: str, after: str) -> list[str]:
    """``text`` cut after each ``after`` character (the pieces join back to it)."""
    pieces, start = [], 0
    for i, char in enumerate(text):
        if char == after:
            pieces.append(text[start : i + 1])
            start = i + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces
