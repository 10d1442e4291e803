"""The Cohere dialect of the emulator, driven by the official ``cohere`` SDK
(``cohere.AsyncClientV2(base_url=emu.base_url)``): chat, chat_stream events, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import cohere
import pytest

from flyllm.emulator import Emulator, Fault
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

# The SDK reads pydantic's deprecated ``__fields__`` when it parses unions; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated")

MODEL = "command-a-03-2025"
MESSAGES: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        "cohere", api_keys={KEY}, models={MODEL}, reply_tokens=REPLY_TOKENS
    ) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> cohere.AsyncClientV2:
    return cohere.AsyncClientV2(api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0)


def user(text: str) -> Any:
    """A one-turn conversation (typed loosely: the SDK's message union is strict)."""
    return [{"role": "user", "content": text}]


def text_of(response: Any) -> str:
    return "".join(block.text for block in response.message.content if block.type == "text")


async def test_chat(emu: Emulator, client: cohere.AsyncClientV2) -> None:
    response = await client.chat(model=MODEL, messages=MESSAGES)
    assert text_of(response) == expected_text()
    assert response.finish_reason == "COMPLETE"
    assert response.usage is not None and response.usage.billed_units is not None
    assert response.usage.billed_units.output_tokens == REPLY_TOKENS
    assert response.usage.tokens is not None and response.usage.tokens.input_tokens is not None
    assert response.usage.tokens.input_tokens > (response.usage.billed_units.input_tokens or 0)
    sent = emu.requests[-1]
    assert sent.path == "/v2/chat" and sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json is not None and sent.json["stream"] is False


async def test_chat_stream_events(client: cohere.AsyncClientV2) -> None:
    events = [event async for event in client.chat_stream(model=MODEL, messages=MESSAGES)]
    types = [event.type for event in events]
    assert types[0] == "message-start" and types[-1] == "message-end"
    text = "".join(
        e.delta.message.content.text or ""
        for e in events
        if e.type == "content-delta" and e.delta and e.delta.message and e.delta.message.content
    )
    assert text == expected_text()
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert end.delta.finish_reason == "COMPLETE"
    assert end.delta.usage is not None and end.delta.usage.billed_units is not None
    assert end.delta.usage.billed_units.output_tokens == REPLY_TOKENS


async def test_max_tokens_and_stop_sequences(client: cohere.AsyncClientV2) -> None:
    limited = await client.chat(model=MODEL, messages=MESSAGES, max_tokens=5)
    assert text_of(limited) == expected_text(max_tokens=5)
    assert limited.finish_reason == "MAX_TOKENS"
    stop, cut = stop_case()
    stopped = await client.chat(model=MODEL, messages=MESSAGES, stop_sequences=[stop], p=0.9, k=10)
    assert text_of(stopped) == cut and stopped.finish_reason == "STOP_SEQUENCE"


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ("rate_limit", cohere.TooManyRequestsError),
        ("server_error", cohere.InternalServerError),
        ("unavailable", cohere.ServiceUnavailableError),
        ("unauthorized", cohere.UnauthorizedError),
    ],
)
async def test_faults_become_sdk_errors(
    emu: Emulator, client: cohere.AsyncClientV2, fault: str, cls: type[Exception]
) -> None:
    emu.schedule(Fault(fault))
    with pytest.raises(cls):
        await client.chat(model=MODEL, messages=MESSAGES)


async def test_request_errors(client: cohere.AsyncClientV2) -> None:
    with pytest.raises(cohere.BadRequestError) as too_long:
        await client.chat(model=MODEL, messages=user("[[context_length]] a long prompt"))
    assert too_long.value.body["message"].startswith("too many tokens")
    with pytest.raises(cohere.NotFoundError):
        await client.chat(model="command-x", messages=MESSAGES)
    with pytest.raises(cohere.BadRequestError):
        await client.chat(model=MODEL, messages=MESSAGES, temperature=3.0)


async def test_error_finish_inside_a_stream(emu: Emulator, client: cohere.AsyncClientV2) -> None:
    emu.schedule(Fault("stream_error", after_chunks=2))
    events = [event async for event in client.chat_stream(model=MODEL, messages=MESSAGES)]
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert end.delta.finish_reason == "ERROR" and end.delta.error == "internal server error"


# --- tools ----------------------------------------------------------------------------------

ASKED = "Weather in Oslo and Lima?"
WEATHER = cohere.ToolV2(
    type="function",
    function=cohere.ToolV2Function(
        name="get_weather",
        description="Current weather for a city",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    ),
)


async def test_tool_calls_then_results_the_sdk_way(
    emu: Emulator, client: cohere.AsyncClientV2
) -> None:
    messages: Any = user(ASKED)
    response = await client.chat(model=MODEL, messages=messages, tools=[WEATHER])
    assert response.finish_reason == "TOOL_CALL"
    message = response.message
    assert message.tool_plan and message.tool_calls is not None
    calls = message.tool_calls
    assert [c.function.name for c in calls if c.function] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments or "") for c in calls if c.function] == [
        {"city": "Oslo"},
        {"city": "Lima"},
    ]
    # Cohere's documented loop: append the assistant turn (plan and calls), then one tool
    # message per call with its id.
    messages.append(cohere.AssistantChatMessageV2(tool_plan=message.tool_plan, tool_calls=calls))
    for call in calls:
        result: Any = [cohere.TextToolContent(text=json.dumps({"temp": 3, "id": call.id}))]
        messages.append(cohere.ToolChatMessageV2(tool_call_id=call.id, content=result))
    answer = await client.chat(model=MODEL, messages=messages, tools=[WEATHER])
    assert answer.finish_reason == "COMPLETE"
    assert text_of(answer).startswith("Tool results: get_weather returned")
    assert all(call.id in text_of(answer) for call in calls)
    sent = emu.requests[-1].json
    assert sent is not None and sent["messages"][1]["tool_calls"][0]["id"] == calls[0].id


async def test_tool_call_stream_the_sdk_reads(client: cohere.AsyncClientV2) -> None:
    stream = client.chat_stream(
        model=MODEL, messages=user(ASKED), tools=[WEATHER], tool_choice="REQUIRED"
    )
    events = [event async for event in stream]
    plan = "".join(
        e.delta.message.tool_plan or ""
        for e in events
        if e.type == "tool-plan-delta" and e.delta and e.delta.message
    )
    assert "get_weather" in plan
    calls: dict[int, list[str]] = {}
    for e in events:
        if e.type == "tool-call-start" and e.delta and e.delta.message:
            call = e.delta.message.tool_calls
            assert call is not None and call.function is not None  # one object per event
            assert call.id and call.function.name == "get_weather"
            calls[e.index or 0] = []
        elif e.type == "tool-call-delta" and e.delta and e.delta.message:
            piece = e.delta.message.tool_calls
            assert piece is not None and piece.function is not None
            calls[e.index or 0].append(piece.function.arguments or "")
    assert [json.loads("".join(p)) for _, p in sorted(calls.items())] == [
        {"city": "Oslo"},
        {"city": "Lima"},
    ]
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert end.delta.finish_reason == "TOOL_CALL"


async def test_a_model_without_tools_is_a_bad_request() -> None:
    async with Emulator("cohere", api_keys={KEY}) as other:
        client = cohere.AsyncClientV2(api_key=KEY, base_url=other.base_url, max_retries=0)
        with pytest.raises(cohere.BadRequestError) as caught:
            await client.chat(model="c4ai-notools", messages=user(ASKED), tools=[WEATHER])
    assert "tool use is not supported" in str(caught.value.body)
