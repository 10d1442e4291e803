"""Tool calling on Ollama through the manager and the emulator on loopback: whole calls
without ids (flyllm makes them up), the results by tool name, the answer that quotes them
(streamed and not); the tool choices Ollama has no field for; a model without tools failing
over; and conversations moving between Ollama and OpenAI."""

from __future__ import annotations

import pytest

from flyllm import FlyLLMError, LlmManager, Message, ToolCall
from tests.integration.conftest import EmulatorFactory, body
from tests.integration.test_tools_cohere import ASKED, QUOTED, ask, check_deltas, results


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_then_results_then_the_answer(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("ollama")
    manager.add_provider("ollama", "", "llama3.2", base_url=emu.base_url)
    first, deltas = await ask(manager, [Message.user(ASKED)], stream)
    assert (
        first.success and first.finish_reason == "tool_calls" and first.raw_finish_reason == "stop"
    )
    assert [c.arguments for c in first.tool_calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    ids = [c.id for c in first.tool_calls]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2  # made up, distinct
    if stream:
        check_deltas(deltas, first.tool_calls)
        assert len(deltas) == 2  # whole calls: one delta each
    answer, _ = await ask(manager, [Message.user(ASKED), first.message, *results(first)], stream)
    assert answer.finish_reason == "stop" and answer.content == QUOTED and not answer.tool_calls
    sent = body(emu)["messages"]
    assert [c["function"]["arguments"] for c in sent[1]["tool_calls"]] == [
        {"city": "Oslo"},
        {"city": "Lima"},
    ]
    assert [(m["tool_name"], m["tool_call_id"]) for m in sent[2:]] == [
        ("get_weather", i) for i in ids
    ]


async def test_tool_choices_ollama_has_no_field_for(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("ollama")
    manager.add_provider("ollama", "", "llama3.2", base_url=emu.base_url)
    with pytest.raises(FlyLLMError):
        await ask(manager, [Message.user(ASKED)], False, tool_choice="get_weather")
    assert emu.stats()["requests"] == 0
    none, _ = await ask(manager, [Message.user(ASKED)], False, tool_choice="none")
    assert "tools" not in body(emu) and none.finish_reason == "stop" and not none.tool_calls
    required, _ = await ask(manager, [Message.user(ASKED)], False, tool_choice="required")
    assert "tool_choice" not in body(emu) and required.finish_reason == "tool_calls"


async def test_a_model_without_tools_fails_over(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    plain, able = await emulators("ollama"), await emulators("ollama")
    manager.add_provider("ollama", "", "gemma-notools", base_url=plain.base_url)
    manager.add_provider("ollama", "", "llama3.2", base_url=able.base_url)
    for _ in range(2):
        response, _ = await ask(manager, [Message.user(ASKED)], False)
        assert response.success and response.instance_id == 1 and response.tool_calls
    assert plain.stats()["requests"] >= 1


async def test_an_openai_started_conversation_continues_on_ollama(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("ollama")
    manager.add_provider("ollama", "", "llama3.2", base_url=emu.base_url)
    calls = [
        ToolCall("call_Hx7a0Pq2LmZk9", "get_weather", {"city": "Oslo"}),
        ToolCall("call_Yb3cQ", "get_weather", {}, raw_arguments='{"city": "Lima"'),
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
    assert [c["function"]["arguments"] for c in sent[1]["tool_calls"]] == [{"city": "Oslo"}, {}]
    assert [m["tool_name"] for m in sent[2:]] == ["get_weather", "get_weather"]


async def test_an_ollama_started_conversation_continues_on_openai(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    ollama, openai = await emulators("ollama"), await emulators("openai")
    manager.add_provider("ollama", "", "llama3.2", base_url=ollama.base_url)
    first, _ = await ask(manager, [Message.user(ASKED)], False)
    manager.disable_instance(0)
    manager.add_provider("openai", "sk-key-0123456789", "gpt-4o-mini", base_url=openai.base_url)
    for stream in (False, True):
        answer, _ = await ask(
            manager, [Message.user(ASKED), first.message, *results(first)], stream
        )
        assert answer.provider == "openai" and answer.content == QUOTED
