"""Tool calling in the Mistral dialect of the emulator, driven by the official ``mistralai``
SDK: calls parsed streamed and not, nine-character ids, "any", and the API's 400s for ids of
another format and for calls without results."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mistralai.client import Mistral, errors, models

from flyllm.emulator import Emulator
from tests.conformance.helpers import KEY

MODEL = "mistral-small-latest"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK: list[Any] = [{"role": "user", "content": "Weather in Oslo and Lima?"}]
NINE = re.compile(r"[A-Za-z0-9]{9}")


@pytest.fixture
async def client() -> AsyncIterator[Mistral]:
    async with Emulator(provider="mistral", api_keys={KEY}) as emu:
        with Mistral(api_key=KEY, server_url=emu.base_url, timeout_ms=5000) as sdk:
            async with sdk:
                yield sdk


def arguments(call: models.ToolCall) -> Any:
    raw = call.function.arguments
    return json.loads(raw) if isinstance(raw, str) else raw


async def test_calls_then_results_then_the_answer(client: Mistral) -> None:
    response = await client.chat.complete_async(model=MODEL, messages=ASK, tools=[WEATHER])
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls if choice.message else None
    assert isinstance(calls, list)
    assert [(c.function.name, arguments(c)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert all(c.id is not None and NINE.fullmatch(c.id) for c in calls)
    turns: list[Any] = [*ASK, {"role": "assistant", "content": "", "tool_calls": calls}]
    turns += [
        {"role": "tool", "tool_call_id": c.id, "name": c.function.name, "content": "3C"}
        for c in calls
    ]
    final = await client.chat.complete_async(model=MODEL, messages=turns, tools=[WEATHER])
    message = final.choices[0].message
    assert message is not None and final.choices[0].finish_reason == "stop"
    assert message.content == "Tool results: get_weather returned 3C; get_weather returned 3C."


async def test_streamed_calls_arrive_whole(client: Mistral) -> None:
    stream = await client.chat.stream_async(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="any", parallel_tool_calls=False
    )
    async with stream:
        chunks = [event.data async for event in stream]
    calls = [c for chunk in chunks for c in chunk.choices[0].delta.tool_calls or []]
    assert [(c.index, c.function.name, arguments(c)) for c in calls] == [
        (0, "get_weather", {"city": "Oslo"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("tool_call_id", "says"),
    [
        ("call_Xq2Y8s0aB1c2", "Tool call id was call_Xq2Y8s0aB1c2 but must be a-z, A-Z, 0-9"),
        ("D681PevKs", "Not the same number of function calls and responses"),
    ],
)
async def test_foreign_ids_and_unpaired_calls_are_rejected(
    client: Mistral, tool_call_id: str, says: str
) -> None:
    call = {"id": tool_call_id, "function": {"name": "get_weather", "arguments": "{}"}}
    turns: list[Any] = [*ASK, {"role": "assistant", "content": "", "tool_calls": [call]}]
    if tool_call_id.startswith("call_"):
        turns.append({"role": "tool", "tool_call_id": tool_call_id, "content": "3C"})
    with pytest.raises(errors.SDKError, match=re.escape(says)) as caught:
        await client.chat.complete_async(model=MODEL, messages=turns, tools=[WEATHER])
    assert caught.value.status_code == 400


async def test_a_model_without_function_calling(client: Mistral) -> None:
    with pytest.raises(errors.SDKError, match="Function calling is not enabled"):
        await client.chat.complete_async(model="notools-7b", messages=ASK, tools=[WEATHER])
