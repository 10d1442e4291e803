"""Anthropic Messages (``POST /v1/messages``), after Anthropic's API reference with its late-2026
changes, and the models list (``GET /v1/models``, docs/WIRE-models.md section 3). Tool use and
extended thinking: :mod:`flyllm.emulator.dialects._anthropic_tools`; structured output
(``output_config``) and images: :mod:`flyllm.emulator.dialects._anthropic_output`."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from flyllm.emulator.catalog import CatalogModel, catalog, page_size
from flyllm.emulator.dialects._anthropic_output import read_images, read_output
from flyllm.emulator.dialects._anthropic_tools import (
    AnthropicConversation,
    Problem,
    answer_blocks,
    read_offer,
    read_turns,
    stream_blocks,
)
from flyllm.emulator.faults import Fault
from flyllm.emulator.text import Reply
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
    retry_after_headers,
    rfc3339,
    text_parts,
)

__all__ = ["VERSIONS", "AnthropicDialect"]

ROUTE = "/v1/messages"
MODELS_ROUTE = "/v1/models"
LINES = ("opus", "sonnet", "haiku")
V2023 = "2023-06-01"
V2026 = "2026-10-21"
VERSIONS = (V2023, V2026)
CONTEXT_WINDOW = 200_000
SAMPLING = ("temperature", "top_p", "top_k")
_BASE_FIELDS = """
    cache_control container diagnostics inference_geo max_tokens messages metadata model
    output_config service_tier speed stop_sequences system thinking tool_choice tools
    user_profile_id workspace_id stream"""
BASE_FIELDS = frozenset(_BASE_FIELDS.split())
FIELDS = {V2023: BASE_FIELDS | set(SAMPLING), V2026: BASE_FIELDS}
STOP_REASON = {
    "end": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "refusal",
    "tool_calls": "tool_use",
}
SYSTEM_ROLE = (
    'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
    'not "system" as an input message role.'
)
CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
    "upgrade or purchase credits."
)
RATE_LIMIT = (
    "This request would exceed the rate limit for your organization of {limit} requests per "
    "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
    "response headers for current usage. Please reduce the prompt length or the maximum tokens "
    "requested, or try again later."
)
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
_STREAM_ERROR = (
    b'event: error\ndata: {"type": "error", '
    b'"error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
)
_FAULTS = {
    "server_error": (500, "api_error", "Internal server error"),
    "stream_error": (500, "api_error", "Internal server error"),
    "bad_gateway": (502, "api_error", "Bad gateway"),
    "unavailable": (503, "api_error", "Service unavailable"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "unauthorized": (401, "authentication_error", "invalid x-api-key"),
}


def error(status: int, etype: str, message: str, rid: str) -> Answer:
    """An answer with Anthropic's error envelope, ``request_id`` matching the header."""
    return Answer(
        status,
        dumps({"type": "error", "error": {"type": etype, "message": message}, "request_id": rid}),
    )


def invalid(message: str, rid: str) -> Answer:
    """A 400 ``invalid_request_error``."""
    return error(400, "invalid_request_error", message, rid)


def _check_blocks(index: int, role: str, content: Any, rid: str) -> Answer | None:
    """The 2026-10-21 rules on blocks: no assistant documents, no user text citations."""
    if not isinstance(content, list):
        return None
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        where = f"messages.{index}.content.{j}"
        if role == "assistant" and block.get("type") == "document":
            return invalid(f"{where}: document blocks are not permitted in assistant messages", rid)
        if role == "user" and block.get("type") == "text" and block.get("citations"):
            return invalid(f"{where}.citations: Extra inputs are not permitted", rid)
    return None


def _model_info(model: CatalogModel) -> dict[str, Any]:
    """One ``ModelInfo`` as the API lists it (capabilities left out: the SDK types them as
    optional, and flyllm does not read them)."""
    line = next((name for name in LINES if name in model.id), None)
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.display_name,
        "created_at": rfc3339(model.created),
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": line,
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output,
    }


