"""OpenAI Chat Completions (``POST /v1/chat/completions``), after OpenAI's API reference, and
the models list (``GET /v1/models``, docs/WIRE-models.md section 1).

Tools as the API takes them: ``tools[{type: "function", function: {name, description?,
parameters?, strict?}}]``, ``tool_choice`` (none|auto|required or ``{type: "function",
function: {name}}``) and ``parallel_tool_calls``, both only with tools; assistant turns with
``tool_calls`` (``content`` may then be null), each followed by one ``role: "tool"`` message per
call id (the API's two 400s otherwise). Calls are answered with ``call_`` ids, ``content: null``
and finish ``tool_calls``; streams send a call's id and name first, then its arguments in
several fragments keyed by ``index``.

Embeddings (``POST /v1/embeddings``): ``input`` a text, a list of texts or token arrays (at
most 2048, none empty, each within the model's 8192 tokens and 300,000 summed), ``dimensions``
(text-embedding-3 only), ``encoding_format`` float or base64; vectors from
:mod:`flyllm.emulator.embeddings`, usage = words.

``response_format`` and ``image_url`` parts as :mod:`flyllm.emulator.dialects.chat_output`
reads them (OpenAI's rules and 400s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from flyllm.emulator.catalog import catalog
from flyllm.emulator.dialects.chat_output import (
    OPENAI_LIMITS,
    fill_output,
    read_images,
    read_output,
)
from flyllm.emulator.dialects.chat_tools import (
    ToolTurns,
    call_fragments,
    call_object,
    read_tool_turns,
    read_tools,
)
from flyllm.emulator.embeddings import as_base64, vector
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply, count_words
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
    go_duration,
    random_base62,
    random_hex,
    retry_after_headers,
)

__all__ = ["OpenAIDialect", "ToolTurns", "read_tool_turns", "read_tools"]

ROUTE = "/v1/chat/completions"
EMBED_ROUTE = "/v1/embeddings"
EMBED_FIELDS = frozenset({"input", "model", "dimensions", "encoding_format", "user"})
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000
BAD_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)
MODELS_ROUTE = "/v1/models"
CONTEXT_WINDOW = 128_000
_KNOWN_FIELDS = """
    audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens
    max_tokens messages metadata modalities model moderation n parallel_tool_calls prediction
    presence_penalty prompt_cache_key prompt_cache_options prompt_cache_retention reasoning_effort
    response_format safety_identifier seed service_tier stop store stream stream_options
    temperature tool_choice tools top_logprobs top_p user verbosity web_search_options"""
KNOWN_FIELDS = frozenset(_KNOWN_FIELDS.split())
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
FINISH = {
    "end": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "refusal": "stop",
    "tool_calls": "tool_calls",
}
KEY_URL = "https://platform.openai.com/account/api-keys"
MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
    "blank username) if you're accessing the API from your browser and are prompted for a "
    f"username and password. You can obtain an API key from {KEY_URL}."
)
BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
    "not valid JSON. If you have trouble figuring out how to fix this, please contact us through "
    "our help center at help.openai.com.)"
)
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
BAD_GATEWAY = (
    b'{"error":{"code":502,"message":"Bad gateway.","param":null,"type":"cf_bad_gateway"}}'
)
_USAGE_DETAILS = (
    '"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":'
    '{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,'
    '"rejected_prediction_tokens":0}'
)


def mask_key(key: str) -> str:
    """The key as OpenAI echoes it in errors: a few characters each end, the rest starred."""
    if len(key) < 12:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def error(
    status: int, message: str, etype: str, param: str | None = None, code: str | None = None
) -> Answer:
    """An answer with OpenAI's error body (all four keys, ``param``/``code`` nullable)."""
    payload = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return Answer(status, dumps(payload))


def invalid(message: str, param: str | None = None, code: str | None = None) -> Answer:
    """A 400 ``invalid_request_error``."""
    return error(400, message, "invalid_request_error", param, code)


