"""Anthropic's Messages API as a client protocol: ``POST /v1/messages``.

Requests are read (:mod:`flyllm.server.anthropic_read`) into flyllm's provider-neutral types,
so any instance of the pool can serve them; answers are rendered in Anthropic's exact shapes:
a ``message`` object (``msg_`` id, content blocks, ``stop_reason``, ``stop_sequence``,
``usage``), the stream's event sequence (:mod:`flyllm.server.anthropic_stream`) and the
``{"type": "error", "error": {...}}`` body, with the request id in ``request-id``.

Decisions (docs/gateway/anthropic.md says them for users):

- ``anthropic-version`` is required, as Anthropic's API requires it: 2023-01-01, 2023-06-01
  and 2026-10-21 (what the current SDKs send) are accepted, anything else is a 400.
  ``anthropic-beta`` is ignored: betas switch on Anthropic-only features, which the pool's
  other providers could not honour anyway.
- ``thinking`` goes to Anthropic instances only (as their ``provider_params``) and is
  ignored by the others; thinking blocks of earlier answers go back to Anthropic unchanged and
  are dropped for the others. An Anthropic answer's thinking blocks come first in ``content``.
- ``stop_reason``: flyllm's finish reasons (stop -> end_turn, length -> max_tokens,
  tool_calls -> tool_use, content_filter -> refusal); Anthropic's own reason when an Anthropic
  instance answered. ``stop_sequence`` is reported only when the upstream says a stop
  sequence ended the answer (Anthropic does; OpenAI, Gemini and Mistral say "stop" for both),
  and names the sequence when the request had exactly one.
- ``usage``: input_tokens excludes cached tokens, which are reported as
  ``cache_read_input_tokens`` (flyllm counts Anthropic's cache writes there too);
  ``cache_creation_input_tokens`` is 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from flyllm.server.anthropic_read import read_system, read_tool_choice, read_tools, read_turns
from flyllm.server.anthropic_render import (
    error_body,
    message_id,
    stop_reason,
    thinking_blocks,
    tool_use_block,
    usage,
)
from flyllm.server.anthropic_stream import EventWriter
from flyllm.server.dialect import Call
from flyllm.server.errors import GatewayError, bad_request, classify
from flyllm.types import GenerationRequest, JsonSchema, LlmResponse

if TYPE_CHECKING:
    from flyllm.server.app import Gateway

__all__ = [
    "ANTHROPIC",
    "VERSIONS",
    "AnthropicMessages",
    "add_anthropic_routes",
    "count_tokens",
    "estimate_tokens",
]

VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})
"""The ``anthropic-version`` header values the gateway accepts."""

_SAMPLING = ("temperature", "top_p", "top_k")
# Fields that need Anthropic's own infrastructure: a clear 400 rather than a silent answer
# that ignored them. Other unknown fields (metadata, service_tier, cache_control...) are
# ignored, as they change nothing a provider behind the gateway could do.
_REFUSED = ("container", "mcp_servers")


class AnthropicMessages:
    """The Messages dialect (see the module docstring)."""

    name = "anthropic"
    request_id_header = "request-id"

    def check_headers(self, headers: Mapping[str, str]) -> GatewayError | None:
        """A 400 when ``anthropic-version`` is missing or not one of VERSIONS."""
        version = headers.get("anthropic-version")
        if version is None:
            return bad_request(
                "anthropic-version: header is required (e.g. 'anthropic-version: 2023-06-01')"
            )
        if version.strip() not in VERSIONS:
            return bad_request(
                f"anthropic-version: {version[:40]!r} is not a version this gateway knows; "
                f"send one of {', '.join(sorted(VERSIONS))}"
            )
        return None

    def parse(self, body: Any, *, counting: bool = False) -> Call:
        """The request body as a Call; ``counting`` reads a count_tokens body (no
        ``max_tokens``, no ``stream``)."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("model: Field required (the name of a task or alias)", "model")
        for name in _REFUSED:
            if body.get(name):
                raise bad_request(f"{name}: needs Anthropic's own API; the gateway has none", name)
        tools = read_tools(body.get("tools"))
        choice, parallel = read_tool_choice(body.get("tool_choice"), tools is not None)
        stops = _stop_sequences(body.get("stop_sequences"))
        params = _params(body, stops, counting)
        request = GenerationRequest(
            messages=read_turns(body.get("messages")),
            system=read_system(body.get("system")),
            params=params or None,
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=parallel,
            provider_params=_thinking(body.get("thinking")),
            response_format=_output_format(body.get("output_config")),
        )
        stream = False if counting else body.get("stream", False)
        if not isinstance(stream, bool):
            raise bad_request("stream: must be a boolean", "stream")
        return Call(request, model, stream, echo={"stop_sequences": stops} if stops else {})

    def render(self, call: Call, response: LlmResponse, request_id: str) -> dict[str, Any]:
        """The whole answer as a ``message`` object."""
        reason, sequence = stop_reason(call, response)
        return {
            "id": message_id(request_id),
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": _content(response),
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage(response.usage),
        }

    def stream_writer(self, call: Call, request_id: str) -> EventWriter:
        """The writer of Anthropic's event sequence for one streamed answer."""
        return EventWriter(call, message_id(request_id))

    def render_error(self, err: GatewayError) -> dict[str, Any]:
        """Anthropic's error body."""
        return error_body(err)


