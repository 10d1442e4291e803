"""One tool conversation, any provider: started on each provider and continued on each other
one, over the emulators on loopback. For every ordered pair (A, B): A calls the tools (two
subjects, parallel calls), B reads the results and answers quoting them, A takes B's turns in
its history and calls again after a new user turn, and B answers that. Then every provider's
first step streamed: the deltas assemble, in canonical order, into the final calls.

One emulator per provider and one manager for the module (a task per provider), so the 42
pairs cost requests only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio

from flyllm import GenerationRequest, LlmManager, LlmResponse, Message, TaskDefinition, Tool
from flyllm.emulator import Emulator
from flyllm.types import ToolCallDelta

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-3-flash-preview",  # thought signatures, and the dummy one for others' calls
    "mistral": "mistral-small-latest",
    "cohere": "command-a",
    "ollama": "llama3.2",
    "azure": "gpt-4o",
}
PAIRS = [(a, b) for a in MODELS for b in MODELS if a != b]
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
FIRST = "Weather in Oslo and Lima?"
SECOND = "And in Paris and Rome?"
SKY = {"Oslo": "snow", "Lima": "fog", "Paris": "rain", "Rome": "sun"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def manager() -> AsyncIterator[LlmManager]:
    """Every provider behind its own emulator; task ``<provider>`` routes to it alone."""
    async with AsyncExitStack() as stack:
        mgr = await stack.enter_async_context(LlmManager(read_timeout=5.0))
        for provider, model in MODELS.items():
            emu = await stack.enter_async_context(Emulator(provider=provider))
            key = "" if provider == "ollama" else f"k-{provider}-" + "x" * 12
            mgr.add_provider(
                provider, key, model, [TaskDefinition(provider)], base_url=emu.base_url
            )
        yield mgr


def ask(task: str, messages: list[Message]) -> GenerationRequest:
    return GenerationRequest(task=task, messages=messages, tools=[WEATHER])


def calls_made(response: LlmResponse, provider: str, cities: list[str]) -> list[Message]:
    """Asserts ``response`` calls get_weather once per city, in order, from ``provider``;
    returns the assistant turn and one result per call."""
    assert response.success and response.provider == provider
    assert response.finish_reason == "tool_calls"
    calls = response.tool_calls
    assert [(c.name, dict(c.arguments)) for c in calls] == [
        ("get_weather", {"city": city}) for city in cities
    ]
    assert len({c.id for c in calls}) == len(calls) and all(c.id for c in calls)
    results = [Message.tool_result(c.id, f"{SKY[c.arguments['city']]} in {c.arguments['city']}")
               for c in calls]  # fmt: skip
    return [response.message, *results]


def answered(response: LlmResponse, provider: str, cities: list[str]) -> None:
    """Asserts ``response`` is ``provider``'s text answer quoting each city's result."""
    assert response.success and response.provider == provider
    assert response.finish_reason == "stop" and response.tool_calls == ()
    for city in cities:
        assert f"returned {SKY[city]} in {city}" in response.content, response.content
    assert "failed with" not in response.content


@pytest.mark.parametrize(("a", "b"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
async def test_a_conversation_moves_between_two_providers_and_back(
    manager: LlmManager, a: str, b: str
) -> None:
    history = [Message.user(FIRST)]
    history += calls_made(await manager.generate(ask(a, history)), a, ["Oslo", "Lima"])
    step2 = await manager.generate(ask(b, history))
    answered(step2, b, ["Oslo", "Lima"])
    history += [step2.message, Message.user(SECOND)]
    history += calls_made(await manager.generate(ask(a, history)), a, ["Paris", "Rome"])
    answered(await manager.generate(ask(b, history)), b, ["Paris", "Rome"])


@pytest.mark.parametrize("provider", list(MODELS))
async def test_streamed_calls_assemble_in_canonical_order(
    manager: LlmManager, provider: str
) -> None:
    deltas: list[ToolCallDelta] = []
    texts: list[str] = []
    async with manager.stream(ask(provider, [Message.user(FIRST)])) as stream:
        async for chunk in stream:
            deltas += chunk.tool_calls
            texts.append(chunk.text)
    final = stream.response
    history = calls_made(final, provider, ["Oslo", "Lima"])
    assert "".join(texts) == final.content
    calls = final.tool_calls
    assert sorted({d.index for d in deltas}) == list(range(len(calls)))
    for n, call in enumerate(calls):
        mine = [d for d in deltas if d.index == n]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)
        assert all(d.id is None and d.name is None for d in mine[1:])
        assert json.loads("".join(d.arguments_delta for d in mine)) == call.arguments
    # the streamed turn continues the conversation like any other
    answered(await manager.generate(ask(provider, history)), provider, ["Oslo", "Lima"])
