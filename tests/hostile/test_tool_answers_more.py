"""Hostile tool-call answers from Anthropic, Cohere and Ollama servers, through the manager:
too many calls (streamed and not) and wrong-shaped blocks end in MalformedResponseError within
a time and memory budget; the instance's key echoed inside tool arguments is redacted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from flyllm import AllAttemptsFailedError, GenerationRequest, MalformedResponseError, Tool
from tests.hostile.conftest import budget
from tests.hostile.test_answers import drain, served

REQUEST = GenerationRequest(prompt="Weather in Oslo?", tools=[Tool("get_weather")])
MANY = 20_000
USAGE = {"input_tokens": 1, "output_tokens": 1}


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_block(i: int, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{i}", "name": "get_weather", "input": arguments or {}}


def anthropic_whole(blocks: list[dict[str, Any]]) -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x"}
    return json.dumps(
        {**message, "content": blocks, "stop_reason": "tool_use", "usage": USAGE}
    ).encode()


def anthropic_stream(starts: list[dict[str, Any]]) -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x"}
    head = sse("message_start", {"type": "message_start", "message": {**message, "usage": USAGE}})
    blocks = b"".join(
        sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": b})
        for i, b in enumerate(starts)
    )
    end = {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": USAGE}
    return head + blocks + sse("message_delta", end) + sse("message_stop", {"type": "message_stop"})


def cohere_call(i: int, arguments: str = "{}") -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": arguments}
    return {"id": f"call_{i}", "type": "function", "function": function}


def cohere_whole(calls: list[dict[str, Any]]) -> bytes:
    message = {"role": "assistant", "tool_calls": calls}
    usage = {"billed_units": USAGE, "tokens": USAGE}
    return json.dumps(
        {"id": "c1", "finish_reason": "TOOL_CALL", "message": message, "usage": usage}
    ).encode()


def cohere_stream(count: int) -> bytes:
    start = sse("message-start", {"type": "message-start", "id": "c1", "delta": {}})
    calls = b"".join(
        sse(
            "tool-call-start",
            {
                "type": "tool-call-start",
                "index": i,
                "delta": {"message": {"tool_calls": cohere_call(i, "")}},
            },
        )
        for i in range(count)
    )
    usage = {"billed_units": USAGE, "tokens": USAGE}
    end = {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": usage}}
    return start + calls + sse("message-end", end)


def ollama_line(calls: list[dict[str, Any]], done: bool) -> bytes:
    message = {"role": "assistant", "content": "", "tool_calls": calls}
    line: dict[str, Any] = {"model": "llama3.2", "message": message, "done": done}
    if done:
        line.update(done_reason="stop", prompt_eval_count=1, eval_count=1)
    return json.dumps(line).encode() + b"\n"


OLLAMA_CALL = {"function": {"name": "get_weather", "arguments": {}}}

WHOLE = {
    "anthropic": anthropic_whole([anthropic_block(i) for i in range(MANY)]),
    "cohere": cohere_whole([cohere_call(i) for i in range(MANY)]),
    "ollama": ollama_line([OLLAMA_CALL] * MANY, True).rstrip(),
}
STREAMED = {
    "anthropic": anthropic_stream([anthropic_block(i) for i in range(MANY)]),
    "cohere": cohere_stream(MANY),
    "ollama": ollama_line([OLLAMA_CALL], False) * MANY + ollama_line([], True),
}
CONTENT_TYPE = {"anthropic": "text/event-stream", "cohere": "text/event-stream"}


def answering(body: bytes, content_type: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=body, content_type=content_type)

    return handler


@pytest.mark.parametrize("provider", list(WHOLE))
async def test_too_many_calls_in_an_answer(provider: str) -> None:
    with budget(seconds=5, megabytes=150):
        async with served(provider, answering(WHOLE[provider], "application/json")) as manager:
            with pytest.raises(AllAttemptsFailedError) as caught:
                await manager.generate(REQUEST)
    attempt = caught.value.attempts[0]
    assert isinstance(attempt, MalformedResponseError)
    assert "more than 1000 tool calls" in str(attempt)


@pytest.mark.parametrize("provider", list(STREAMED))
async def test_too_many_calls_in_a_stream(provider: str) -> None:
    content_type = CONTENT_TYPE.get(provider, "application/x-ndjson")
    with budget(seconds=8, megabytes=150):
        async with served(provider, answering(STREAMED[provider], content_type)) as manager:
            with pytest.raises(MalformedResponseError, match="more than 1000 tool calls"):
                await drain(manager, REQUEST)


@pytest.mark.parametrize("kind", [[], {}, 7])
async def test_an_anthropic_block_of_a_wrong_type_is_malformed(kind: Any) -> None:
    body = anthropic_stream([{"type": kind, "id": "toolu_1", "name": "get_weather"}])
    async with served("anthropic", answering(body, "text/event-stream")) as manager:
        with pytest.raises((MalformedResponseError, AllAttemptsFailedError)) as caught:
            await drain(manager, REQUEST)
    err = caught.value
    first = err.attempts[0] if isinstance(err, AllAttemptsFailedError) else err
    assert isinstance(first, MalformedResponseError) and "content_block.type" in str(first)


def openai_fragment(arguments: str, first: bool = False) -> bytes:
    call: dict[str, Any] = {"index": 0, "function": {"arguments": arguments}}
    if first:
        call.update(id="call_1", type="function")
        call["function"]["name"] = "get_weather"
    choice = {"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


async def test_a_key_echoed_across_stream_events_is_redacted_from_the_answer() -> None:
    """Each event is redacted as it comes; a key split between two argument fragments (or two
    text deltas) is redacted from the assembled answer, which a conversation sends on to other
    providers. (The deltas already handed out carry the pieces.)"""
    key = "sk-" + "Q7" * 15  # built at run time, never printed
    half = len(key) // 2
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    text = [
        {"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in (key[:5], key[5:])
    ]
    body = (
        b"".join(b"data: " + json.dumps(t).encode() + b"\n\n" for t in text)
        + openai_fragment("", first=True)
        + openai_fragment('{"city":"' + key[:half])
        + openai_fragment(key[half:] + '"}')
        + b"data: "
        + json.dumps(end).encode()
        + b"\n\ndata: [DONE]\n\n"
    )
    async with served("openai", answering(body, "text/event-stream"), key=key) as manager:
        _, response = await drain(manager, REQUEST)
    (call,) = response.tool_calls
    redacted = dict(call.arguments) == {"city": "[redacted]"} and call.raw_arguments is None
    text_redacted = response.content == "[redacted]"
    leaked = key in repr(response.message) or key[:12] in repr(response.message)
    assert redacted and text_redacted and not leaked  # (no introspection: it would show the key)


def long_heads(name: str, call_id: str) -> dict[str, tuple[bytes, str]]:
    """A whole answer with one call of this name and id, per provider (body, content type)."""
    chat = {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}
    message = {"role": "assistant", "content": None, "tool_calls": [chat]}
    openai = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    gemini_part = {"functionCall": {"name": name, "id": call_id, "args": {}}}
    google = {"candidates": [{"content": {"role": "model", "parts": [gemini_part]}}]}
    ollama = {"function": {"name": name, "arguments": {}}, "id": call_id}
    block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    cohere = {**cohere_call(0), "id": call_id, "function": {"name": name, "arguments": "{}"}}
    return {
        "openai": (json.dumps(openai).encode(), "application/json"),
        "mistral": (json.dumps(openai).encode(), "application/json"),
        "anthropic": (anthropic_whole([block]), "application/json"),
        "google": (json.dumps(google).encode(), "application/json"),
        "cohere": (cohere_whole([cohere]), "application/json"),
        "ollama": (ollama_line([ollama], True).rstrip(), "application/json"),
    }


@pytest.mark.parametrize("part", ["name", "id"])
@pytest.mark.parametrize(
    "provider", ["openai", "mistral", "anthropic", "google", "cohere", "ollama"]
)
async def test_a_call_name_or_id_no_provider_would_make_is_malformed(
    provider: str, part: str
) -> None:
    """A megabyte tool name or id would flow into reprs, logs and every later request of the
    conversation; no provider makes one over a few dozen characters."""
    huge = "n" * 1_000_000
    body, content_type = long_heads(
        huge if part == "name" else "get_weather", huge if part == "id" else "call_1"
    )[provider]
    async with served(provider, answering(body, content_type)) as manager:
        with pytest.raises(AllAttemptsFailedError) as caught:
            await manager.generate(REQUEST)
    attempt = caught.value.attempts[0]
    assert isinstance(attempt, MalformedResponseError)
    assert f"tool call {part} longer than" in str(attempt)