class OpenAIDialect(Dialect):
    """OpenAI's dialect: Bearer auth, ``x-ratelimit-*`` headers, ``data:``-only SSE with [DONE]."""

    provider = "openai"

    def __init__(self, models: frozenset[str] | None) -> None:
        super().__init__(models)
        self._requests = Bucket(30_000)
        self._tokens = Bucket(150_000_000)
        self._fingerprint = "fp_" + random_hex(10)

    def base_url(self, root: str) -> str:
        """``http://host:port/v1``, as ``openai.OpenAI(base_url=...)`` expects."""
        return root + "/v1"

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST /v1/chat/completions``, ``POST /v1/embeddings`` and ``GET /v1/models``."""
        if method == "POST" and path == EMBED_ROUTE:
            return Route(EMBED_ROUTE, embed=True)
        return chat_route(method, path, ROUTE, MODELS_ROUTE)

    def embed(
        self, route: Route, body: dict[str, Any], input_limit: int | None, rid: str
    ) -> Answer:
        """The embeddings list, or OpenAI's 400 for what the API refuses."""
        unknown = sorted(set(body) - EMBED_FIELDS)
        if unknown:
            return invalid(f"Unrecognized request argument supplied: {unknown[0]}")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return invalid("you must provide a model parameter")
        if not self.known_model(model):
            return self.unknown_model(model, route, rid)
        texts = _embed_inputs(body.get("input"))
        if isinstance(texts, Answer):
            return texts
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or dims < 1):
            return invalid("Invalid 'dimensions': expected a positive integer.", "dimensions")
        if dims is not None and not model.startswith("text-embedding-3"):
            return invalid("This model does not support specifying dimensions.", "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return invalid(
                f"Invalid value: {encoding!r}. Supported values are: 'float' and 'base64'.",
                "encoding_format",
                "invalid_value",
            )
        return _embeddings(model, texts, dims, encoding == "base64", input_limit)

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """``{"object": "list", "data": [{"id", "object", "created", "owned_by"}]}``, every
        model at once (the API does not paginate)."""
        data = [
            {"id": m.id, "object": "model", "created": m.created, "owned_by": "system"}
            for m in catalog("openai", self.models)
        ]
        return Answer(200, dumps({"object": "list", "data": data}))

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The ``Authorization: Bearer`` token."""
        return bearer_token(headers)

    def request_id(self) -> str:
        """``req_`` and 32 hex digits."""
        return "req_" + random_hex(32)

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """401, with OpenAI's wording for a missing or an incorrect key."""
        if key is None:
            return error(401, MISSING_KEY, "invalid_request_error")
        message = (
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at {KEY_URL}."
        )
        return error(401, message, "invalid_request_error", None, "invalid_api_key")

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """404 ``Invalid URL``."""
        return error(404, f"Invalid URL ({method} {path})", "invalid_request_error")

    def malformed_json(self, rid: str) -> Answer:
        """400, OpenAI's long JSON-parsing hint."""
        return invalid(BAD_JSON)

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Validate like the API: unknown fields, model, messages, limits, stop, stream options."""
        for name in body:
            if name not in KNOWN_FIELDS:
                return invalid(f"Unrecognized request argument supplied: {name}")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return invalid("you must provide a model parameter")
        messages = body.get("messages")
        if messages is None:
            return invalid(
                "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
            )
        if not isinstance(messages, list) or not messages:
            return invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                "messages",
                "empty_array",
            )
        return self._conversation(model, messages, body)

    def _conversation(
        self, model: str, messages: list[Any], body: dict[str, Any]
    ) -> Conversation | Answer:
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                return invalid(
                    f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                    "'user', 'function', 'tool', and 'developer'.",
                    f"messages[{i}].role",
                    "invalid_value",
                )
        turns = read_tool_turns(messages)
        if isinstance(turns, Answer):
            return turns
        tools = read_tools(body)
        if isinstance(tools, Answer):
            return tools
        images = read_images(messages, OPENAI_LIMITS, invalid)
        if isinstance(images, Answer):
            return images
        output = read_output(body, invalid)
        if isinstance(output, Answer):
            return output
        limit = _max_tokens(body)
        if isinstance(limit, Answer):
            return limit
        stop = _stops(body.get("stop"))
        if isinstance(stop, Answer):
            return stop
        stream = body.get("stream") is True
        options = body.get("stream_options")
        if options is not None and not stream:
            return invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        conv = Conversation.from_texts(
            model,
            turns.texts,
            turns.prompt,
            max_tokens=limit,
            stop=stop,
            stream=stream,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )
        fill_output(conv, output, images)
        return turns.fill(conv, *tools)

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """400 ``unsupported_parameter`` naming 'tools', as for models without tool calling."""
        return invalid(
            "Unsupported parameter: 'tools' is not supported with this model.",
            "tools",
            "unsupported_parameter",
        )

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """404 ``model_not_found``."""
        message = f"The model `{model}` does not exist or you do not have access to it."
        return error(404, message, "invalid_request_error", None, "model_not_found")

    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """400 ``context_length_exceeded``."""
        message = (
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your "
            f"messages resulted in {CONTEXT_WINDOW + conv.prompt_tokens} tokens. Please reduce the "
            "length of the messages."
        )
        return invalid(message, "messages", "context_length_exceeded")

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """OpenAI's bodies for each error kind (Cloudflare's for 502/503 at the edge)."""
        kind = fault.kind
        if kind == "rate_limit":
            wait = go_duration(fault.retry_after or 0.0)
            message = (
                f"Rate limit reached for {conv.model} in organization org-emulator on requests "
                f"per min (RPM): Limit {self._requests.limit}, Used {self._requests.limit}, "
                f"Requested 1. Please try again in {wait}. Visit "
                "https://platform.openai.com/account/rate-limits to learn more."
            )
            answer = error(429, message, "requests", None, "rate_limit_exceeded")
            answer.headers = retry_after_headers(fault.retry_after, with_ms=True)
            answer.throttled_for = fault.retry_after or 0.0
        elif kind == "quota":
            answer = error(429, QUOTA, "insufficient_quota", None, "insufficient_quota")
        elif kind == "bad_gateway":
            answer = Answer(502, BAD_GATEWAY)
        elif kind == "unavailable":
            answer = error(503, "Service Unavailable", "cf_service_unavailable", None, "503")
        elif kind == "overloaded":
            answer = error(
                503, "The engine is currently overloaded, please try again later", "server_error"
            )
        elif kind == "unauthorized":
            answer = self.auth_error("sk-emulated-invalid-key", rid)
        else:
            answer = error(500, SERVER_ERROR, "server_error")
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The ``chat.completion`` object (``content: null`` and ``tool_calls`` for calls)."""
        text = json.dumps(reply.text)
        content, refusal = ("null", text) if reply.finish == "refusal" else (text, "null")
        calls = ""
        if reply.calls:
            content = "null"
            whole = [call_object(call) for call in reply.calls]
            calls = f'"tool_calls":{json.dumps(whole, ensure_ascii=False)},'
        total = conv.prompt_tokens + reply.tokens
        return (
            f'{{"id":"chatcmpl-{random_base62(29)}","object":"chat.completion",'
            f'"created":{int(time.time())},"model":{json.dumps(conv.model)},'
            f'"choices":[{{"index":0,"message":{{"role":"assistant","content":{content},{calls}'
            f'"refusal":{refusal},"annotations":[]}},"logprobs":null,'
            f'"finish_reason":"{FINISH[reply.finish]}"}}],'
            f'"usage":{{"prompt_tokens":{conv.prompt_tokens},"completion_tokens":{reply.tokens},'
            f'"total_tokens":{total},{_USAGE_DETAILS}}},'
            f'"service_tier":"default","system_fingerprint":"{self._fingerprint}"}}'
        ).encode()

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """Role chunk, one chunk per token, finish chunk, optional usage chunk, ``[DONE]``."""
        pre = (
            f'data: {{"id":"chatcmpl-{random_base62(29)}","object":"chat.completion.chunk",'
            f'"created":{int(time.time())},"model":{json.dumps(conv.model)},"service_tier":"default",'
            f'"system_fingerprint":"{self._fingerprint}","choices":'
        )
        field = "refusal" if reply.finish == "refusal" else "content"
        first = (
            '{"role":"assistant","content":null,"refusal":""}'
            if field == "refusal" or reply.calls
            else ('{"role":"assistant","content":"","refusal":null}')
        )
        after = ',"logprobs":null,"finish_reason":null}]}\n\n'
        head = [f'{pre}[{{"index":0,"delta":{first}{after}'.encode()]
        content = [
            f'{pre}[{{"index":0,"delta":{{"{field}":{json.dumps(piece)}}}{after}'.encode()
            for piece in reply.chunks
        ]
        content += [
            f'{pre}[{{"index":0,"delta":{{"tool_calls":[{dumps(fragment).decode()}]}}{after}'.encode()
            for fragment in call_fragments(reply.calls)
        ]
        finish = FINISH[reply.finish]
        tail = [
            f'{pre}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}]}}\n\n'.encode()
        ]
        if conv.include_usage:
            total = conv.prompt_tokens + reply.tokens
            tail.append(
                f'{pre}[],"usage":{{"prompt_tokens":{conv.prompt_tokens},"completion_tokens":{reply.tokens},'
                f'"total_tokens":{total},{_USAGE_DETAILS}}}}}\n\n'.encode()
            )
        tail.append(b"data: [DONE]\n\n")
        return StreamPlan(head, content, tail)

    def stream_error(self, rid: str) -> bytes:
        """``data: {"error": {...}}``, which the SDK raises as ``APIError``."""
        payload = {
            "error": {"message": SERVER_ERROR, "type": "server_error", "param": None, "code": None}
        }
        return b"data: " + dumps(payload) + b"\n\n"

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """``x-request-id``, ``openai-processing-ms`` and ``x-ratelimit-*`` (Go durations)."""
        left_requests, reset_requests = self._requests.take(1)
        left_tokens, reset_tokens = self._tokens.take(sum(tokens))
        if throttled_for is not None:
            left_requests, reset_requests = 0, throttled_for
        return {
            "server": "cloudflare",
            "x-request-id": rid,
            "openai-processing-ms": str(round(elapsed_s * 1000)),
            "openai-organization": "org-emulator",
            "openai-version": "2020-10-01",
            "x-ratelimit-limit-requests": str(self._requests.limit),
            "x-ratelimit-limit-tokens": str(self._tokens.limit),
            "x-ratelimit-remaining-requests": str(left_requests),
            "x-ratelimit-remaining-tokens": str(left_tokens),
            "x-ratelimit-reset-requests": go_duration(reset_requests),
            "x-ratelimit-reset-tokens": go_duration(reset_tokens),
        }


