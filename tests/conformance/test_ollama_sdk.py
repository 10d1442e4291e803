"""The Ollama dialect of the emulator, driven by the official ``ollama`` SDK
(``ollama.AsyncClient(host=emu.base_url)``): chat, NDJSON streaming, options, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import ollama
import pytest

from flyllm.emulator import Emulator, Fault
from tests.conformance.helpers import PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

MODEL = "llama3.2"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("ollama", models={MODEL}, reply_tokens=REPLY_TOKENS) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=emu.base_url, timeout=5.0)


async def test_chat(emu: Emulator, client: ollama.AsyncClient) -> None:
    response = await client.chat(model=MODEL, messages=MESSAGES)
    assert response.message.role == "assistant"
    assert response.message.content == expected_text()
    assert response.done is True and response.done_reason == "stop"
    assert response.eval_count == REPLY_TOKENS
    assert response.prompt_eval_count is not None and response.prompt_eval_count > 0
    sent = emu.requests[-1]
    assert sent.path == "/api/chat" and sent.json is not None
    assert sent.json["stream"] is False  # the SDK always says so


async def test_stream_counts_on_the_last_part(client: ollama.AsyncClient) -> None:
    parts = [part async for part in await client.chat(model=MODEL, messages=MESSAGES, stream=True)]
    assert "".join(p.message.content or "" for p in parts) == expected_text()
    assert all(p.done is False and p.eval_count is None for p in parts[:-1])
    last = parts[-1]
    assert last.done is True and last.done_reason == "stop" and last.eval_count == REPLY_TOKENS


async def test_options_num_predict_and_stop(client: ollama.AsyncClient) -> None:
    limited = await client.chat(model=MODEL, messages=MESSAGES, options={"num_predict": 5})
    assert limited.message.content == expected_text(max_tokens=5)
    assert limited.done_reason == "length" and limited.eval_count == 5
    stop, cut = stop_case()
    stopped = await client.chat(model=MODEL, messages=MESSAGES, options={"stop": [stop]})
    assert stopped.message.content == cut


async def test_unknown_model_is_a_404_response_error(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat(model="llama9", messages=MESSAGES)
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'llama9' not found"


@pytest.mark.parametrize(("fault", "status"), [("server_error", 500), ("overloaded", 503)])
async def test_faults_are_response_errors(
    emu: Emulator, client: ollama.AsyncClient, fault: str, status: int
) -> None:
    emu.schedule(fault)
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == status


async def test_error_line_inside_a_stream(emu: Emulator, client: ollama.AsyncClient) -> None:
    emu.schedule(Fault("stream_error", after_chunks=2))
    received: list[str] = []
    with pytest.raises(ollama.ResponseError) as caught:
        async for part in await client.chat(model=MODEL, messages=MESSAGES, stream=True):
            received.append(part.message.content or "")
    assert len(received) == 2 and "unexpected EOF" in caught.value.error


# --- tools ----------------------------------------------------------------------------------

ASKED = "Weather in Oslo and Lima?"


def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
      city: The city's name
    """
    return f"{city}: 3 C"


async def test_tool_calls_then_results_the_sdk_way(
    emu: Emulator, client: ollama.AsyncClient
) -> None:
    # The SDK's own helpers: a plain function as the tool, its schema built by the SDK.
    messages: list[Any] = [{"role": "user", "content": ASKED}]
    response = await client.chat(model=MODEL, messages=messages, tools=[get_weather])
    calls = response.message.tool_calls
    assert calls is not None and response.done_reason == "stop"
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    sent = emu.requests[-1].json
    assert sent is not None and sent["tools"][0]["function"]["name"] == "get_weather"
    messages.append(response.message)
    for call in calls:
        result = get_weather(**call.function.arguments)
        messages.append({"role": "tool", "content": result, "tool_name": call.function.name})
    answer = await client.chat(model=MODEL, messages=messages, tools=[get_weather])
    assert answer.message.content == (
        "Tool results: get_weather returned Oslo: 3 C; get_weather returned Lima: 3 C."
    )
    assert not answer.message.tool_calls


async def test_tool_calls_stream_whole(client: ollama.AsyncClient) -> None:
    stream = await client.chat(model=MODEL, messages=[{"role": "user", "content": ASKED}],
                               tools=[get_weather], stream=True)  # fmt: skip
    parts = [part async for part in stream]
    with_calls = [p for p in parts if p.message.tool_calls]
    assert len(with_calls) == 1 and with_calls[0].done is False
    calls = with_calls[0].message.tool_calls or []
    assert [c.function.arguments["city"] for c in calls] == ["Oslo", "Lima"]
    assert parts[-1].done is True and parts[-1].done_reason == "stop"


async def test_a_model_without_tools_is_a_response_error() -> None:
    async with Emulator("ollama") as other:
        client = ollama.AsyncClient(host=other.base_url, timeout=5.0)
        with pytest.raises(ollama.ResponseError) as caught:
            await client.chat(model="gemma-notools", messages=[{"role": "user", "content": ASKED}],
                              tools=[get_weather])  # fmt: skip
    assert caught.value.status_code == 400
    assert caught.value.error.endswith("gemma-notools:latest does not support tools")
