"""Tool calling on Gemini through the manager and the emulator: a call, the results, the
answer that quotes them, streamed and not; thought signatures kept and echoed; and
conversations that cross between Gemini and OpenAI in both directions."""

from __future__ import annotations

from typing import Any

import pytest

from flyllm import GenerationRequest, LlmManager, Message, TaskDefinition, Tool, ToolCallDelta
from flyllm.emulator import Emulator
from flyllm.types import LlmResponse, ToolCall
from tests.integration.conftest import EmulatorFactory, body

GEMINI3 = "gemini-3-flash-preview"
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
ASK = Message.user("Weather in Oslo and Lima?")
ANSWER = "Tool results: get_weather returned sunny in Oslo; get_weather returned sunny in Lima."


def request(task: str, messages: list[Message]) -> GenerationRequest:
    return GenerationRequest(task=task, messages=messages, tools=[WEATHER])


def results(calls: tuple[ToolCall, ...]) -> list[Message]:
    return [Message.tool_result(c.id, f"sunny in {c.arguments['city']}") for c in calls]


async def add(
    manager: LlmManager, emulators: EmulatorFactory, provider: str, model: str
) -> Emulator:
    emu = await emulators(provider)
    task = TaskDefinition(provider)
    manager.add_provider(provider, "k", model, [task], base_url=emu.base_url)
    return emu


def check_calls(response: LlmResponse) -> None:
    assert (response.finish_reason, response.raw_finish_reason) == ("tool_calls", "STOP")
    assert [(c.name, dict(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    first, second = response.tool_calls
    assert first.id and second.id and first.id != second.id
    assert set(first.provider_data) == {"google"}  # Gemini 3 signed the first call
    assert second.provider_data == {}


async def test_call_results_answer(manager: LlmManager, emulators: EmulatorFactory) -> None:
    emu = await add(manager, emulators, "google", GEMINI3)
    first = await manager.generate(request("google", [ASK]))
    check_calls(first)
    assert first.message.tool_calls == first.tool_calls
    conversation = [ASK, first.message, *results(first.tool_calls)]
    final = await manager.generate(request("google", conversation))
    assert (final.content, final.finish_reason, final.tool_calls) == (ANSWER, "stop", ())
    # Gemini's own signature went back on its call, with Gemini's own id
    sent = body(emu)["contents"]
    signature = first.tool_calls[0].provider_data["google"]["thoughtSignature"]
    assert sent[1]["parts"][0]["thoughtSignature"] == signature
    assert [p["functionResponse"]["id"] for p in sent[2]["parts"]] == [
        c.id for c in first.tool_calls
    ]
    # the text answer's signature rides on the turn and goes back on its text part
    text_signature = final.provider_data["google"]["thoughtSignature"]
    await manager.generate(request("google", [*conversation, final.message, ASK]))
    assert body(emu)["contents"][3]["parts"] == [
        {"text": ANSWER, "thoughtSignature": text_signature}
    ]


async def stream(
    manager: LlmManager, req: GenerationRequest
) -> tuple[str, list[ToolCallDelta], LlmResponse]:
    text: list[str] = []
    deltas: list[ToolCallDelta] = []
    async with manager.stream(req) as chunks:
        async for chunk in chunks:
            text.append(chunk.text)
            deltas.extend(chunk.tool_calls)
    return "".join(text), deltas, chunks.response


async def test_streamed_call_results_answer(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await add(manager, emulators, "google", GEMINI3)
    text, deltas, first = await stream(manager, request("google", [ASK]))
    check_calls(first)
    assert text == ""
    oslo, lima = first.tool_calls
    assert deltas == [  # whole calls: one delta each, canonical indexes
        ToolCallDelta(0, oslo.id, "get_weather", '{"city":"Oslo"}'),
        ToolCallDelta(1, lima.id, "get_weather", '{"city":"Lima"}'),
    ]
    conversation = [ASK, first.message, *results(first.tool_calls)]
    text, deltas, final = await stream(manager, request("google", conversation))
    assert text == final.content == ANSWER
    assert deltas == [] and final.finish_reason == "stop"
    assert final.provider_data["google"]["thoughtSignature"]  # from the last, empty part


async def test_openai_shaped_conversation_continues_on_gemini3(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await add(manager, emulators, "google", GEMINI3)
    calls = (
        ToolCall("call_Q1w2E3r4T5y6U7i8O9p0", "get_weather", {"city": "Oslo"}),
        ToolCall("call_A1s2D3f4G5h6J7k8L9z0", "get_weather", {"city": "Lima"}),
    )
    conversation = [ASK, Message("assistant", "", tool_calls=calls), *results(calls)]
    final = await manager.generate(request("google", conversation))
    assert final.content == ANSWER
    model_turn = body(emu)["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert [p["functionCall"]["id"] for p in model_turn["parts"]] == [c.id for c in calls]


@pytest.mark.parametrize(("start", "then"), [("google", "openai"), ("openai", "google")])
async def test_conversation_crosses_between_gemini_and_openai(
    manager: LlmManager, emulators: EmulatorFactory, start: str, then: str
) -> None:
    models = {"google": GEMINI3, "openai": "gpt-4o-mini"}
    emus: dict[str, Any] = {}
    for provider in ("google", "openai"):
        emus[provider] = await add(manager, emulators, provider, models[provider])
    first = await manager.generate(request(start, [ASK]))
    assert first.provider == start and len(first.tool_calls) == 2
    conversation = [ASK, first.message, *results(first.tool_calls)]
    final = await manager.generate(request(then, conversation))
    assert final.provider == then and final.finish_reason == "stop"
    # the results reached the model (a wire without tool names may quote the call ids)
    assert "returned sunny in Oslo" in final.content
    assert "returned sunny in Lima" in final.content
    sent = str(body(emus[then]))
    if then == "openai":  # Gemini's signatures stay with Gemini
        assert "thoughtSignature" not in sent and "thought_signature" not in sent
    else:
        assert "skip_thought_signature_validator" in sent
