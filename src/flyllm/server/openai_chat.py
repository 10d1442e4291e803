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

from flyllm.params import validate_params
from flyllm.server.dialect import Call
from flyllm.server.errors import GatewayError, bad_request
from flyllm.server.openai_read import (
    read_messages,
    read_response_format,
    read_tool_choice,
    read_tools,
)
from flyllm.types import (
    GenerationRequest,
    LlmResponse,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["OPENAI_FAMILY", "OpenAIChat"]

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
# Carried to every provider: (OpenAI's field, flyllm's parameter). ``top_k`` is not
# OpenAI's: accepted as flyllm's extension (providers without it leave it out, with a note).
_PARAMS = (
    ("temperature", "temperature"), ("top_p", "top_p"), ("stop", "stop"), ("seed", "seed"),
    ("max_tokens", "max_tokens"), ("max_completion_tokens", "max_tokens"), ("top_k", "top_k"),
)  # fmt: skip
# OpenAI-only options: sent as provider_params to the OpenAI-family instances only (the
# others have no equivalent; sending them there would be refused or ignored).
_OPENAI_ONLY = frozenset({
    "frequency_penalty", "presence_penalty", "logit_bias", "user", "service_tier",
    "reasoning_effort", "metadata", "store", "safety_identifier", "prompt_cache_key",
    "prompt_cache_retention", "prompt_cache_options", "verbosity", "moderation",
})  # fmt: skip
OPENAI_FAMILY = ("openai", "azure", "openai_compatible")
"""The instances' providers that get the OpenAI-only fields (as ``provider_params``)."""
# Features flyllm cannot carry portably: refused with the reason, never dropped. A value equal
# to the second item (what the field means when absent) is accepted.
_REFUSED: dict[str, tuple[str, Any]] = {
    "n": ("only one choice per request (n=1) is supported", 1),
    "logprobs": ("log probabilities are not carried across providers", False),
    "top_logprobs": ("log probabilities are not carried across providers", None),
    "audio": ("audio output is not supported", None),
    "modalities": ("only text output is supported", ["text"]),
    "functions": ("the legacy 'functions' are not supported: use 'tools'", None),
    "function_call": ("the legacy 'function_call' is not supported: use 'tool_choice'", None),
    "prediction": ("predicted outputs are not supported", None),
    "web_search_options": ("web search is not supported", None),
}
_READ = frozenset({
    "model", "messages", "stream", "stream_options", "tools", "tool_choice",
    "parallel_tool_calls", "response_format",
})  # fmt: skip
_KNOWN = _READ | _OPENAI_ONLY | _REFUSED.keys() | {f for f, _ in _PARAMS}


class OpenAIChat:
    """The Chat Completions dialect (see the module docstring)."""

    name = "openai"
    request_id_header = "x-request-id"

    def parse(self, body: Any) -> Call:
        """The request as a Call; a 400 naming the field for anything flyllm cannot carry
        (including fields OpenAI's API does not know: it refuses those too)."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("'model' is required: the name of a task (or alias)", "model")
        _refuse(body)
        system, turns = read_messages(body.get("messages"))
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise bad_request("'stream' must be a boolean", "stream")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object", "stream_options")
        include_usage = options.get("include_usage")
        if not isinstance(include_usage, bool | None):
            where = "stream_options.include_usage"
            raise bad_request(f"'{where}' must be a boolean", where)
        parallel = body.get("parallel_tool_calls")
        if not isinstance(parallel, bool | None):
            raise bad_request("'parallel_tool_calls' must be a boolean", "parallel_tool_calls")
        extras = {k: v for k, v in body.items() if k in _OPENAI_ONLY and v is not None}
        request = GenerationRequest(
            messages=turns, system=system, params=_params(body),
            provider_params=dict.fromkeys(OPENAI_FAMILY, extras) if extras else None,
            tools=read_tools(body.get("tools")), tool_choice=read_tool_choice(
                body.get("tool_choice")), parallel_tool_calls=parallel,
            response_format=read_response_format(body.get("response_format")),
        )  # fmt: skip
        return Call(request, model, stream, include_usage is True)

    def render(self, call: Call, response: LlmResponse, request_id: str) -> dict[str, Any]:
        """A ``chat.completion`` object."""
        calls = response.tool_calls
        message: dict[str, Any] = {
            "role": "assistant",
            "content": response.content if response.content or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = [_tool_call(c) for c in calls]
        return {
            "id": _completion_id(request_id),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH.get(response.finish_reason or "stop", "stop"),
                }
            ],
            "usage": _usage(response.usage),
        }

    def stream_writer(self, call: Call, request_id: str) -> _ChunkWriter:
        """``chat.completion.chunk`` events for one streamed answer."""
        return _ChunkWriter(call, _completion_id(request_id))

    def render_error(self, err: GatewayError) -> dict[str, Any]:
        """OpenAI's error object: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": err.message,
                "type": _ERROR_TYPES.get(err.kind, "api_error"),
                "param": err.param,
                "code": err.code,
            }
        }


def _refuse(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _KNOWN:
            refused = _REFUSED.get(key)
            if refused is not None and value is not None and value != refused[1]:
                raise bad_request(f"'{key}': {refused[0]} by flyllm's gateway", key)
        else:
            raise bad_request(
                f"unrecognized request argument supplied: {key!r} (flyllm's gateway refuses "
                "fields it cannot carry, as OpenAI's API does)", key,
            )  # fmt: skip


def _params(body: dict[str, Any]) -> dict[str, Any] | None:
    """The portable parameters, checked here so that a bad one is a 400 naming it."""
    params: dict[str, Any] = {}
    fields: dict[str, str] = {}
    for field, name in _PARAMS:
        value = body.get(field)
        if value is not None and (field != "max_tokens" or name not in params):
            params[name] = value  # max_completion_tokens wins over max_tokens
            fields[name] = field
    if not params:
        return None
    try:
        validate_params(params)
    except (TypeError, ValueError):
        for name, value in params.items():  # once more, one by one, to name the culprit
            try:
                validate_params({name: value})
            except (TypeError, ValueError) as exc:
                raise bad_request(f"'{fields[name]}': {exc}", fields[name]) from None
    return params


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
        fields = []
        if chunk.text:
            fields.append('"content":' + json.dumps(chunk.text))
        if chunk.tool_calls:
            fields.append('"tool_calls":[' + ",".join(map(_call_delta, chunk.tool_calls)) + "]")
        if not fields:
            return b""
        delta = "{" + ",".join(fields) + "}"
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


def _call_delta(delta: ToolCallDelta) -> str:
    """One tool call's piece in OpenAI's delta shape: id, type and name on its first piece."""
    if delta.id is None:
        function = '{"arguments":' + json.dumps(delta.arguments_delta) + "}"
        return f'{{"index":{delta.index},"function":{function}}}'
    function = json.dumps({"name": delta.name or "", "arguments": delta.arguments_delta})
    return (f'{{"index":{delta.index},"id":{json.dumps(delta.id)},"type":"function",'
            f'"function":{function}}}')  # fmt: skip


def _tool_call(call: ToolCall) -> dict[str, Any]:
    arguments = call.raw_arguments
    if arguments is None:
        arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": arguments}}  # fmt: skip


def _completion_id(request_id: str) -> str:
    return "chatcmpl-" + request_id


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
