"""Mistral chat completions (``POST /v1/chat/completions``), after Mistral's API reference.

OpenAI-like on the surface, but with a strict schema (unknown fields are a 422 whose
``message`` is an object), usage always on the finish chunk, and Kong gateway errors. The
models list (``GET /v1/models``) is one page of model cards (docs/WIRE-models.md section 2).

Tools: ``tools[{type: "function", function: {name, description?, parameters, strict?}}]``,
``tool_choice`` auto|none|any|required or ``{type: "function", function: {name}}``,
``parallel_tool_calls``. Tool call ids must be exactly nine letters and digits (the API's 400
``invalid_function_call`` "Tool call id was ... but must be a-z, A-Z, 0-9, with a length of
9.", for calls and results alike), and every call needs its result before the next other turn
("Not the same number of function calls and responses"). Calls are answered with nine-character
ids, ``content: ""`` and finish ``tool_calls``; streams send whole calls in one chunk.

Embeddings (``POST /v1/embeddings``, the strict schema: ``model``, ``input`` a text or texts,
``metadata``, ``output_dimension``, ``output_dtype``, ``encoding_format``): vectors from
:mod:`flyllm.emulator.embeddings`, unit length; mistral-embed (and any other model) 1024
values, codestral-embed 1536 unless ``output_dimension`` (1 to 3072, codestral-embed only; a
400 otherwise) asks another size, the head of its 3072 values renormalised (Matryoshka).
Usage = words. The API's answers: "Please provide at least one input element." for no input
or an empty one, "Too many tokens overall, split into more batches." (code 3210) over 16,384
tokens summed; an input over the model's 8192 tokens (or the emulator's ``context_window``)
gets the chat's "too large for model" wording, which no public report pins for embeddings.
Only float vectors are emulated (another ``output_dtype`` is a 400), as JSON or base64.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flyllm.emulator.catalog import CatalogModel, catalog
from flyllm.emulator.dialects.chat_output import (
    MISTRAL_LIMITS,
    fill_output,
    read_images,
    read_output,
)
from flyllm.emulator.dialects.chat_tools import NO_PARAMETERS
from flyllm.emulator.embeddings import as_base64, vector
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply, count_words
from flyllm.emulator.tools import OfferedTool, PlannedCall, ToolResult
from flyllm.emulator.wire import (
    Answer,
    Bucket,
    Conversation,
    Dialect,
    Route,
    StreamPlan,
    bearer_token,
    chat_route,
    dumps,
    random_base62,
    random_hex,
    retry_after_headers,
    text_parts,
)

__all__ = ["MistralDialect"]

ROUTE = "/v1/chat/completions"
MODELS_ROUTE = "/v1/models"
EMBED_ROUTE = "/v1/embeddings"
EMBED_FIELDS = frozenset(
    {"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"}
)
EMBED_INPUT_TOKENS = 8192
EMBED_REQUEST_TOKENS = 16_384
NO_INPUT = "Please provide at least one input element."
CONTEXT_WINDOW = 131_072
_FIELDS = """
    model messages temperature top_p max_tokens stream stop random_seed metadata response_format
    tools tool_choice presence_penalty frequency_penalty min_tokens repetition_penalty top_k
    logprobs top_logprobs prompt_logprobs top_prompt_logprobs n prediction parallel_tool_calls
    reasoning_effort prompt_mode guardrails prompt_cache_key service_tier safe_prompt"""
FIELDS = frozenset(_FIELDS.split())
ROLES = ("system", "user", "assistant", "tool")
FINISH = {
    "end": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "refusal": "stop",
    "tool_calls": "tool_calls",
}
CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")
CHOICES = {"auto": "auto", "none": "none", "any": "required", "required": "required"}
UNPAIRED = "Not the same number of function calls and responses"
_ERRORS = {
    "server_error": (500, "Internal server error", "internal_server_error", "1000"),
    "stream_error": (500, "Internal server error", "internal_server_error", "1000"),
    "overloaded": (
        503,
        "Service tier capacity exceeded for this model.",
        "service_tier_capacity_exceeded",
        "3505",
    ),
}
_GATEWAY = {
    "bad_gateway": (502, "An invalid response was received from the upstream server"),
    "unavailable": (503, "The upstream server is currently unavailable"),
    "quota": (429, "Monthly tokens limit exceeded"),
}


def error(status: int, message: Any, etype: str, code: str | None = None) -> Answer:
    """An answer with Mistral's API error body (``message`` may be an object)."""
    payload = {"object": "error", "message": message, "type": etype, "param": None, "code": code}
    return Answer(status, dumps(payload))


