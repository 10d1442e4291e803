"""Tool calling through the manager on Anthropic (the emulator on loopback): a tool call, its
results, then the text answer that quotes them, streamed and not; extended thinking kept and
sent back; a conversation that came from another provider, and one that goes on to OpenAI."""

from __future__ import annotations

from typing import Any

import pytest

from flyllm import (
    FlyLLMError,
    GenerationRequest,
    LlmManager,
    Message,
    TaskDefinition,
    Tool,
    ToolCall,
    UnsupportedFeatureError,
)
from flyllm.emulator import Emulator
from flyllm.types import LlmResponse
from tests.integration.conftest import EmulatorFactory, body

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = "Weather in Oslo and Lima?"
THINKING = {"anthropic": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}
QUOTED = "Tool results: get_weather returned 12 C in Oslo; get_weather returned 20 C in Lima."


def results(response: LlmResponse) -> list[Message]:
    return [
        Message.tool_result(
            call.id,
            f"{12 if call.arguments['city'] == 'Oslo' else 20} C in {call.arguments['city']}",
        )
        for call in response.tool_calls
    ]


def ask(messages: list[Message] | None = None, task: str | None = None) -> GenerationRequest:
    return GenerationRequest(messages=messages or [Message.user(ASK)], tools=[WEATHER], task=task)


async def anthropic_manager(
    manager: LlmManager, emulators: EmulatorFactory, **extra: Any
) -> Emulator:
    emu = await emulators("anthropic")
    manager.add_provider("anthropic", "k", "claude-sonnet-4-5", base_url=emu.base_url, **extra)
    return emu


async def test_tool_call_then_results_then_text(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await anthropic_manager(manager, emulators)
    first = await manager.generate(ask())
    assert first.success and first.finish_reason == "tool_calls"
    assert first.raw_finish_reason == "tool_use"
    assert [(c.name, dict(c.arguments)) for c in first.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert body(emu)["tool_choice"] == {"type": "auto"}

    second = await manager.generate(ask([Message.user(ASK), first.message, *results(first)]))
    assert second.finish_reason == "stop" and second.tool_calls == ()
    assert second.content == QUOTED
    sent = body(emu)["messages"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use", "tool_use"]
    assert [b["type"] for b in sent[2]["content"]] == ["tool_result", "tool_result"]


async def test_streamed_tool_call_then_streamed_answer(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await anthropic_manager(manager, emulators)
    request = GenerationRequest(
        messages=[Message.user(ASK)], tools=[WEATHER], parallel_tool_calls=False
    )
    async with manager.stream(request) as stream:
        chunks = [chunk async for chunk in stream]
    response = stream.response
    deltas = [d for c in chunks for d in c.tool_calls]
    (call,) = response.tool_calls
    assert call.arguments == {"city": "Oslo"} and response.finish_reason == "tool_calls"
    assert deltas[0].index == 0 and deltas[0].id == call.id and deltas[0].name == "get_weather"
    assert all(d.index == 0 and d.id is None for d in deltas[1:]) and len(deltas) > 2
    assert "".join(d.arguments_delta for d in deltas) == '{"city":"Oslo"}'

    follow = ask([Message.user(ASK), response.message, Message.tool_result(call.id, "12 C")])
    async with manager.stream(follow) as stream:
        text = "".join([chunk.text async for chunk in stream])
    assert text == stream.response.content == "Tool results: get_weather returned 12 C."


@pytest.mark.parametrize("streamed", [False, True])
async def test_thinking_blocks_go_back_with_the_calls(
    manager: LlmManager, emulators: EmulatorFactory, streamed: bool
) -> None:
    emu = await anthropic_manager(manager, emulators, provider_params=THINKING)
    if streamed:
        async with manager.stream(ask()) as stream:
            _ = [chunk async for chunk in stream]
        first = stream.response
    else:
        first = await manager.generate(ask())
    (block,) = first.provider_data["anthropic"]["thinking_blocks"]
    assert block["type"] == "thinking" and block["signature"]
    # The emulator checks the signature and that the thinking block leads the calls' turn.
    second = await manager.generate(ask([Message.user(ASK), first.message, *results(first)]))
    assert second.content == QUOTED
    assert body(emu)["messages"][1]["content"][0] == block


async def test_conversation_from_another_provider_continues_here(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    """OpenAI-style ids (one with characters Anthropic rejects), no provider_data, content ""
    on the calls' turn, arguments that were not JSON, another family's state."""
    emu = await anthropic_manager(manager, emulators)
    calls = (
        ToolCall("call_Oslo.v1:7", "get_weather", {"city": "Oslo"}),
        ToolCall("call_8Yq2", "get_weather", {}, raw_arguments='{"city": "Li'),
    )
    turn = Message("assistant", "", tool_calls=calls, provider_data={"google": {"sig": "x"}})
    conversation = [
        Message.system("Be brief."),
        Message.user(ASK),
        turn,
        Message.tool_result("call_Oslo.v1:7", "12 C in Oslo"),
        Message.tool_result("call_8Yq2", "arguments were not JSON", is_error=True),
    ]
    answer = await manager.generate(ask(conversation))
    assert answer.content == (
        "Tool results: get_weather returned 12 C in Oslo; "
        "get_weather failed with arguments were not JSON."
    )
    sent = body(emu)["messages"]
    ids = [b["id"] for b in sent[1]["content"]]
    assert ids[1] == "call_8Yq2" and ids[0] != "call_Oslo.v1:7"
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ids


async def test_model_without_tools_is_unsupported(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("anthropic")
    manager.add_provider("anthropic", "k", "claude-notools", base_url=emu.base_url)
    with pytest.raises(FlyLLMError) as caught:
        await manager.generate(ask())
    err = caught.value
    found = [err, *getattr(err, "attempts", ())]
    assert any(isinstance(e, UnsupportedFeatureError) and e.feature == "tools" for e in found)


async def _two_providers(manager: LlmManager, emulators: EmulatorFactory) -> None:
    anthropic, openai = await emulators("anthropic"), await emulators("openai")
    manager.add_provider(
        "anthropic",
        "k",
        "claude-sonnet-4-5",
        [TaskDefinition("on_anthropic")],
        base_url=anthropic.base_url,
    )
    manager.add_provider(
        "openai", "k", "gpt-4o-mini", [TaskDefinition("on_openai")], base_url=openai.base_url
    )


async def test_started_here_continues_on_openai(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await _two_providers(manager, emulators)
    first = await manager.generate(ask(task="on_anthropic"))
    assert first.provider == "anthropic" and len(first.tool_calls) == 2
    history = [Message.user(ASK), first.message, *results(first)]
    second = await manager.generate(ask(history, task="on_openai"))
    assert second.provider == "openai" and second.finish_reason == "stop"
    assert "12 C in Oslo" in second.content and "20 C in Lima" in second.content


async def test_started_on_openai_continues_here(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await _two_providers(manager, emulators)
    first = await manager.generate(ask(task="on_openai"))
    assert first.provider == "openai" and first.tool_calls
    assert all(c.id.startswith("call_") for c in first.tool_calls)
    history = [Message.user(ASK), first.message, *results(first)]
    second = await manager.generate(ask(history, task="on_anthropic"))
    assert second.provider == "anthropic" and second.finish_reason == "stop"
    assert second.content.startswith("Tool results: get_weather returned ")
