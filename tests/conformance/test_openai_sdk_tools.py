"""Tool calling in the OpenAI, Azure and compatible dialects of the emulator, driven by the
official ``openai`` SDK: its types parse the calls, its stream helper accumulates them into
``get_final_completion()``, and the API's 400s for broken tool turns reach it as BadRequestError.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from flyllm.emulator import Emulator
from tests.conformance.helpers import KEY

MODEL = "gpt-4o-mini"
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CLOCK: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in Oslo and Lima?"}]
CALL_ID = re.compile(r"call_[A-Za-z0-9]{24}")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="openai", api_keys={KEY}) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
    ) as sdk:
        yield sdk


def functions(calls: list[Any] | None) -> list[ChatCompletionMessageFunctionToolCall]:
    """The calls as function calls (the only kind the emulator makes)."""
    assert calls is not None
    assert all(isinstance(c, ChatCompletionMessageFunctionToolCall) for c in calls)
    return calls


def results_for(message: Any) -> list[ChatCompletionMessageParam]:
    """The assistant turn as the SDK user sends it back, then one result per call."""
    turns: list[ChatCompletionMessageParam] = [message.model_dump(exclude_none=True)]
    for call in message.tool_calls:
        city = json.loads(call.function.arguments)["city"]
        turns.append({"role": "tool", "tool_call_id": call.id, "content": f"{city}: 3C"})
    return turns


async def test_parallel_calls_then_the_answer_quotes_the_results(
    emu: Emulator, client: openai.AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = functions(choice.message.tool_calls)
    assert [(c.type, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("function", "get_weather", {"city": "Oslo"}),
        ("function", "get_weather", {"city": "Lima"}),
    ]
    assert all(CALL_ID.fullmatch(c.id) for c in calls)
    sent = emu.requests[-1].json
    assert sent is not None and sent["tools"] == [WEATHER]

    final = await client.chat.completions.create(
        model=MODEL, messages=[*ASK, *results_for(choice.message)], tools=[WEATHER]
    )
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == (
        "Tool results: get_weather returned Oslo: 3C; get_weather returned Lima: 3C."
    )


async def test_the_stream_helper_accumulates_the_calls(client: openai.AsyncOpenAI) -> None:
    async with client.chat.completions.stream(
        model=MODEL, messages=ASK, tools=[WEATHER, CLOCK]
    ) as stream:
        done = [e async for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", '{"city":"Oslo"}'),
        ("get_weather", '{"city":"Lima"}'),
    ]
    assert [e.arguments for e in done] == ['{"city":"Oslo"}', '{"city":"Lima"}']
    assert final.choices[0].finish_reason == "tool_calls"


async def test_raw_stream_sends_arguments_in_fragments(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], stream=True
    )
    fragments = [
        call
        async for chunk in stream
        if chunk.choices and chunk.choices[0].delta.tool_calls
        for call in chunk.choices[0].delta.tool_calls
    ]
    firsts = [f for f in fragments if f.id]
    assert [(f.index, f.function and f.function.name) for f in firsts] == [
        (0, "get_weather"),
        (1, "get_weather"),
    ]
    assert len([f for f in fragments if f.index == 0]) > 2  # arguments in several pieces


async def test_named_choice_and_no_parallel_calls(
    emu: Emulator, client: openai.AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    calls = functions(completion.choices[0].message.tool_calls)
    assert [c.function.name for c in calls] == ["get_time"]
    sent = emu.requests[-1].json
    assert sent is not None and sent["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        (
            [*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "3C"}],
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            [
                *ASK,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "and?"},
            ],
            "did not have response messages: call_a",
        ),
    ],
)
async def test_broken_tool_turns_are_rejected(
    client: openai.AsyncOpenAI, messages: list[ChatCompletionMessageParam], says: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=re.escape(says)):
        await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])


async def test_tool_fields_need_tools_and_notools_models_refuse(
    client: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError, match="only allowed when 'tools'"):
        await client.chat.completions.create(model=MODEL, messages=ASK, tool_choice="required")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="o1-notools", messages=ASK, tools=[WEATHER])
    assert caught.value.code == "unsupported_parameter"


async def test_azure_answers_tools_and_gates_old_api_versions() -> None:
    async with Emulator("azure", api_keys={KEY}) as emu:
        for version, accepted in (("2024-10-21", True), ("2023-05-15", False)):
            async with openai.AsyncAzureOpenAI(
                api_key=KEY, azure_endpoint=emu.base_url, api_version=version, max_retries=0
            ) as sdk:
                call = sdk.chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER])
                if not accepted:
                    with pytest.raises(openai.BadRequestError, match="tools"):
                        await call
                    continue
                completion = await call
                assert completion.choices[0].finish_reason == "tool_calls"
                async with sdk.chat.completions.stream(
                    model="gpt-4o", messages=ASK, tools=[WEATHER]
                ) as stream:
                    final = await stream.get_final_completion()
                assert len(final.choices[0].message.tool_calls or []) == 2


@pytest.mark.parametrize("name", ["groq", "together", "vllm"])
async def test_compatible_services_call_tools_and_perplexity_has_none(name: str) -> None:
    async with (
        Emulator(name, api_keys={KEY}) as emu,
        openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as sdk,
    ):
        async with sdk.chat.completions.stream(model="m", messages=ASK, tools=[WEATHER]) as stream:
            final = await stream.get_final_completion()
        assert [c.function.arguments for c in final.choices[0].message.tool_calls or []] == [
            '{"city":"Oslo"}',
            '{"city":"Lima"}',
        ]
    async with (
        Emulator("perplexity", api_keys={KEY}) as emu,
        openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as sdk,
    ):
        with pytest.raises(openai.BadRequestError, match="tools"):
            await sdk.chat.completions.create(model="sonar", messages=ASK, tools=[WEATHER])