class AnthropicDialect(Dialect):
    """Anthropic's dialect: x-api-key or Bearer, two API versions, named SSE events."""

    provider = "anthropic"

    def __init__(self, models: frozenset[str] | None) -> None:
        super().__init__(models)
        self._requests = Bucket(4_000)
        self._tokens = Bucket(2_400_000)
        self._input = Bucket(2_000_000)
        self._output = Bucket(400_000)

    def base_url(self, root: str) -> str:
        """``http://host:port``; the SDK appends ``/v1/messages``."""
        return root

    def match(self, method: str, path: str, query: Mapping[str, str]) -> Route | None:
        """``POST /v1/messages`` and ``GET /v1/models``."""
        return chat_route(method, path, ROUTE, MODELS_ROUTE)

    def list_models(self, route: Route, query: Mapping[str, str], rid: str) -> Answer:
        """A page of ``ModelInfo`` objects, most recent first: ``limit`` (1..1000, default 20;
        the emulator serves at most 2), ``after_id`` or ``before_id`` cursors; ``has_more``,
        ``first_id`` and ``last_id`` say where the page sits."""
        models = catalog("anthropic", self.models)
        ids = [m.id for m in models]
        size = page_size(query.get("limit"), 20, 1000)
        if size is None:
            return invalid("limit: Input should be an integer between 1 and 1000", rid)
        for cursor in ("after_id", "before_id"):
            if cursor in query and query[cursor] not in ids:
                return invalid(f"{cursor}: unknown model id {json.dumps(query[cursor])}", rid)
        if "before_id" in query:
            end = ids.index(query["before_id"])
            start = max(0, end - size)
            chunk, more = models[start:end], start > 0
        else:
            start = ids.index(query["after_id"]) + 1 if "after_id" in query else 0
            chunk, more = models[start : start + size], start + size < len(models)
        body = {
            "data": [_model_info(m) for m in chunk],
            "has_more": more,
            "first_id": chunk[0].id if chunk else None,
            "last_id": chunk[-1].id if chunk else None,
        }
        return Answer(200, dumps(body))

    def credentials(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """``x-api-key`` when present (it wins), else the ``Authorization: Bearer`` token."""
        key = headers.get("x-api-key", "").strip()
        if key:
            return key
        return bearer_token(headers)

    def request_id(self) -> str:
        """``req_011C`` and 20 base62 characters, like the API's ids."""
        return "req_011C" + random_base62(20)

    def auth_error(self, key: str | None, rid: str) -> Answer:
        """401 ``authentication_error``."""
        message = "x-api-key header is required" if key is None else "invalid x-api-key"
        return error(401, "authentication_error", message, rid)

    def check_headers(self, headers: Mapping[str, str], rid: str) -> Answer | None:
        """``anthropic-version`` is required and must be a released version."""
        version = headers.get("anthropic-version")
        if version is None:
            return invalid("anthropic-version: header is required", rid)
        if version not in VERSIONS:
            return invalid(f"anthropic-version: {json.dumps(version)} is not a valid version", rid)
        return None

    def not_found(self, method: str, path: str, rid: str) -> Answer:
        """404 ``not_found_error``."""
        return error(404, "not_found_error", "Not Found", rid)

    def malformed_json(self, rid: str) -> Answer:
        """400 for a body that is not JSON."""
        return invalid(
            "There was an error parsing the body of your request. "
            "Please check that it is valid JSON.",
            rid,
        )

    def parse(
        self, route: Route, body: dict[str, Any], headers: Mapping[str, str], rid: str
    ) -> Conversation | Answer:
        """Validate like the API for the request's ``anthropic-version``."""
        version = headers.get("anthropic-version", V2023)
        allowed = FIELDS.get(version, FIELDS[V2023])
        for name in body:
            if name not in allowed:
                return invalid(f"{name}: Extra inputs are not permitted", rid)
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return invalid(f"{name}: Field required", rid)
        model, messages, limit = body["model"], body["messages"], body["max_tokens"]
        if not isinstance(model, str) or not model:
            return invalid("model: Input should be a valid string", rid)
        if not isinstance(limit, int) or isinstance(limit, bool):
            return invalid("max_tokens: Input should be a valid integer", rid)
        if limit < 1:
            return invalid("max_tokens: Input should be greater than or equal to 1", rid)
        if not isinstance(messages, list) or not messages:
            return invalid("messages: at least one message is required", rid)
        stops = body.get("stop_sequences") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            return invalid("stop_sequences: Input should be a valid list of strings", rid)
        try:
            return self._conversation(model, messages, limit, tuple(stops), body, version, rid)
        except Problem as problem:
            return invalid(str(problem), rid)

    def _conversation(
        self,
        model: str,
        messages: list[Any],
        limit: int,
        stops: tuple[str, ...],
        body: dict[str, Any],
        version: str,
        rid: str,
    ) -> Conversation | Answer:
        """The Conversation of a valid body; Problem (raised) for a tool or thinking fault."""
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                return invalid(SYSTEM_ROLE, rid)
            if role not in ("user", "assistant"):
                return invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'", rid)
            assert isinstance(message, dict)
            content = message.get("content")
            if version == V2026 and (problem := _check_blocks(i, role, content, rid)) is not None:
                return problem
        offer = read_offer(body)
        turns = read_turns(messages, offer.thinking)
        schema, images = read_output(body, model), read_images(messages)
        system = [text_parts(body["system"])] if body.get("system") else []
        conv = AnthropicConversation.from_texts(
            model,
            system + turns.texts,
            turns.prompt,
            max_tokens=limit,
            stop=stops,
            stream=body.get("stream") is True,
        )
        assert isinstance(conv, AnthropicConversation)
        conv.output_json, conv.output_schema, conv.images = schema is not None, schema, images
        conv.tools, conv.tool_choice, conv.parallel_tools = (
            offer.tools,
            offer.choice,
            offer.parallel,
        )
        conv.last_role, conv.tool_results, conv.thinking = (
            turns.last_role,
            turns.results,
            offer.thinking,
        )
        return conv

    def tools_unsupported(self, conv: Conversation, rid: str) -> Answer:
        """400 ``invalid_request_error`` naming the model (the emulator's wording: every real
        Claude model takes tools; proxies and compatible servers may not)."""
        return invalid(f"tools: {conv.model} does not support tool use", rid)

    def unknown_model(self, model: str, route: Route, rid: str) -> Answer:
        """404 ``not_found_error`` naming the model."""
        return error(404, "not_found_error", f"model: {model}", rid)

    def context_length(self, conv: Conversation, rid: str) -> Answer:
        """400 ``prompt is too long``."""
        tokens = CONTEXT_WINDOW + conv.prompt_tokens
        return invalid(f"prompt is too long: {tokens} tokens > {CONTEXT_WINDOW} maximum", rid)

    def fault_answer(self, fault: Fault, conv: Conversation, rid: str) -> Answer:
        """Anthropic's bodies; ``quota`` is the 400 credit-balance error, overload is 529."""
        if fault.kind == "rate_limit":
            answer = error(
                429, "rate_limit_error", RATE_LIMIT.format(limit=f"{self._requests.limit:,}"), rid
            )
            answer.headers = retry_after_headers(fault.retry_after, with_ms=True)
            answer.throttled_for = fault.retry_after or 0.0
        elif fault.kind == "quota":
            answer = invalid(CREDIT, rid)
        else:
            status, etype, message = _FAULTS.get(fault.kind, _FAULTS["server_error"])
            answer = error(status, etype, message, rid)
        if fault.status is not None:
            answer.status = fault.status
        return answer

    def _usage(self, conv: Conversation, output: int) -> str:
        return (
            f'{{"input_tokens":{conv.prompt_tokens},"cache_creation_input_tokens":0,'
            f'"cache_read_input_tokens":0,"output_tokens":{output}'
        )

    def body(self, conv: Conversation, reply: Reply, rid: str) -> bytes:
        """The ``message`` object."""
        content = answer_blocks(conv, reply)
        return (
            f'{{"id":"msg_01{random_base62(22)}","type":"message","role":"assistant","model":{json.dumps(conv.model)},'
            f'"content":{json.dumps(content)},"stop_reason":"{STOP_REASON[reply.finish]}",'
            f'"stop_sequence":{json.dumps(reply.stop_sequence)},'
            f'"usage":{self._usage(conv, reply.tokens)},"service_tier":"standard"}}}}'
        ).encode()

    def stream(self, conv: Conversation, reply: Reply, rid: str) -> StreamPlan:
        """message_start, block start, ping, deltas, block stop, message_delta, message_stop."""
        start = (
            'event: message_start\ndata: {"type":"message_start","message":'
            f'{{"id":"msg_01{random_base62(22)}",'
            f'"type":"message","role":"assistant","model":{json.dumps(conv.model)},"content":[],'
            f'"stop_reason":null,"stop_sequence":null,"usage":{self._usage(conv, 1)},'
            '"service_tier":"standard"}}}\n\n'
        )
        delta = (
            'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
            f'"{STOP_REASON[reply.finish]}","stop_sequence":{json.dumps(reply.stop_sequence)}}},'
            f'"usage":{self._usage(conv, reply.tokens)}}}}}\n\n'
        ).encode()
        stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        if reply.calls or (isinstance(conv, AnthropicConversation) and conv.thinking):
            return StreamPlan([start.encode(), _PING], stream_blocks(conv, reply), [delta, stop])
        block = (
            'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            '"content_block":{"type":"text","text":""}}\n\n'
        )
        content = [
            (
                'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                f'"delta":{{"type":"text_delta","text":{json.dumps(piece)}}}}}\n\n'
            ).encode()
            for piece in reply.chunks
        ]
        tail = [
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
            delta,
            stop,
        ]
        return StreamPlan([start.encode(), block.encode(), _PING], content, tail)

    def stream_error(self, rid: str) -> bytes:
        """``event: error`` with an ``overloaded_error``, as the streaming docs show."""
        return _STREAM_ERROR

    def headers(
        self, rid: str, tokens: tuple[int, int], elapsed_s: float, throttled_for: float | None
    ) -> dict[str, str]:
        """``request-id`` and ``anthropic-ratelimit-*`` with RFC 3339 resets."""
        now = time.time()
        headers = {
            "server": "cloudflare",
            "request-id": rid,
            "anthropic-organization-id": "00000000-0000-4000-8000-00000000e401",
        }
        buckets = (
            ("requests", self._requests, 1),
            ("tokens", self._tokens, sum(tokens)),
            ("input-tokens", self._input, tokens[0]),
            ("output-tokens", self._output, tokens[1]),
        )
        for name, bucket, cost in buckets:
            left, reset = bucket.take(cost)
            if name == "requests" and throttled_for is not None:
                left, reset = 0, throttled_for
            if name != "requests":
                left = round(left, -3)
            headers[f"anthropic-ratelimit-{name}-limit"] = str(bucket.limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(left)
            headers[f"anthropic-ratelimit-{name}-reset"] = rfc3339(now + reset)
        return headers
