"""run_tools against the emulators on loopback: a step that fails on one provider continues on
another with the same messages; parallel calls run concurrently; a raising function and
arguments that break the tool's schema reach the model as error results; and a "required"
choice does not loop until max_steps."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from flyllm import GenerationRequest, LlmManager, Message, Tool, ToolLoopError
from flyllm.emulator import Emulator
from tests.integration.conftest import EmulatorFactory, VirtualTime
from tests.integration.conftest import body as sent_body

ASK = "Weather in Oslo and Lima?"
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


class ById:
    """Always the lowest instance id first: which instance takes a step is known."""

    def order(self, candidates: Sequence[Any], estimate: Any = None) -> list[Any]:
        return sorted(candidates, key=lambda c: c.id)


@pytest.fixture
async def manager() -> AsyncIterator[LlmManager]:
    virtual = VirtualTime()
    async with LlmManager(
        strategy=ById(), clock=virtual.clock, sleep=virtual.sleep, read_timeout=5.0
    ) as m:
        yield m


async def add(manager: LlmManager, emulators: EmulatorFactory, provider: str) -> Emulator:
    models = {"google": "gemini-3-flash-preview", "ollama": "llama3.2", "cohere": "command-a"}
    emu = await emulators(provider)
    key = "" if provider == "ollama" else f"k-{provider}-" + "z" * 10
    manager.add_provider(provider, key, models.get(provider, "gpt-4o"), base_url=emu.base_url)
    return emu


async def test_a_step_that_fails_on_one_provider_continues_on_another(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    first = await add(manager, emulators, "openai")
    second = await add(manager, emulators, "anthropic")

    async def get_weather(city: str) -> str:
        if not first.settings()["scheduled"]:  # openai fails the next step, once
            first.schedule("server_error")
        return f"sleet in {city}"

    response = await manager.run_tools(GenerationRequest(prompt=ASK), [get_weather])

    assert (response.provider, response.finish_reason, response.attempts) == (
        "anthropic",
        "stop",
        3,
    )
    assert response.content == (
        "Tool results: get_weather returned sleet in Oslo; get_weather returned sleet in Lima."
    )
    assert first.stats()["faults_injected"] == {"server_error": 1}
    assert [m.role for m in response.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    calls = response.messages[1].tool_calls
    # the failed step and the step that answered sent the same conversation, each in its shape
    failed = sent_body(first)["messages"]
    assert [m["role"] for m in failed] == ["user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in failed[2:]] == [c.id for c in calls]
    sent = sent_body(second)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["id"] for b in sent[1]["content"]] == [c.id for c in calls]
    assert [b["tool_use_id"] for b in sent[2]["content"]] == [c.id for c in calls]


async def test_parallel_calls_run_concurrently(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await add(manager, emulators, "google")
    both_in = asyncio.Event()
    running: list[str] = []

    async def get_weather(city: str) -> str:
        running.append(city)
        if len(running) == 2:
            both_in.set()
        await asyncio.wait_for(both_in.wait(), 2.0)  # one at a time would time out here
        return f"hail in {city}"

    response = await manager.run_tools(GenerationRequest(prompt=ASK), [get_weather])
    assert response.content == (
        "Tool results: get_weather returned hail in Oslo; get_weather returned hail in Lima."
    )
    assert sorted(running) == ["Lima", "Oslo"]


VOLUME = Tool(
    "set_volume",
    "Set the speaker's volume for a room",
    {
        "type": "object",
        "properties": {"room": {"type": "string"}, "level": {"type": "integer", "minimum": 50}},
        "required": ["room", "level"],
    },
)

# How each wire marks a failed result in the emulator's answer: providers with an error flag
# have it quoted as "failed with"; the OpenAI family, Cohere and Ollama carry it in the text.
FAILED = {
    "openai": "returned Error: ",
    "anthropic": "failed with ",
    "google": "failed with ",
    "mistral": "returned Error: ",
    "cohere": "returned Error: ",
    "ollama": "returned Error: ",
}


@pytest.mark.parametrize("provider", list(FAILED))
async def test_a_raising_function_and_invalid_arguments_reach_the_model_as_errors(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await add(manager, emulators, provider)
    volume_called: list[Any] = []

    def get_weather(city: str) -> str:
        raise LookupError(f"no station in {city}")

    def set_volume(room: str, level: int) -> str:
        volume_called.append((room, level))
        return "done"

    weather = await manager.run_tools(
        GenerationRequest(prompt="Weather in Oslo?", tools=[WEATHER, VOLUME]),
        {"get_weather": get_weather, "set_volume": set_volume},
    )
    assert weather.messages[2].is_error
    assert f"{FAILED[provider]}LookupError: no station in Oslo" in weather.content

    # the emulator reads "7" from the prompt; the schema's minimum is 50
    volume = await manager.run_tools(
        GenerationRequest(prompt="Set the volume to 7 in Kitchen", tools=[WEATHER, VOLUME]),
        {"get_weather": get_weather, "set_volume": set_volume},
    )
    assert volume.messages[2].is_error and volume_called == []
    assert f"{FAILED[provider]}invalid arguments for set_volume: " in volume.content
    assert "level" in volume.content and "50" in volume.content


async def test_a_required_choice_is_not_an_endless_loop(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    """The emulator, like real providers, calls a tool whenever the choice is "required";
    run_tools lets the model answer after the first step by asking with "auto"."""
    emu = await add(manager, emulators, "openai")

    def get_weather(city: str) -> str:
        return f"mist in {city}"

    request = GenerationRequest(prompt=ASK, tool_choice="required")
    response = await manager.run_tools(request, [get_weather], max_steps=8)
    assert response.finish_reason == "stop" and "returned mist in Oslo" in response.content
    # "auto" is OpenAI's default, left out of the body
    assert [(r.json or {}).get("tool_choice") for r in emu.requests] == ["required", None]

    with pytest.raises(ToolLoopError) as caught:
        await manager.run_tools(request, [get_weather], max_steps=1)
    transcript = caught.value.messages
    assert [m.role for m in transcript] == ["user", "assistant", "tool", "tool"]
    assert len(emu.requests) == 3  # one step, then it stopped
    # the transcript continues: its last calls are answered
    more = await manager.run_tools(
        GenerationRequest(messages=transcript, tools=[WEATHER]), [get_weather], max_steps=1
    )
    assert more.finish_reason == "stop" and more.messages[: len(transcript)] == tuple(transcript)
    assert isinstance(more.messages[-1], Message)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() tells them apart")
async def test_a_function_raising_cancelled_error_is_its_failure_not_a_cancellation(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    """A function's own CancelledError (an inner task it awaited was cancelled) is a failed
    call the model reads; only cancelling the loop itself cancels it."""
    await add(manager, emulators, "anthropic")

    async def get_weather(city: str) -> str:
        inner = asyncio.ensure_future(asyncio.sleep(10, result=city))
        inner.cancel()
        return await inner

    response = await manager.run_tools(GenerationRequest(prompt="Weather in Oslo?"), [get_weather])
    assert response.content == "Tool results: get_weather failed with CancelledError."
    assert response.messages[2].is_error
