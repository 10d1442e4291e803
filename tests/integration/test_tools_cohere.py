"""Tool calling on Cohere through the manager and the emulator on loopback: a call, the
results, the answer that quotes them (streamed and not); the named choice Cohere cannot send;
a model without tools failing over; and conversations moving between Cohere and OpenAI."""

from __future__ import annotations

import json

import pytest

from flyllm import FlyLLMError, GenerationRequest, LlmManager, LlmResponse, Message, Tool, ToolCall
from flyllm.types import ToolCallDelta
from tests.integration.conftest import EmulatorFactory, body

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASKED = "Weather in Oslo and Lima?"
QUOTED = "Tool results: get_weather returned Oslo: 3 C; get_weather returned Lima: 3 C."


async def ask(
    manager: LlmManager, messages: list[Message], stream: bool, **options: object
) -> tuple[LlmResponse, list[ToolCallDelta]]:
    """The response to ``messages`` with WEATHER offered, and the streamed tool deltas."""
    request = GenerationRequest(messages=messages, tools=[WEATHER], **options)  # type: ignore[arg-type]
    if not stream:
        return await manager.generate(request), []
    async with manager.stream(request) as live:
        deltas = [delta async for chunk in live for delta in chunk.tool_calls]
    return live.response, deltas


def results(response: LlmResponse) -> list[Message]:
    return [Message.tool_result(c.id, f"{c.arguments['city']}: 3 C") for c in response.tool_calls]


def check_deltas(deltas: list[ToolCallDelta], calls: tuple[ToolCall, ...]) -> None:
    """Canonical order: indexes from 0, id and name on the first delta of each call, the
    argument pieces joining to the parsed arguments."""
    firsts = [d for d in deltas if d.id is not None]
    assert [(d.index, d.id, d.name) for d in firsts] == [
        (n, c.id, c.name) for n, c in enumerate(calls)
    ]
    for n, call in enumerate(calls):
        text = "".join(d.arguments_delta for d in deltas if d.index == n)
        assert json.loads(text) == call.arguments


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_then_results_then_the_answer(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("cohere")
    manager.add_provider("cohere", "co-key-0123456789", "command-a", base_url=emu.base_url)
    first, deltas = await ask(manager, [Message.user(ASKED)], stream)
    assert first.success and first.finish_reason == "tool_calls"
    assert first.raw_finish_reason == "TOOL_CALL" and "get_weather" in first.content
    assert [c.arguments for c in first.tool_calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert body(emu)["tools"][0]["function"]["name"] == "get_weather"
    if stream:
        check_deltas(deltas, first.tool_calls)
    answer, _ = await ask(manager, [Message.user(ASKED), first.message, *results(first)], stream)
    assert answer.finish_reason == "stop" and answer.content == QUOTED and not answer.tool_calls
    sent = body(emu)["messages"]
    assert sent[1]["tool_plan"] == first.content
    assert [m["tool_call_id"] for m in sent[2:]] == [c.id for c in first.tool_calls]


async def test_a_named_tool_is_never_sent(manager: LlmManager, emulators: EmulatorFactory) -> None:
    emu = await emulators("cohere")
    manager.add_provider("cohere", "co-key-0123456789", "command-a", base_url=emu.base_url)
    with pytest.raises(FlyLLMError):
        await ask(manager, [Message.user(ASKED)], False, tool_choice="get_weather")
    assert emu.stats()["requests"] == 0
    required, _ = await ask(manager, [Message.user(ASKED)], False, tool_choice="required")
    assert body(emu)["tool_choice"] == "REQUIRED" and required.finish_reason == "tool_calls"


async def test_a_model_without_tools_fails_over(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    plain, able = await emulators("cohere"), await emulators("cohere")
    manager.add_provider("cohere", "co-key-0123456789", "c4ai-notools", base_url=plain.base_url)
    manager.add_provider("cohere", "co-key-0123456789", "command-a", base_url=able.base_url)
    for _ in range(2):
        response, _ = await ask(manager, [Message.user(ASKED)], False)
        assert response.success and response.instance_id == 1 and response.tool_calls
    assert plain.stats()["requests"] >= 1  # it was asked and said no, at least once


async def test_an_openai_started_conversation_continues_on_cohere(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("cohere")
    manager.add_provider("cohere", "co-key-0123456789", "command-a", base_url=emu.base_url)
    # What the OpenAI provider hands back: "call_..." ids, no provider_data, no text.
    calls = [
        ToolCall("call_Hx7a0Pq2LmZk9", "get_weather", {"city": "Oslo"}),
        ToolCall("call_Yb3c.weird:id", "get_weather", {}, raw_arguments='{"city": "Lima"'),
    ]
    conversation = [
        Message.user(ASKED),
        Message.assistant("", calls),
        Message.tool_result(calls[0].id, "Oslo: 3 C"),
        Message.tool_result(calls[1].id, "Lima: 3 C"),
    ]
    for stream in (False, True):
        answer, _ = await ask(manager, conversation, stream)
        assert answer.content == QUOTED
    sent = body(emu)["messages"]
    assert sent[1]["tool_plan"] and [c["id"] for c in sent[1]["tool_calls"]] == [
        m["tool_call_id"] for m in sent[2:]
    ]


async def test_a_cohere_started_conversation_continues_on_openai(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    cohere, openai = await emulators("cohere"), await emulators("openai")
    manager.add_provider("cohere", "co-key-0123456789", "command-a", base_url=cohere.base_url)
    first, _ = await ask(manager, [Message.user(ASKED)], False)
    assert [c.id[:12] for c in first.tool_calls] == ["get_weather_"] * 2
    manager.disable_instance(0)
    manager.add_provider("openai", "sk-key-0123456789", "gpt-4o-mini", base_url=openai.base_url)
    for stream in (False, True):
        answer, _ = await ask(
            manager, [Message.user(ASKED), first.message, *results(first)], stream
        )
        assert answer.provider == "openai" and answer.content == QUOTED
