"""The official anthropic SDK as a client of the gateway's ``POST /v1/messages``: answers and
streams (text and a tool call round trip) served by each of the four main providers in turn."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam, ToolResultBlockParam

from tests.server.conftest import GatewayFactory, Served

PROVIDERS = ("openai", "anthropic", "gemini", "mistral")
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@asynccontextmanager
async def sdk(served: Served) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=served.url, api_key="unused", max_retries=0, timeout=10.0
    ) as client:
        yield client


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_messages_create_and_stream_agree(gateway: GatewayFactory, provider: str) -> None:
    served = await gateway(provider)
    messages: list[MessageParam] = [{"role": "user", "content": "tell me about tides"}]
    async with sdk(served) as client:
        raw = await client.messages.with_raw_response.create(
            model="chat", max_tokens=200, messages=messages, system="be brief"
        )
        plain = await raw.parse()
        async with client.messages.stream(
            model="chat", max_tokens=200, messages=messages, system="be brief"
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert plain.id.startswith("msg_") and plain.type == "message" and plain.role == "assistant"
    assert plain.model == "chat" and plain.stop_reason == "end_turn"
    assert plain.content[0].type == "text" and plain.content[0].text
    assert raw.headers["x-flyllm-provider"] == served.manager.instances()[0].provider
    assert raw.headers["request-id"]
    assert text == plain.content[0].text
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == plain.usage.input_tokens > 0
    assert final.usage.output_tokens == plain.usage.output_tokens > 0


def _call_turns(question: str, answer: anthropic.types.Message) -> list[MessageParam]:
    """The conversation after a tool call: the question, the answer with its tool_use
    blocks (as the SDK hands them back) and one tool_result per call."""
    calls = [b for b in answer.content if b.type == "tool_use"]
    results: list[ToolResultBlockParam] = [
        {"type": "tool_result", "tool_use_id": c.id, "content": f"sunny in {c.input['city']}"}
        for c in calls
    ]
    return [
        {"role": "user", "content": question},
        answer.to_param(),
        {"role": "user", "content": results},
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_call_round_trip_created_and_streamed(
    gateway: GatewayFactory, provider: str
) -> None:
    served = await gateway(provider)
    question = "What is the weather in Oslo?"
    ask: list[MessageParam] = [{"role": "user", "content": question}]
    async with sdk(served) as client:
        plain = await client.messages.create(
            model="chat", max_tokens=200, messages=ask, tools=[WEATHER],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )  # fmt: skip
        async with client.messages.stream(
            model="chat", max_tokens=200, messages=ask, tools=[WEATHER],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        ) as stream:  # fmt: skip
            streamed = await stream.get_final_message()
        for answer in (plain, streamed):
            assert answer.stop_reason == "tool_use"
            [call] = [b for b in answer.content if b.type == "tool_use"]
            assert call.name == "get_weather" and call.input == {"city": "Oslo"}
            assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", call.id)
        done = await client.messages.create(
            model="chat", max_tokens=200, messages=_call_turns(question, streamed), tools=[WEATHER]
        )
    assert done.stop_reason == "end_turn"
    assert done.content[0].type == "text" and "sunny in Oslo" in done.content[0].text


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_parallel_tool_calls_stream_as_separate_blocks(
    gateway: GatewayFactory, provider: str
) -> None:
    served = await gateway(provider)
    ask: list[MessageParam] = [{"role": "user", "content": "Weather in Oslo and Lima?"}]
    async with (
        sdk(served) as client,
        client.messages.stream(
            model="chat", max_tokens=200, messages=ask, tools=[WEATHER]
        ) as stream,
    ):
        final = await stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert len({c.id for c in calls}) == 2 and final.stop_reason == "tool_use"


async def test_models_list_in_anthropics_shape(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    async with anthropic.AsyncAnthropic(base_url=served.url, api_key="unused") as client:
        page = await client.models.list()
    assert [m.id for m in page.data] == ["chat"]
    assert page.data[0].type == "model" and page.has_more is False