def _content(response: LlmResponse) -> list[dict[str, Any]]:
    blocks = thinking_blocks(response)
    if response.content or not response.tool_calls:
        blocks.append({"type": "text", "text": response.content})
    blocks.extend(tool_use_block(c) for c in response.tool_calls)
    return blocks


def _params(body: dict[str, Any], stops: list[str], counting: bool) -> dict[str, Any]:
    params: dict[str, Any] = {k: body[k] for k in _SAMPLING if body.get(k) is not None}
    limit = body.get("max_tokens")
    if not counting:
        if limit is None:
            raise bad_request("max_tokens: Field required", "max_tokens")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise bad_request("max_tokens: must be a positive integer", "max_tokens")
        params["max_tokens"] = limit
    if stops:
        params["stop"] = stops
    return params


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise bad_request("stop_sequences: must be an array of non-empty strings", "stop_sequences")
    return value


def _thinking(value: Any) -> dict[str, dict[str, Any]] | None:
    """``thinking`` for Anthropic instances only (the others have no such switch)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise bad_request("thinking: must be an object with a 'type'", "thinking")
    return {"anthropic": {"thinking": value}}


def _output_format(value: Any) -> JsonSchema | None:
    """``output_config.format`` (a JSON schema) as flyllm's response_format, which every
    provider with structured output honours and flyllm validates; ``effort`` is ignored."""
    if value is None:
        return None
    found = value.get("format") if isinstance(value, dict) else None
    if found is None:
        return None
    if not isinstance(found, dict) or found.get("type") != "json_schema":
        raise bad_request(
            "output_config.format: expected {type: json_schema, schema}", "output_config"
        )
    schema = found.get("schema")
    if not isinstance(schema, dict):
        raise bad_request("output_config.format.schema must be an object", "output_config")
    return JsonSchema("output", schema)


def estimate_tokens(call: Call) -> int:
    """An estimate of a request's input tokens for ``count_tokens``: about four characters a
    token over the system prompt, the turns, the tool calls and results and the tools'
    definitions, plus 1,600 per image (Anthropic's figure for a 1.15-megapixel image). Only
    the provider that answers knows the real count, and the pool may hold several."""
    request = call.request
    chars = len(request.system or "")
    images = 0
    for m in request.messages or ():
        chars += len(m.content) + 4
        images += len(m.images)
        for c in m.tool_calls:
            chars += len(c.name) + len(json.dumps(c.arguments))
    for t in request.tools or ():
        chars += len(t.name) + len(t.description) + len(json.dumps(t.parameters))
    return chars // 4 + 1 + 1600 * images


ANTHROPIC = AnthropicMessages()
"""The dialect (stateless: one for every gateway)."""


def add_anthropic_routes(app: web.Application, gateway: Gateway) -> None:
    """``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` on ``gateway``'s
    application (here rather than in app.py, which every client protocol shares)."""

    async def messages(request: web.Request) -> web.StreamResponse:
        refused = ANTHROPIC.check_headers(request.headers)
        if refused is not None:
            return gateway._error(ANTHROPIC, refused, {"request-id": gateway._request_id()})
        return await gateway._generate(request, ANTHROPIC)

    async def counting(request: web.Request) -> web.Response:
        return await count_tokens(gateway, request)

    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", counting)


async def count_tokens(gateway: Gateway, request: web.Request) -> web.Response:
    """``POST /v1/messages/count_tokens`` (Claude Code and the SDK's
    ``messages.count_tokens`` call it): the checks of a message (version header, key, body,
    model) and ``{"input_tokens": N}`` with N from estimate_tokens, an estimate."""
    dialect = ANTHROPIC
    headers = {dialect.request_id_header: gateway._request_id()}
    try:
        refused = dialect.check_headers(request.headers)
        if refused is not None:
            raise refused
        key = gateway.authenticate(request)
        call = dialect.parse(await gateway._read_json(request), counting=True)
        gateway._route(call, key)
        tokens = estimate_tokens(call)
    except Exception as exc:  # as the other routes: every failure in the caller's protocol
        return gateway._error(dialect, classify(exc), headers)
    return web.json_response({"input_tokens": tokens}, headers=headers)