def _max_tokens(body: dict[str, Any]) -> int | Answer | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            return invalid(
                f"Invalid type for '{name}': expected an integer, but got "
                f"{type(value).__name__} instead.",
                name,
                "invalid_type",
            )
        if value < 1:
            return invalid(
                f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got "
                f"{value} instead.",
                name,
                "integer_below_min_value",
            )
        return value
    return None


def _stops(stop: Any) -> tuple[str, ...] | Answer:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,)
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        return invalid(
            "Invalid type for 'stop': expected a string or an array of strings.",
            "stop",
            "invalid_type",
        )
    if len(stop) > 4:
        return invalid(
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an "
            f"array with length {len(stop)} instead.",
            "stop",
            "array_above_max_length",
        )
    return tuple(stop)


def _embed_inputs(raw: Any) -> list[str] | Answer:
    """The inputs as texts (a token array stands for one word a token), or OpenAI's 400."""
    if raw is None:
        return invalid(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    items = [raw] if isinstance(raw, str) or _tokens(raw) else raw
    if not isinstance(items, list) or not items:
        return invalid(BAD_INPUT)
    if len(items) > MAX_INPUTS:
        return invalid(
            "Invalid 'input': array too long. Expected an array with maximum length "
            f"{MAX_INPUTS}, but got an array with length {len(items)} instead.",
            "input",
            "array_above_max_length",
        )
    texts = []
    for item in items:
        if _tokens(item) and item:
            texts.append(" ".join(f"t{t}" for t in item))
        elif isinstance(item, str) and item:
            texts.append(item)
        else:
            return invalid(BAD_INPUT)
    return texts


def _tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
        and bool(value)
    )


def _embeddings(
    model: str, texts: list[str], dims: int | None, b64: bool, input_limit: int | None
) -> Answer:
    limit = input_limit or MAX_INPUT_TOKENS
    counts = [count_words(t) for t in texts]
    for n in counts:
        if n > limit:
            return invalid(
                f"This model's maximum context length is {limit} tokens, however you "
                f"requested {n} tokens ({n} in your prompt; 0 for the completion). Please "
                "reduce your prompt; or completion length."
            )
    total = sum(counts)
    if total > MAX_REQUEST_TOKENS:
        return error(
            400,
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            "max_tokens_per_request",
            "input",
            "max_tokens_per_request",
        )
    data = []
    for i, text in enumerate(texts):
        values = vector(text, model, dims)
        data.append({"object": "embedding", "index": i,
                     "embedding": as_base64(values) if b64 else values})  # fmt: skip
    usage = {"prompt_tokens": total, "total_tokens": total}
    return Answer(200, dumps({"object": "list", "data": data, "model": model, "usage": usage}))
