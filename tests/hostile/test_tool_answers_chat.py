"""Hostile tool-call answers from chat-completions servers (OpenAI's format, Mistral's),
through the manager: too many calls, arguments that never end, arguments nested 200,000 deep,
streamed and not. Each ends in MalformedResponseError within a time and memory budget."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from flyllm import AllAttemptsFailedError, GenerationRequest, MalformedResponseError, Tool
from tests.hostile.conftest import budget
from tests.hostile.test_answers import drain, served

REQUEST = GenerationRequest(prompt="Weather in Oslo?", tools=[Tool("get_weather")])


def whole(calls: list[dict[str, Any]]) -> bytes:
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
    return json.dumps({"choices": [choice]}).encode()


def event(fragments: list[dict[str, Any]]) -> bytes:
    choice = {"index": 0, "delta": {"tool_calls": fragments}, "finish_reason": None}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


def start(index: int, arguments: str = "") -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": arguments}
    return {"index": index, "id": f"call_{index}", "type": "function", "function": function}


def more(text: str) -> dict[str, Any]:
    return {"index": 0, "function": {"arguments": text}}


MANY = [start(i) for i in range(100_000)]
DEEP = "[" * 200_000
ANSWERS = {
    "too many calls": whole(MANY),
    "deep arguments": whole([start(0, DEEP)]),
}
STREAMS = {
    "too many calls": b"".join(event([f]) for f in MANY[:5_000]),
    "endless arguments": event([start(0)]) + event([more("x" * 65_536)]) * 80,
    "deep arguments": event([start(0, DEEP)]) + b"data: [DONE]\n\n",
}

SAYS = {
    "too many calls": "more than 256 tool calls",
    "endless arguments": "arguments over",
    "deep arguments": "nested too deeply",
}


@pytest.mark.parametrize("provider", ["openai", "mistral"])
@pytest.mark.parametrize("case", list(ANSWERS))
async def test_hostile_tool_answers(provider: str, case: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=ANSWERS[case], content_type="application/json")

    with budget(seconds=5, megabytes=120):
        async with served(provider, handler) as manager:
            with pytest.raises(AllAttemptsFailedError) as caught:
                await manager.generate(REQUEST)
    attempt = caught.value.attempts[0]
    assert isinstance(attempt, MalformedResponseError) and SAYS[case] in str(attempt)


@pytest.mark.parametrize("provider", ["openai", "mistral"])
@pytest.mark.parametrize("case", list(STREAMS))
async def test_hostile_tool_streams(provider: str, case: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=STREAMS[case], content_type="text/event-stream")

    with budget(seconds=5, megabytes=120):
        async with served(provider, handler) as manager:
            # Tool-call pieces already reached the caller: no failover, the error itself.
            with pytest.raises(MalformedResponseError, match=SAYS[case]):
                await drain(manager, REQUEST)
