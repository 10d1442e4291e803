"""Tool calling through the manager on Mistral against the emulator on loopback: calls with
nine-character ids, results, the answer quoting them, streamed and not; a conversation from
another provider (ids of another format, raw arguments, no text) continues on Mistral."""

from __future__ import annotations

import re

import pytest

from flyllm import (
    GenerationRequest,
    LlmManager,
    LlmResponse,
    Message,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from tests.integration.conftest import EmulatorFactory, body

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = [Message.user("Weather in Oslo and Lima?")]
NINE = r"[A-Za-z0-9]{9}"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_round_trip(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("mistral")
    manager.add_provider("mistral", "k-emulated", "mistral-small", base_url=emu.base_url)

    async def ask(request: GenerationRequest) -> tuple[list[ToolCallDelta], LlmResponse]:
        if not stream:
            return [], await manager.generate(request)
        async with manager.stream(request) as answer:
            deltas = [d async for chunk in answer for d in chunk.tool_calls]
        return deltas, answer.response

    request = GenerationRequest(messages=ASK, tools=[WEATHER], tool_choice="required")
    deltas, first = await ask(request)
    assert body(emu)["tool_choice"] == "any"
    calls = first.tool_calls
    assert [(c.name, dict(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert all(re.fullmatch(NINE, c.id) for c in calls)
    if stream:  # whole calls: one delta each, with everything
        assert [(d.index, d.id) for d in deltas] == [(0, calls[0].id), (1, calls[1].id)]
    turns = [*ASK, first.message]
    turns += [Message.tool_result(c.id, f"{c.arguments['city']}: 3C") for c in calls]
    _, final = await ask(GenerationRequest(messages=turns, tools=[WEATHER]))
    assert final.content == (
        "Tool results: get_weather returned Oslo: 3C; get_weather returned Lima: 3C."
    )
    sent = body(emu)["messages"]
    assert [m["tool_call_id"] for m in sent[2:]] == [c.id for c in calls]  # valid ids: kept
    assert [m["name"] for m in sent[2:]] == ["get_weather", "get_weather"]


async def test_a_conversation_from_another_provider_continues(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("mistral")
    manager.add_provider("mistral", "k-emulated", "mistral-small", base_url=emu.base_url)
    calls = (
        ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "Oslo"}),
        ToolCall("call_a.b:c", "get_weather", {}, raw_arguments='{"city": "Li'),
    )
    turns = [
        *ASK,
        Message("assistant", "", tool_calls=calls, provider_data={"google": {"sig": "x"}}),
        Message.tool_result("toolu_01A09q90qw90lq917835lq9", "3C"),
        Message.tool_result("call_a.b:c", "unknown city", is_error=True),
    ]
    answer = await manager.generate(GenerationRequest(messages=turns, tools=[WEATHER]))
    assert answer.content == (
        "Tool results: get_weather returned 3C; get_weather returned Error: unknown city."
    )
    sent = body(emu)["messages"]
    ids = [c["id"] for c in sent[1]["tool_calls"]]
    assert all(re.fullmatch(NINE, i) for i in ids) and ids[0] != ids[1]
    assert [m["tool_call_id"] for m in sent[2:]] == ids
    assert sent[1]["tool_calls"][1]["function"]["arguments"] == '{"city": "Li'
    assert "sig" not in str(sent)
