"""Tool calling through the manager on the OpenAI family (OpenAI, Azure, compatible services)
against the emulator on loopback: a tool call, then the results, then the text answer that
quotes them, streamed and not; and conversations that move between providers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from flyllm import (
    AllAttemptsFailedError,
    GenerationRequest,
    LlmManager,
    LlmResponse,
    Message,
    ProviderError,
    Tool,
    ToolCall,
    UnsupportedFeatureError,
)
from tests.integration.conftest import EmulatorFactory, body

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = [Message.user("Weather in Oslo and Lima?")]
ANSWER = "Tool results: get_weather returned Oslo: 3C; get_weather returned Lima: 19C."
TEMPERATURES = {"Oslo": "3C", "Lima": "19C"}


def results(response: LlmResponse) -> list[Message]:
    """The conversation so far plus the assistant turn and one result per call."""
    out = [*ASK, response.message]
    for call in response.tool_calls:
        city = call.arguments["city"]
        out.append(Message.tool_result(call.id, f"{city}: {TEMPERATURES[city]}"))
    return out


async def streamed(manager: LlmManager, request: GenerationRequest) -> tuple[list[Any], Any]:
    async with manager.stream(request) as stream:
        chunks = [chunk async for chunk in stream]
    return chunks, stream.response


def check_calls(calls: tuple[ToolCall, ...], id_pattern: str) -> None:
    assert [(c.name, dict(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert all(re.fullmatch(id_pattern, c.id) for c in calls)


@pytest.mark.parametrize("provider", ["openai", "azure", "groq", "vllm"])
async def test_a_tool_round_trip_streamed_and_not(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider)
    manager.add_provider(provider, "k-emulated", "gpt-4o", base_url=emu.base_url)
    request = GenerationRequest(messages=ASK, tools=[WEATHER])

    first = await manager.generate(request)
    assert first.finish_reason == "tool_calls" and first.content == ""
    check_calls(first.tool_calls, r"call_[A-Za-z0-9]{24}")
    assert body(emu)["tools"][0]["function"]["name"] == "get_weather"

    chunks, final = await streamed(manager, request)
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.name) for d in deltas if d.id] == [(0, "get_weather"), (1, "get_weather")]
    assert "".join(d.arguments_delta for d in deltas if d.index == 1) == '{"city":"Lima"}'
    check_calls(final.tool_calls, r"call_[A-Za-z0-9]{24}")
    assert final.finish_reason == "tool_calls"

    for answer in (
        await manager.generate(GenerationRequest(messages=results(first), tools=[WEATHER])),
        (await streamed(manager, GenerationRequest(messages=results(final), tools=[WEATHER])))[1],
    ):
        assert (answer.content, answer.finish_reason, answer.tool_calls) == (ANSWER, "stop", ())
    sent = body(emu)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[1]["content"] is None


async def test_named_choice_without_parallel_calls(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k-emulated", "gpt-4o", base_url=emu.base_url)
    clock = Tool("get_time")
    request = GenerationRequest(
        messages=ASK, tools=[WEATHER, clock], tool_choice="get_time", parallel_tool_calls=False
    )
    response = await manager.generate(request)
    assert [c.name for c in response.tool_calls] == ["get_time"]
    sent = body(emu)
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert sent["parallel_tool_calls"] is False


async def test_a_model_without_tools_is_an_unsupported_feature(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k-emulated", "o1-notools", base_url=emu.base_url)
    with pytest.raises((UnsupportedFeatureError, AllAttemptsFailedError)) as caught:
        await manager.generate(GenerationRequest(messages=ASK, tools=[WEATHER], max_attempts=1))
    err = caught.value
    errors: list[ProviderError] = (
        list(err.attempts) if isinstance(err, AllAttemptsFailedError) else [err]  # type: ignore[list-item]
    )
    assert errors and all(
        isinstance(e, UnsupportedFeatureError) and e.feature == "tools" for e in errors
    )
    assert "'tools' is not supported" in str(errors[0])


async def test_a_conversation_moves_between_openai_and_mistral(emulators: EmulatorFactory) -> None:
    """Started on OpenAI (ids "call_..."), continued on Mistral (nine-character ids, sent the
    same for call and result), and a Mistral-started one continued on OpenAI."""
    openai_emu, mistral_emu = await emulators("openai"), await emulators("mistral")
    async with LlmManager() as on_openai, LlmManager() as on_mistral:
        on_openai.add_provider("openai", "k-emulated", "gpt-4o", base_url=openai_emu.base_url)
        on_mistral.add_provider(
            "mistral", "k-emulated", "mistral-small", base_url=mistral_emu.base_url
        )
        request = GenerationRequest(messages=ASK, tools=[WEATHER])

        started = await on_openai.generate(request)
        check_calls(started.tool_calls, r"call_[A-Za-z0-9]{24}")
        moved = await on_mistral.generate(
            GenerationRequest(messages=results(started), tools=[WEATHER])
        )
        assert moved.content == ANSWER
        sent = body(mistral_emu)["messages"]
        ids = [c["id"] for c in sent[1]["tool_calls"]]
        assert all(re.fullmatch(r"[A-Za-z0-9]{9}", i) for i in ids)
        assert [m["tool_call_id"] for m in sent[2:]] == ids

        started = await on_mistral.generate(request)
        check_calls(started.tool_calls, r"[A-Za-z0-9]{9}")
        moved = await on_openai.generate(
            GenerationRequest(messages=results(started), tools=[WEATHER])
        )
        assert moved.content == ANSWER
        sent = body(openai_emu)["messages"]
        assert [c["id"] for c in sent[1]["tool_calls"]] == [c.id for c in started.tool_calls]


@pytest.mark.parametrize("provider", ["openai", "azure", "together"])
async def test_a_conversation_from_another_provider_is_accepted(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    """Anthropic- and Gemini-style turns: foreign ids, no text, raw arguments, another family's
    provider state (dropped), a failed result."""
    emu = await emulators(provider)
    manager.add_provider(provider, "k-emulated", "gpt-4o", base_url=emu.base_url)
    calls = (
        ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "Oslo"}),
        ToolCall("a.b:c", "get_weather", {}, raw_arguments='{"city": "Li'),
    )
    turns = [
        *ASK,
        Message("assistant", "", tool_calls=calls, provider_data={"google": {"sig": "c2ln"}}),
        Message.tool_result("toolu_01A09q90qw90lq917835lq9", "3C"),
        Message.tool_result("a.b:c", "unknown city", is_error=True),
    ]
    answer = await manager.generate(GenerationRequest(messages=turns, tools=[WEATHER]))
    assert answer.content == (
        "Tool results: get_weather returned 3C; get_weather returned Error: unknown city."
    )
    sent = body(emu)["messages"]
    assert [c["id"] for c in sent[1]["tool_calls"]] == ["toolu_01A09q90qw90lq917835lq9", "a.b:c"]
    assert sent[1]["tool_calls"][1]["function"]["arguments"] == '{"city": "Li'
    assert "c2ln" not in str(sent)