def _bad_request(message: str, param: str) -> Answer:
    """A 400 ``invalid_request_error`` (images, response_format)."""
    return error(400, message, "invalid_request_error")


def gateway(status: int, message: str, **extra: str) -> Answer:
    """An answer in the Kong gateway's shape: ``{"message": ...}``."""
    return Answer(status, dumps({"message": message, **extra}))


def unprocessable(details: list[dict[str, Any]]) -> Answer:
    """422 with the validation details wrapped in the error's ``message`` object."""
    return error(422, {"detail": details}, "invalid_request_error")


def _check_fields(body: dict[str, Any]) -> Answer | None:
    details: list[dict[str, Any]] = [
        {
            "type": "extra_forbidden",
            "loc": ["body", name],
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
        for name, value in body.items()
        if name not in FIELDS
    ]
    details += [
        {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": body}
        for name in ("model", "messages")
        if name not in body
    ]
    return unprocessable(details) if details else None


def _check_embed_fields(body: dict[str, Any]) -> Answer | None:
    """The 422 for an unknown or missing field or a value of the wrong type, as FastAPI's."""
    details = [
        {"type": "extra_forbidden", "loc": ["body", name],
         "msg": "Extra inputs are not permitted", "input": value}
        for name, value in body.items()
        if name not in EMBED_FIELDS
    ]  # fmt: skip
    details += [
        {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": body}
        for name in ("model", "input")
        if name not in body
    ]
    if details:
        return unprocessable(details)
    raw, dims = body["input"], body.get("output_dimension")
    wrong = [
        (name, value, msg)
        for name, value, ok, msg in (
            ("model", body["model"], isinstance(body["model"], str), "a valid string"),
            ("input", raw, isinstance(raw, str) or (isinstance(raw, list) and all(
                isinstance(t, str) for t in raw)), "a valid string or list of strings"),
            ("output_dimension", dims, dims is None or (isinstance(dims, int) and not isinstance(
                dims, bool) and dims > 0), "an integer greater than 0"),
            ("output_dtype", body.get("output_dtype"), body.get("output_dtype", "float") in (
                "float", "int8", "uint8", "binary", "ubinary"), "'float', 'int8', 'uint8', "
                "'binary' or 'ubinary'"),
            ("encoding_format", body.get("encoding_format"), body.get(
                "encoding_format", "float") in ("float", "base64"), "'float' or 'base64'"),
        )
        if not ok
    ]  # fmt: skip
    return unprocessable(
        [{"type": "invalid", "loc": ["body", name], "msg": f"Input should be {msg}",
          "input": value} for name, value, msg in wrong]
    ) if wrong else None  # fmt: skip


def _embeddings(rid: str, model: str, texts: list[str], dims: int | None, b64: bool) -> Answer:
    """The answer: one unit vector per text, in order, and usage = words."""
    data = []
    for i, text in enumerate(texts):
        values = _vector(text, model, dims)
        data.append({"object": "embedding", "embedding": as_base64(values) if b64 else values,
                     "index": i})  # fmt: skip
    total = sum(count_words(t) for t in texts)
    usage = {"prompt_tokens": total, "total_tokens": total, "completion_tokens": 0}
    payload = {"id": rid, "object": "list", "data": data, "model": model, "usage": usage}
    return Answer(200, dumps(payload))


def _vector(text: str, model: str, dims: int | None) -> list[float]:
    """mistral-embed's 1024 values, or codestral-embed's ``dims`` (1536 by default)."""
    if model.startswith("codestral-embed"):
        # 3072 values in full, a size the shared generator has only for OpenAI's large
        # model: borrowed, with this model folded into the text (vectors stay per model and
        # text); every shorter vector is the head of the full one, renormalised.
        return vector(f"{model}\0{text}", "text-embedding-3-large", dims or 1536)
    return vector(text, model, 1024)


def _read_messages(messages: list[Any]) -> tuple[list[str], str] | Answer:
    """Every message's text and the last user text, or the 422 for a bad role."""
    texts: list[str] = []
    prompt = ""
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            detail = {
                "type": "literal_error",
                "loc": ["body", "messages", i, "role"],
                "msg": "Input should be 'system', 'user', 'assistant' or 'tool'",
                "input": role,
            }
            return unprocessable([detail])
        assert isinstance(message, dict)
        text = text_parts(message.get("content"))
        texts.append(text)
        if role == "user":
            prompt = text
    return texts, prompt


def _card(model: CatalogModel, now: int) -> dict[str, Any]:
    """One base model card (``BaseModelCard`` in the SDK)."""
    chat = model.chat
    return {
        "id": model.id,
        "object": "model",
        "created": now,
        "owned_by": "mistralai",
        "capabilities": {
            "completion_chat": chat, "function_calling": chat, "completion_fim": False,
            "fine_tuning": False, "vision": False, "classification": False,
        },
        "name": model.display_name,
        "description": f"Emulated {model.display_name}.",
        "max_context_length": model.context_window,
        "aliases": [],
        "deprecation": None,
        "deprecation_replacement_model": None,
        "default_model_temperature": 0.3 if chat else None,
        "type": "base",
    }  # fmt: skip


class MistralDialect(Dialect):
    """Mistral's dialect: Bearer auth, ``ratelimitbysize-*`` headers, usage on the finish chunk."""

    provider = "mistral"
    supports_refusal = False

    def __init__(self, models: frozenset[str] | None) -> None:
        super().__init__(models)
        self._minute = Bucket(2_000_000)
        self._month = Bucket(10_000_000_000, period_s=30 * 86_400)

    def base_url(self, root: str) -> str:
        """``http://host:port``, the SDK's ``server_url``."""
        return root

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST /v1/chat/completions``, ``POST /v1/embeddings`` and ``GET /v1/models``."""
        if method == "POST" and path == EMBED_ROUTE:
            return Route(EMBED_ROUTE, embed=True)
        return chat_route(method, path, ROUTE, MODELS_ROUTE)

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """The embeddings list, or Mistral's 422/400 for what the API refuses."""
        problem = _check_embed_fields(body)
        if problem is not None:
            return problem
        model = body["model"]
        if not self.known_model(model):
            return self.unknown_model(model, route, rid)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if not texts or not all(texts):
            return error(400, NO_INPUT, "invalid_request_error")
        dims = body.get("output_dimension")
        if dims is not None and (not model.startswith("codestral-embed") or not 1 <= dims <= 3072):
            message = f"output_dimension {dims} is not supported for model {model}"
            return error(400, message, "invalid_request_error")
        if body.get("output_dtype", "float") != "float":
            return error(400, "the emulator serves float vectors only", "invalid_request_error")
        counts = [count_words(t) for t in texts]
        limit = input_limit or EMBED_INPUT_TOKENS
        for n in counts:
            if n > limit:
                message = (
                    f"Input contains {n} tokens, too large for model with {limit} maximum "
                    "context length"
                )
                return error(400, message, "invalid_request_message_error", "3051")
        if sum(counts) > EMBED_REQUEST_TOKENS:
            message = "Too many tokens overall, split into more batches."
            return error(400, message, "invalid_request_prompt", "3210")
        return _embeddings(rid, model, texts, dims, body.get("encoding_format") == "base64")

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """``{"object": "list", "data": [card...]}``, every model at once; ``created`` is the
        time of the request on every card, as the live API sends it."""
        now = int(time.time())
        cards = [_card(m, now) for m in catalog("mistral", self.models)]
        return Answer(200, dumps({"object": "list", "data": cards}))

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The ``Authorization: Bearer`` token."""
        return bearer_token(headers)

    def request_id(self) -> str:
        """32 hex digits, like Mistral's completion ids."""
        return random_hex(32)

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """The gateway's 401 ``Unauthorized``, for a missing and a wrong key alike."""
        return gateway(401, "Unauthorized", request_id=rid)

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """404 as the API's framework answers it."""
        return Answer(404, b'{"detail":"Not Found"}')

    def malformed_json(self, rid: str) -> Answer:
        """400 for a body that is not JSON."""
        return error(
            400, "Invalid JSON body: the request body could not be parsed", "invalid_request_error"
        )

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Strict schema (422 on any field the API does not define), roles, limits, stop."""
        problem = _check_fields(body)
        if problem is not None:
            return problem
        model, messages = body["model"], body["messages"]
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            loc = "model" if not isinstance(model, str) else "messages"
            return unprocessable(
                [
                    {
                        "type": "invalid",
                        "loc": ["body", loc],
                        "msg": "Invalid value",
                        "input": body[loc],
                    }
                ]
            )
        read = _read_messages(messages)
        if isinstance(read, Answer):
            return read
        texts, prompt = read
        turns = _tool_turns(messages)
        if isinstance(turns, Answer):
            return turns
        tools = _read_tools(body)
        if isinstance(tools, Answer):
            return tools
        images = read_images(messages, MISTRAL_LIMITS, _bad_request)
        if isinstance(images, Answer):
            return images
        output = read_output(body, _bad_request, need_json_word=False, strict=False)
        if isinstance(output, Answer):
            return output
        limit, stop = body.get("max_tokens"), body.get("stop")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            detail = {
                "type": "int_type",
                "loc": ["body", "max_tokens"],
                "msg": "Input should be a valid integer",
                "input": limit,
            }
            return unprocessable([detail])
        stops = (
            (stop,) if isinstance(stop, str) else tuple(s for s in stop or () if isinstance(s, str))
        )
        conv = Conversation.from_texts(
            model,
            texts,
            prompt,
            max_tokens=limit,
            stop=stops,
            stream=body.get("stream") is True,
        )
        conv.tools, conv.tool_choice, conv.parallel_tools = tools
        conv.last_role, conv.tool_results = turns
        fill_output(conv, output, images)
        return conv

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """400 "Function calling is not enabled for this model"."""
        message = "Function calling is not enabled for this model"
        return error(400, message, "invalid_request_error", "3051")

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """400 ``invalid_model`` (not 404), as the real API answers."""
        return error(400, f"Invalid model: {model}", "invalid_model", "1500")

    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """400 ``Prompt contains N tokens ... too large for model``."""
        tokens = CONTEXT_WINDOW + conv.prompt_tokens
        message = (
            f"Prompt contains {tokens} tokens and 0 draft tokens, too large for model with "
            f"{CONTEXT_WINDOW} maximum context length"
        )
        return error(400, message, "invalid_request_message_error", "3051")

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """Gateway bodies for 401/429/502/503, API bodies for 500 and capacity."""
        kind = fault.kind
        if kind == "rate_limit":
            answer = gateway(429, "Requests rate limit exceeded")
            answer.headers = retry_after_headers(fault.retry_after, with_ms=False)
            answer.throttled_for = fault.retry_after or 0.0
        elif kind == "unauthorized":
            answer = self.auth_error("invalid", rid)
        elif kind in _GATEWAY:
            status, message = _GATEWAY[kind]
            answer = gateway(status, message)
        else:
            status, message, etype, code = _ERRORS.get(kind, _ERRORS["server_error"])
            answer = error(status, message, etype, code)
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def _usage(self, conv: Conversation, reply: Reply) -> str:
        total = conv.prompt_tokens + reply.tokens
        return (
            f'{{"prompt_tokens":{conv.prompt_tokens},"total_tokens":{total},'
            f'"completion_tokens":{reply.tokens}}}'
        )

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The chat completion, keys in the order the live API sends them."""
        calls = _calls(reply.calls) or None
        message = {"role": "assistant", "tool_calls": calls, "content": reply.text}
        choice = {"index": 0, "finish_reason": FINISH[reply.finish], "message": message}
        return (
            f'{{"id":"{rid}","created":{int(time.time())},"model":{json.dumps(conv.model)},'
            f'"usage":{self._usage(conv, reply)},"object":"chat.completion",'
            f'"choices":[{json.dumps(choice)}]}}'
        ).encode()

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """Role chunk, token chunks, finish chunk carrying ``usage``, then ``[DONE]``."""
        pre = (
            f'data: {{"id":"{rid}","object":"chat.completion.chunk","created":{int(time.time())},'
            f'"model":{json.dumps(conv.model)},"choices":[{{"index":0,"delta":'
        )
        open_ = ',"finish_reason":null,"logprobs":null}]}\n\n'
        head = [f'{pre}{{"role":"assistant","content":""}}{open_}'.encode()]
        content = [
            f'{pre}{{"content":{json.dumps(piece)}}}{open_}'.encode() for piece in reply.chunks
        ]
        if reply.calls:  # whole calls, all in one chunk
            calls = json.dumps(_calls(reply.calls), ensure_ascii=False)
            content.append(f'{pre}{{"content":"","tool_calls":{calls}}}{open_}'.encode())
        finish = (
            f'{pre}{{"content":""}},"finish_reason":"{FINISH[reply.finish]}","logprobs":null}}],'
            f'"usage":{self._usage(conv, reply)}}}\n\n'
        )
        return StreamPlan(head, content, [finish.encode(), b"data: [DONE]\n\n"])

    def stream_error(self, rid: str) -> bytes:
        """An API error object as a data event."""
        payload = {
            "object": "error",
            "message": "Internal server error",
            "type": "internal_server_error",
            "param": None,
            "code": "1000",
        }
        return b"data: " + dumps(payload) + b"\n\n"

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """``ratelimitbysize-*`` (tokens per minute and month) and a correlation id."""
        cost = sum(tokens)
        minute_left, _ = self._minute.take(cost)
        month_left, _ = self._month.take(cost)
        if throttled_for is not None:
            minute_left = 0
        return {
            "server": "cloudflare",
            "mistral-correlation-id": str(uuid.uuid4()),
            "ratelimitbysize-limit": str(self._minute.limit),
            "ratelimitbysize-remaining": str(minute_left),
            "ratelimitbysize-reset": str(60 - int(time.time()) % 60),
            "ratelimitbysize-query-cost": str(cost),
            "x-ratelimitbysize-limit-minute": str(self._minute.limit),
            "x-ratelimitbysize-remaining-minute": str(minute_left),
            "x-ratelimitbysize-limit-month": str(self._month.limit),
            "x-ratelimitbysize-remaining-month": str(month_left),
            "x-kong-upstream-latency": str(round(elapsed_s * 1000)),
            "x-kong-proxy-latency": "0",
        }


# --- tools ----------------------------------------------------------------------------------


def _calls(calls: tuple[PlannedCall, ...]) -> list[dict[str, Any]]:
    """The emulated model's calls as Mistral sends them: nine-character ids, ``index``."""
    return [
        {
            "id": random_base62(9),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json},
            "index": index,
        }
        for index, call in enumerate(calls)
    ]


def _bad_id(call_id: Any) -> Answer:
    payload = {
        "object": "error",
        "message": f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9.",
        "type": "invalid_function_call",
        "param": None,
        "code": "3280",
        "raw_status_code": 400,
    }
    return Answer(400, dumps(payload))


def _tool_turns(messages: list[dict[str, Any]]) -> tuple[str, tuple[ToolResult, ...]] | Answer:
    """(last role, results of the last turns) with Mistral's id and pairing rules."""
    pending: dict[str, str] = {}
    results: list[ToolResult] = []
    role = "user"
    for message in messages:
        role = message["role"]
        if role != "tool" and pending:
            return error(400, UNPAIRED, "invalid_request_message_error", "3230")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id is not None and not CALL_ID.fullmatch(str(call_id)):
                return _bad_id(call_id)
            key = call_id if call_id is not None else next(iter(pending), None)
            if key not in pending:
                return error(400, UNPAIRED, "invalid_request_message_error", "3230")
            results.append(ToolResult(pending.pop(key), text_parts(message.get("content"))))
            continue
        results = []
        calls = message.get("tool_calls") if role == "assistant" else None
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            call_id = call.get("id") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                detail = {"type": "missing", "loc": ["body", "messages", "tool_calls"],
                          "msg": "Field required", "input": call}  # fmt: skip
                return unprocessable([detail])
            if not CALL_ID.fullmatch(str(call_id)):
                return _bad_id(call_id)
            pending[str(call_id)] = function["name"]
    if pending:
        return error(400, UNPAIRED, "invalid_request_message_error", "3230")
    return role, tuple(results)


def _read_tools(body: dict[str, Any]) -> tuple[tuple[OfferedTool, ...], str, bool] | Answer:
    """(offered tools, neutral choice, parallel), or the 422 for a wrong shape."""
    tools, choice = body.get("tools"), body.get("tool_choice", "auto")
    offered: list[OfferedTool] = []
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return _invalid_field(["body", "tools", i, "function"], tool)
        if not isinstance(function.get("parameters"), dict):
            return _invalid_field(["body", "tools", i, "function", "parameters"], function)
        offered.append(OfferedTool(function["name"], function["parameters"] or NO_PARAMETERS))
    if tools is not None and not isinstance(tools, list):
        return _invalid_field(["body", "tools"], tools)
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            return _invalid_field(["body", "tool_choice"], choice)
        picked = name
    elif choice in CHOICES:
        picked = CHOICES[choice]
    else:
        return _invalid_field(["body", "tool_choice"], choice)
    return tuple(offered), picked, body.get("parallel_tool_calls") is not False


def _invalid_field(loc: list[Any], value: Any) -> Answer:
    detail = {"type": "invalid", "loc": loc, "msg": "Invalid value", "input": value}
    return unprocessable([detail])
