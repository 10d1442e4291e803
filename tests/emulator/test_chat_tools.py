"""The tool validation of the chat-completions dialects (OpenAI, Azure, compatible services,
Mistral) on the raw wire: each wrong shape gets the provider's own 400 or 422."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator
from tests.emulator.conftest import post, sse_data

KEY = "emulator-tools-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
FUNCTION = {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}
TOOL = {"type": "function", "function": FUNCTION}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


def call(call_id: str, arguments: Any = "{}") -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }


def turns(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [*ASK, *extra]}


def asked(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "tool_calls": list(calls)}


def result(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "x"}


def function(**fields: Any) -> dict[str, Any]:
    return {"tools": [{"type": "function", "function": fields}]}


NAMED_G = {"type": "function", "function": {"name": "g"}}


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"tools": {}}, "tools", "expected an array"),
        ({"tools": []}, "tools", "an empty array"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type", "Supported values are"),
        ({"tools": [{"type": "function"}]}, "tools[0].function", "Missing required"),
        (function(name="a b"), "tools[0].function.name", "pattern"),
        (function(name="f", parameters=[]), "tools[0].function.parameters", "an array"),
        ({"tools": [TOOL], "tool_choice": "any"}, "tool_choice", "'auto', and 'required'"),
        ({"tools": [TOOL], "tool_choice": NAMED_G}, "tool_choice", "one of the tools"),
        ({"tools": [TOOL], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "a boolean"),
        ({"parallel_tool_calls": True}, "parallel_tool_calls", "only allowed when 'tools'"),
        (turns({"role": "assistant", "content": None}), "messages.[1].content", "got null"),
        (
            turns(asked(call("c", {})), result("c")),
            "messages[1].tool_calls[0].function.arguments",
            "expected a string",
        ),
        (turns(asked({"type": "function"})), "messages[1].tool_calls[0].id", "Missing"),
        (turns({"role": "tool", "content": "x"}), "messages.[1].tool_call_id", "'tool_call_id'"),
        (turns(asked(call("a"), call("b")), result("a")), "messages", "response messages: b"),
    ],
)
async def test_openai_rejects_wrong_tool_shapes(
    session: aiohttp.ClientSession, fields: dict[str, Any], param: str, says: str
) -> None:
    async with Emulator("openai", api_keys={KEY}) as emu:
        body = {"model": "gpt-4o", "messages": ASK, **fields}
        status, _, raw = await post(session, emu.base_url + "/chat/completions", body, AUTH)
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and says in error["message"]


async def test_openai_accepts_strict_and_answers_a_named_tool_whole(
    session: aiohttp.ClientSession,
) -> None:
    strict = {"type": "function", "function": {**FUNCTION, "strict": True}}
    other = {"type": "function", "function": {"name": "get_time"}}
    body = {
        "model": "gpt-4o",
        "messages": ASK,
        "tools": [strict, other],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
    }
    async with Emulator("openai", api_keys={KEY}) as emu:
        status, _, raw = await post(session, emu.base_url + "/chat/completions", body, AUTH)
    message = json.loads(raw)["choices"][0]["message"]
    assert status == 200 and message["content"] is None
    assert [c["function"] for c in message["tool_calls"]] == [
        {"name": "get_time", "arguments": "{}"}
    ]


@pytest.mark.parametrize(
    ("version", "field", "accepted"),
    [
        ("2024-06-01", "parallel_tool_calls", False),
        ("2024-07-01-preview", "parallel_tool_calls", True),
        ("2023-10-01-preview", "tools", False),
        ("2023-12-01-preview", "tools", True),
    ],
)
async def test_azure_api_versions_gate_tool_fields(
    session: aiohttp.ClientSession, version: str, field: str, accepted: bool
) -> None:
    body: dict[str, Any] = {"messages": ASK, "tools": [TOOL]}
    if field == "parallel_tool_calls":
        body["parallel_tool_calls"] = False
    async with Emulator("azure", api_keys={KEY}) as emu:
        url = f"{emu.base_url}/openai/deployments/gpt-4o/chat/completions?api-version={version}"
        status, _, raw = await post(session, url, body, {"api-key": KEY})
    assert (status == 200) is accepted, raw
    if not accepted:
        assert json.loads(raw)["error"]["message"].endswith(f"supplied: {field}")


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        (function(name="f"), 422, "parameters"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, 422, "tool_choice"),
        (turns(asked(call("call_123456"))), 400, "Tool call id was call_123456 but must be"),
        (turns(asked(call("abcDEF123")), result("abcDEF12")), 400, "Tool call id was abcDEF12"),
        (turns(asked(call("abcDEF123"))), 400, "Not the same number"),
        (turns(result("abcDEF123")), 400, "Not the same number"),
    ],
)
async def test_mistral_rejects_wrong_tool_shapes_and_ids(
    session: aiohttp.ClientSession, fields: dict[str, Any], status: int, says: str
) -> None:
    async with Emulator("mistral", api_keys={KEY}) as emu:
        body = {"model": "mistral-small", "messages": ASK, **fields}
        got, _, raw = await post(session, emu.base_url + "/v1/chat/completions", body, AUTH)
    assert got == status and says in raw.decode()
    assert json.loads(raw)["object"] == "error"


async def test_mistral_streams_whole_calls_with_nine_character_ids(
    session: aiohttp.ClientSession,
) -> None:
    body = {"model": "m", "messages": ASK, "tools": [TOOL], "stream": True}
    async with Emulator("mistral", api_keys={KEY}) as emu:
        status, _, raw = await post(session, emu.base_url + "/v1/chat/completions", body, AUTH)
    events = sse_data(raw)
    calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or []]
    assert status == 200 and len(calls) == 1
    assert len(calls[0]["id"]) == 9 and calls[0]["id"].isalnum()
    assert calls[0]["function"] == {"name": "get_weather", "arguments": "{}"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
