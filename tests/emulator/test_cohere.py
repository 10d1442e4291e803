"""Cohere chat v2 dialect on the wire: content blocks, two usage counts, named events, strict
schema, errors and faults."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault, generate_text
from tests.emulator.conftest import post, sse_events

KEY = "co-good-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "command-a-03-2025"


def chat(content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("cohere", api_keys={KEY}, models={MODEL}, seed=7) as instance:
        yield instance


def url(emu: Emulator) -> str:
    return emu.base_url + "/v2/chat"


def named_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    pairs = []
    for event in sse_events(raw):
        name, data = event.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:].decode()
        pairs.append((payload["type"], payload))
    return pairs


async def test_non_stream_answer(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat(max_tokens=100), AUTH)
    assert status == 200
    data = json.loads(raw)
    text = " ".join(generate_text("Hello there", seed=7))
    assert data["message"] == {"role": "assistant", "content": [{"type": "text", "text": text}]}
    assert data["finish_reason"] == "COMPLETE" and len(data["id"]) == 36
    n = len(text.split())
    assert data["usage"] == {
        "billed_units": {"input_tokens": 5, "output_tokens": n},
        "tokens": {"input_tokens": 5 + 66, "output_tokens": n},
    }


async def test_stream_events(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, response, raw = await post(session, url(emu), chat(stream=True), AUTH)
    assert status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = named_events(raw)
    names = [name for name, _ in events]
    assert names[:2] == ["message-start", "content-start"] and names[-2:] == [
        "content-end",
        "message-end",
    ]
    text = "".join(
        e["delta"]["message"]["content"]["text"] for n, e in events if n == "content-delta"
    )
    assert text == " ".join(generate_text("Hello there", seed=7))
    end = events[-1][1]["delta"]
    assert end["finish_reason"] == "COMPLETE"
    assert end["usage"]["billed_units"]["output_tokens"] == names.count("content-delta")
    assert b"[DONE]" not in raw


async def test_limits_and_stop_sequences(emu: Emulator, session: aiohttp.ClientSession) -> None:
    words = generate_text("Hello there", seed=7)
    limited = json.loads((await post(session, url(emu), chat(max_tokens=3), AUTH))[2])
    assert limited["finish_reason"] == "MAX_TOKENS"
    stopped = json.loads((await post(session, url(emu), chat(stop_sequences=[words[4]]), AUTH))[2])
    assert stopped["finish_reason"] == "STOP_SEQUENCE"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (chat(top_p=0.5), 400, "unknown field: parameter top_p is not a valid field"),
        (chat(temperature=1.5), 400, "temperature must be between 0 and 1"),
        (chat(p=1.0), 400, "p must be between 0.01 and 0.99"),
        (chat(stop_sequences=list("abcdef")), 400, "at most 5"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "model parameter is required"),
        (chat(model="command-x"), 404, "model 'command-x' not found"),
        (chat("[[context_length]] long"), 400, "too many tokens"),
    ],
)
async def test_errors(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], status: int, message: str
) -> None:
    got, _, raw = await post(session, url(emu), body, AUTH)
    data = json.loads(raw)
    assert got == status and message in data["message"] and len(data["id"]) == 36


async def test_auth(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat())
    assert status == 401 and json.loads(raw)["message"] == "no api key supplied"
    status, _, raw = await post(session, url(emu), chat(), {"Authorization": "Bearer nope"})
    assert status == 401 and json.loads(raw)["message"] == "invalid api token"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("rate_limit", 429), ("quota", 402), ("server_error", 500), ("overloaded", 503),
     ("bad_gateway", 502), ("unauthorized", 401)],
)  # fmt: skip
async def test_fault_answers(session: aiohttp.ClientSession, kind: str, status: int) -> None:
    async with Emulator("cohere", faults=[Fault(kind)]) as emu:
        got, _, raw = await post(session, url(emu), chat(), AUTH)
        assert got == status and json.loads(raw)["message"]


async def test_stream_error_is_an_error_finish(session: aiohttp.ClientSession) -> None:
    async with Emulator("cohere", reply_tokens=10) as emu:
        emu.schedule(Fault("stream_error", after_chunks=2))
        events = named_events((await post(session, url(emu), chat(stream=True), AUTH))[2])
        assert [n for n, _ in events].count("content-delta") == 2
        assert events[-1][1]["delta"] == {
            "error": "internal server error",
            "finish_reason": "ERROR",
        }


# --- tools ----------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASKED = "Weather in Oslo and Lima?"


def _call(call_id: str, city: str) -> dict[str, Any]:
    arguments = json.dumps({"city": city})
    return {"id": call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip


def _results_turns(content: Any = '{"temp": 3}') -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": ASKED},
        {"role": "assistant", "tool_plan": "Looking.", "tool_calls": [_call("c1", "Oslo")]},
        {"role": "tool", "tool_call_id": "c1", "content": content},
    ]


async def test_tool_calls_with_a_plan(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat(ASKED, tools=[WEATHER]), AUTH)
    data = json.loads(raw)
    assert status == 200 and data["finish_reason"] == "TOOL_CALL"
    message = data["message"]
    assert "content" not in message and "get_weather" in message["tool_plan"]
    calls = message["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Oslo"},
        {"city": "Lima"},
    ]
    assert all(c["type"] == "function" and c["function"]["name"] == "get_weather" for c in calls)
    assert all(re.fullmatch(r"get_weather_[a-z0-9]{12}", c["id"]) for c in calls)


async def test_tool_call_stream_fragments(emu: Emulator, session: aiohttp.ClientSession) -> None:
    body = chat(ASKED, tools=[WEATHER], stream=True)
    events = named_events((await post(session, url(emu), body, AUTH))[2])
    names = [name for name, _ in events]
    assert names[0] == "message-start" and names[-1] == "message-end"
    assert "content-delta" not in names and names.count("tool-call-start") == 2
    plan = "".join(e["delta"]["message"]["tool_plan"] for n, e in events if n == "tool-plan-delta")
    assert "get_weather" in plan
    starts = [e for n, e in events if n == "tool-call-start"]
    assert [s["index"] for s in starts] == [0, 1]
    first = starts[0]["delta"]["message"]["tool_calls"]  # one object, not a list
    assert first["function"] == {"name": "get_weather", "arguments": ""} and first["id"]
    pieces = [e for n, e in events if n == "tool-call-delta" and e["index"] == 0]
    assert len(pieces) > 1
    arguments = "".join(
        p["delta"]["message"]["tool_calls"]["function"]["arguments"] for p in pieces
    )
    assert json.loads(arguments) == {"city": "Oslo"}
    assert names.count("tool-call-end") == 2
    assert events[-1][1]["delta"]["finish_reason"] == "TOOL_CALL"


@pytest.mark.parametrize(
    "content",
    ['{"temp": 3}', [{"type": "text", "text": '{"temp": 3}'}],
     [{"type": "document", "document": {"data": {"temp": 3}}}]],
)  # fmt: skip
async def test_tool_results_are_quoted(
    emu: Emulator, session: aiohttp.ClientSession, content: Any
) -> None:
    body = {"model": MODEL, "messages": _results_turns(content), "tools": [WEATHER]}
    data = json.loads((await post(session, url(emu), body, AUTH))[2])
    assert data["finish_reason"] == "COMPLETE"
    assert data["message"]["content"][0]["text"].startswith("Tool results: get_weather returned")
    assert '"temp": 3' in data["message"]["content"][0]["text"]


async def test_tool_choice_none_and_required(emu: Emulator, session: aiohttp.ClientSession) -> None:
    none = chat(ASKED, tools=[WEATHER], tool_choice="NONE")
    assert json.loads((await post(session, url(emu), none, AUTH))[2])["finish_reason"] == "COMPLETE"
    again = {"model": MODEL, "messages": _results_turns(), "tools": [WEATHER],
             "tool_choice": "REQUIRED"}  # fmt: skip
    data = json.loads((await post(session, url(emu), again, AUTH))[2])
    assert data["finish_reason"] == "TOOL_CALL"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (chat(ASKED, tools=[WEATHER], tool_choice="AUTO"), "tool_choice must be one of"),
        (chat(ASKED, tool_choice="REQUIRED"), "tool_choice requires tools"),
        (chat(ASKED, tools=WEATHER), "tools must be a list"),
        (chat(ASKED, tools=[{"type": "function", "function": {}}]), "must have a name"),
        (
            {"model": MODEL, "messages": [*_results_turns()[:1], _results_turns()[2]]},
            "tool call id c1 not found",
        ),
        (
            {
                "model": MODEL,
                "messages": [
                    {"role": "user", "content": ASKED},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "function": {"name": "get_weather", "arguments": {"a": 1}}}
                        ],
                    },
                ],
            },
            "function has a wrong type",
        ),
        (
            {
                "model": MODEL,
                "messages": [
                    *_results_turns()[:2],
                    {"role": "tool", "tool_call_id": "c1", "content": 5},
                ],
            },
            "content of the wrong type",
        ),
    ],
)
async def test_tool_requests_the_api_rejects(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, _, raw = await post(session, url(emu), body, AUTH)
    assert status == 400 and message in json.loads(raw)["message"], raw


async def test_a_model_without_tools(session: aiohttp.ClientSession) -> None:
    async with Emulator("cohere", api_keys={KEY}) as emu:
        body = {**chat(ASKED, tools=[WEATHER]), "model": "c4ai-notools"}
        status, _, raw = await post(session, url(emu), body, AUTH)
        assert status == 400
        assert json.loads(raw)["message"] == (
            "invalid request: tool use is not supported for model 'c4ai-notools'"
        )
