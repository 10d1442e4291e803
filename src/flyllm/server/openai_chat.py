"""OpenAI's Chat Completions as a client protocol: ``POST /v1/chat/completions``.

Requests are read into flyllm's provider-neutral types, so any instance of the pool can serve
them; answers are rendered in OpenAI's exact shapes (``chat.completion`` and
``chat.completion.chunk`` objects, ``data: [DONE]``, usage as a last chunk when
``stream_options.include_usage`` is set, finish reasons mapped to OpenAI's set).
"""

from __future__ import annotations

import json
import time
from typing import Any

from flyllm.server.dialect import Call
from flyllm.server.errors import GatewayError, bad_request
from flyllm.types import GenerationRequest, LlmResponse, Message, StreamChunk, Usage

__all__ = ["OpenAIChat"]

# flyllm's normalised finish reasons in OpenAI's set ("other" has no twin: "stop" is what
# OpenAI's SDKs and clients handle everywhere).
_FINISH = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "other": "stop",
}
# The error kinds in OpenAI's ``error.type`` names (what its API sends with each status).
_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "upstream": "api_error",
    "unavailable": "api_error",
    "timeout": "api_error",
    "internal": "api_error",
}
_PARAMS = ("temperature", "top_p", "stop", "seed")
_ROLES = ("system", "developer", "user", "assistant")


class OpenAIChat:
    """The Chat Completions dialect (see the module docstring)."""

    name = "openai"
    request_id_header = "x-request-id"

    def parse(self, body: Any) -> Call:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("'model' is required: the name of a task (or alias)", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a non-empty array", "messages")
        system, turns = _messages(messages)
        params: dict[str, Any] = {k: body[k] for k in _PARAMS if body.get(k) is not None}
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None:
            params["max_tokens"] = limit
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise bad_request("'stream' must be a boolean", "stream")
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        request = GenerationRequest(messages=turns, system=system, params=params or None)
        return Call(request, model, stream, include_usage)

    def render(self, call: Call, response: LlmResponse, request_id: str) -> dict[str, Any]:
        return {
            "id": _completion_id(request_id),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": response.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": _FINISH.get(response.finish_reason or "stop", "stop"),
                }
            ],
            "usage": _usage(response.usage),
        }

    def stream_writer(self, call: Call, request_id: str) -> _ChunkWriter:
        return _ChunkWriter(call, _completion_id(request_id))

    def render_error(self, err: GatewayError) -> dict[str, Any]:
        return {
            "error": {
                "message": err.message,
                "type": _ERROR_TYPES.get(err.kind, "api_error"),
                "param": err.param,
                "code": err.code,
            }
        }


class _ChunkWriter:
    """``chat.completion.chunk`` events for one streamed answer."""

    def __init__(self, call: Call, completion_id: str) -> None:
        self._call = call
        self._head = (
            '{"id":' + json.dumps(completion_id) + ',"object":"chat.completion.chunk","created":'
            + str(int(time.time())) + ',"model":' + json.dumps(call.model)
        )  # fmt: skip

    def _event(self, choices: str, usage: str = "") -> bytes:
        return f'data: {self._head},"choices":{choices}{usage}}}\n\n'.encode()

    def start(self, chunk: StreamChunk) -> bytes:
        return self._event('[{"index":0,"delta":{"role":"assistant","content":""},'
                           '"logprobs":null,"finish_reason":null}]')  # fmt: skip

    def chunk(self, chunk: StreamChunk) -> bytes:
        if not chunk.text:
            return b""
        delta = '{"content":' + json.dumps(chunk.text) + "}"
        return self._event(f'[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":null}}]')

    def end(self, response: LlmResponse) -> bytes:
        finish = _FINISH.get(response.finish_reason or "stop", "stop")
        out = self._event(
            f'[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}]'
        )
        if self._call.include_usage:
            out += self._event("[]", ',"usage":' + json.dumps(_usage(response.usage)))
        return out + b"data: [DONE]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return f"data: {json.dumps(OpenAIChat().render_error(err))}\n\n".encode()


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _messages(items: list[Any]) -> tuple[str | None, list[Message]]:
    """System and developer turns join into flyllm's ``system``; the rest become Messages."""
    system: list[str] = []
    turns: list[Message] = []
    for i, item in enumerate(items):
        where = f"messages[{i}]"
        if not isinstance(item, dict) or item.get("role") not in _ROLES:
            raise bad_request(f"{where}: expected an object with a role in {_ROLES}", where)
        text = _text(item.get("content"), f"{where}.content")
        if item["role"] in ("system", "developer"):
            system.append(text)
        else:
            turns.append(Message(item["role"], text))
    if not turns:
        raise bad_request("'messages' needs at least one user or assistant turn", "messages")
    return ("\n\n".join(system) if system else None), turns


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_request(f"{where}[{j}]: only text parts are supported here", where)
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"{where}[{j}].text must be a string", where)
            parts.append(text)
        return "".join(parts)
    raise bad_request(f"{where} must be a string or an array of parts", where)
