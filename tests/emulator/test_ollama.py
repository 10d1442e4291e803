"""Ollama's native chat dialect on the wire: NDJSON streams, default streaming, options, errors
and faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault, generate_text
from tests.emulator.conftest import post

MODEL = "llama3.2"


def chat(content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("ollama", models={MODEL}, seed=6) as instance:
        yield instance


def url(emu: Emulator) -> str:
    return emu.base_url + "/api/chat"


def lines(raw: bytes) -> list[dict[str, Any]]:
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode().splitlines()]


async def test_non_stream_answer_with_counts(emu: Emulator, session: aiohttp.ClientSession) -> None:
    assert emu.base_url == emu.url
    status, response, raw = await post(session, url(emu), chat(stream=False))
    assert status == 200 and response.content_type == "application/json"
    data = json.loads(raw)
    text = " ".join(generate_text("Hello there", seed=6))
    assert data["message"] == {"role": "assistant", "content": text}
    assert data["done"] is True and data["done_reason"] == "stop" and data["model"] == MODEL
    assert data["prompt_eval_count"] == 5 and data["eval_count"] == len(text.split())
    assert data["created_at"].endswith("Z") and data["total_duration"] > data["eval_duration"]


async def test_streams_by_default_as_ndjson(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, response, raw = await post(session, url(emu), chat())  # no "stream": Ollama streams
    assert status == 200 and response.headers["Content-Type"] == "application/x-ndjson"
    *content, final = lines(raw)
    text = "".join(line["message"]["content"] for line in content)
    assert text == " ".join(generate_text("Hello there", seed=6))
    assert all(line["done"] is False and "eval_count" not in line for line in content)
    assert final["done"] is True and final["message"]["content"] == ""
    assert final["eval_count"] == len(content) and final["prompt_eval_count"] == 5


async def test_options_limit_and_stop(emu: Emulator, session: aiohttp.ClientSession) -> None:
    words = generate_text("Hello there", seed=6)
    body = chat(stream=False, options={"num_predict": 4, "temperature": 0.1})
    data = json.loads((await post(session, url(emu), body))[2])
    assert data["done_reason"] == "length" and data["eval_count"] == 4
    assert data["message"]["content"] == " ".join(words[:4])
    stopped = json.loads(
        (await post(session, url(emu), chat(stream=False, options={"stop": [words[3]]})))[2]
    )
    assert stopped["done_reason"] == "stop" and words[3] not in stopped["message"]["content"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"messages": []}, 400, "model is required"),
        (chat(model="llama9"), 404, "model 'llama9' not found"),
        (chat(options="fast"), 400, "cannot unmarshal"),
        (chat(options={"num_predict": "many"}), 400, "num_predict"),
        (chat("[[context_length]] long"), 400, "exceeds the context length"),
    ],
)
async def test_errors(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], status: int, message: str
) -> None:
    got, response, raw = await post(session, url(emu), body)
    assert got == status and message in json.loads(raw)["error"]
    assert response.content_type == "application/json"


async def test_unknown_path_and_keys(session: aiohttp.ClientSession) -> None:
    async with Emulator("ollama", api_keys={"k1"}) as emu:
        assert (await post(session, url(emu), chat(), {"Authorization": "Bearer k1"}))[0] == 200
        status, _, raw = await post(session, url(emu), chat())
        assert status == 401 and json.loads(raw) == {"error": "unauthorized"}
        status, _, raw = await post(session, emu.url + "/api/generate", chat())
        assert status == 404 and raw == b"404 page not found"


@pytest.mark.parametrize(
    ("kind", "status", "words"),
    [
        ("rate_limit", 429, "too many requests"),
        ("quota", 429, "usage limit"),
        ("server_error", 500, "runner process"),
        ("overloaded", 503, "server busy"),
        ("unauthorized", 401, "unauthorized"),
    ],
)
async def test_fault_answers(
    session: aiohttp.ClientSession, kind: str, status: int, words: str
) -> None:
    async with Emulator("ollama", faults=[Fault(kind)]) as emu:
        got, response, raw = await post(session, url(emu), chat(stream=False))
        assert got == status and words in json.loads(raw)["error"]
        if kind == "rate_limit":
            assert response.headers["retry-after"] == "1"


async def test_stream_faults(session: aiohttp.ClientSession) -> None:
    async with Emulator("ollama", reply_tokens=10) as emu:
        emu.schedule(Fault("stream_error", after_chunks=3))
        *content, last = lines((await post(session, url(emu), chat()))[2])
        assert len(content) == 3 and "error" in last and "unexpected EOF" in last["error"]
        emu.schedule("malformed")
        raw = (await post(session, url(emu), chat()))[2]
        assert raw.count(b"\n") == 11  # the line framing survives the broken JSON
        with pytest.raises(ValueError):
            lines(raw)
        emu.schedule("stream_cut")
        received = bytearray()
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(url(emu), json=chat()) as response:
                async for data in response.content.iter_any():
                    received += data
        assert b'"done":true' not in received and received.count(b"\n") >= 4


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


async def test_whole_tool_calls(emu: Emulator, session: aiohttp.ClientSession) -> None:
    body = chat(ASKED, tools=[WEATHER], stream=False)
    data = json.loads((await post(session, url(emu), body))[2])
    assert data["done_reason"] == "stop" and data["message"]["content"] == ""
    assert data["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}},
        {"function": {"index": 1, "name": "get_weather", "arguments": {"city": "Lima"}}},
    ]


async def test_tool_calls_stream_in_one_line(emu: Emulator, session: aiohttp.ClientSession) -> None:
    got = lines((await post(session, url(emu), chat(ASKED, tools=[WEATHER])))[2])
    assert len(got) == 2 and got[0]["done"] is False and got[1]["done"] is True
    assert [c["function"]["arguments"] for c in got[0]["message"]["tool_calls"]] == [
        {"city": "Oslo"},
        {"city": "Lima"},
    ]
    assert "tool_calls" not in got[1]["message"] and got[1]["done_reason"] == "stop"


async def test_results_by_tool_name_are_quoted(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    messages = [
        {"role": "user", "content": ASKED},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", **call}]},
        {"role": "tool", "content": "3 C", "tool_name": "get_weather"},
        {"role": "tool", "content": "19 C", "tool_call_id": "call_1"},
    ]
    body = {"model": MODEL, "messages": messages, "tools": [WEATHER], "stream": False}
    data = json.loads((await post(session, url(emu), body))[2])
    assert data["message"]["content"] == (
        "Tool results: get_weather returned 3 C; get_weather returned 19 C."
    )
    assert "tool_calls" not in data["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (chat(ASKED, tools=WEATHER), "Go struct field ChatRequest.tools"),
        (chat(ASKED, tools=[{"function": {}}]), "Tool.function"),
        (
            {"model": MODEL, "messages": [{"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "f", "arguments": '{"a": 1}'}}]}]},
            "ToolCallFunction.arguments",
        ),
        (
            {"model": MODEL, "messages": [{"role": "assistant", "content": "",
                                           "tool_calls": {"function": {}}}]},
            "Message.tool_calls",
        ),
    ],
)  # fmt: skip
async def test_tool_shapes_the_server_rejects(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, _, raw = await post(session, url(emu), body)
    assert status == 400 and message in json.loads(raw)["error"]


async def test_a_model_without_tools(session: aiohttp.ClientSession) -> None:
    async with Emulator("ollama") as emu:
        body = {**chat(ASKED, tools=[WEATHER]), "model": "gemma-notools"}
        status, _, raw = await post(session, url(emu), body)
        assert status == 400
        assert json.loads(raw) == {
            "error": "registry.ollama.ai/library/gemma-notools:latest does not support tools"
        }
