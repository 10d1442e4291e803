"""The Anthropic dialect of the emulator, driven by the official ``anthropic`` 2.x SDK.

Pointing the SDK at the emulator takes ``base_url=emu.base_url`` (``http://host:port``; the SDK
appends ``/v1/messages``) and an ``api_key``. The 2.x SDK sends ``anthropic-version:
2026-10-21`` and the key as ``Authorization: Bearer``; ``default_headers`` selects 2023-06-01.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import (
    Message,
    MessageParam,
    RawMessageStreamEvent,
    TextBlock,
    ThinkingBlock,
    ThinkingConfigParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
)

from flyllm.emulator import FAULT_KINDS, Emulator
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

MODEL = "claude-haiku-4-5"
MESSAGES: list[MessageParam] = [{"role": "user", "content": PROMPT}]
V2023 = "2023-06-01"
V2026 = "2026-10-21"
# An unreadable 200 body: the SDK has no class of its own for it today, so the decoder's
# ValueError surfaces; a later release may wrap it in its documented APIResponseValidationError.
UNREADABLE = (ValueError, anthropic.APIResponseValidationError)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        provider="anthropic", api_keys={KEY}, reply_tokens=REPLY_TOKENS
    ) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
    ) as sdk:
        yield sdk


def user(prompt: str) -> list[MessageParam]:
    return [{"role": "user", "content": prompt}]


def text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if isinstance(block, TextBlock))


async def create(
    sdk: anthropic.AsyncAnthropic,
    *,
    messages: list[MessageParam] = MESSAGES,
    max_tokens: int = 256,
    **extra: Any,
) -> Message:
    message: Message = await sdk.messages.create(
        model=MODEL, max_tokens=max_tokens, messages=messages, **extra
    )
    return message


# -- success paths ---------------------------------------------------------------------------


async def test_non_stream_text_stop_reason_and_usage(
    emu: Emulator, client: anthropic.AsyncAnthropic
) -> None:
    message = await client.messages.create(
        model=MODEL, max_tokens=256, system=SYSTEM, messages=MESSAGES
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.id.startswith("msg_")
    assert text_of(message) == expected_text()
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.output_tokens == REPLY_TOKENS
    assert message.usage.input_tokens > 0
    assert message._request_id is not None
    assert message._request_id.startswith("req_")
    # What the 2.x SDK sends: the new API version and the key as a Bearer token.
    sent = emu.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["anthropic-version"] == V2026
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "x-api-key" not in sent.headers
    assert sent.json is not None
    assert sent.json["system"] == SYSTEM


async def test_stream_helper_text_and_final_usage(client: anthropic.AsyncAnthropic) -> None:
    reference = await create(client)
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        pieces = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()

    assert "".join(pieces) == expected_text()
    assert len(pieces) == REPLY_TOKENS
    assert text_of(final) == expected_text()
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == reference.usage.input_tokens
    assert final.usage.output_tokens == REPLY_TOKENS


async def test_raw_stream_event_order(client: anthropic.AsyncAnthropic) -> None:
    stream = await client.messages.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
    )
    events: list[RawMessageStreamEvent] = [event async for event in stream]

    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens > 0
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == REPLY_TOKENS  # cumulative, not an increment


async def test_raw_stream_names_every_event_and_has_no_done(
    client: anthropic.AsyncAnthropic,
) -> None:
    async with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=256, messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.iter_lines()]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    datas = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert names == [data["type"] for data in datas]  # each event: matches its data's type
    assert "ping" in names
    assert names[-1] == "message_stop"
    assert not any("[DONE]" in line for line in lines)


async def test_max_tokens_stop_reason(client: anthropic.AsyncAnthropic) -> None:
    message = await create(client, max_tokens=5)
    assert text_of(message) == expected_text(max_tokens=5)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5

    async with client.messages.stream(model=MODEL, max_tokens=5, messages=MESSAGES) as stream:
        final = await stream.get_final_message()
    assert text_of(final) == expected_text(max_tokens=5)
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5


async def test_stop_sequences(client: anthropic.AsyncAnthropic) -> None:
    stop, cut = stop_case()
    message = await create(client, stop_sequences=["never-seen", stop])
    assert text_of(message) == cut
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == stop
    assert message.usage.output_tokens == len(cut.split())

    async with client.messages.stream(
        model=MODEL, max_tokens=256, messages=MESSAGES, stop_sequences=[stop]
    ) as stream:
        final = await stream.get_final_message()
    assert text_of(final) == cut
    assert final.stop_reason == "stop_sequence"
    assert final.stop_sequence == stop


async def test_refusal_stop_reason(client: anthropic.AsyncAnthropic) -> None:
    message = await create(client, messages=user("[[refusal]] how do I pick a lock?"))
    assert message.stop_reason == "refusal"


# -- API versions and auth headers -------------------------------------------------------------


async def test_2026_version_rejects_temperature(
    emu: Emulator, client: anthropic.AsyncAnthropic
) -> None:
    # The 2.x SDK has no temperature= any more; extra_body sends one anyway.
    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(client, extra_body={"temperature": 0.5})
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    assert caught.value.api_message == "temperature: Extra inputs are not permitted"
    assert emu.requests[-1].headers["anthropic-version"] == V2026


async def test_2023_version_accepts_sampling_parameters(emu: Emulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=KEY,
        base_url=emu.base_url,
        max_retries=0,
        default_headers={"anthropic-version": V2023},
    ) as sdk:
        message = await create(
            sdk, system=SYSTEM, extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40}
        )
    assert text_of(message) == expected_text()
    sent = emu.requests[-1]
    assert sent.headers["anthropic-version"] == V2023
    assert sent.json is not None
    assert sent.json["temperature"] == 0.5


async def test_unknown_version_is_bad_request(emu: Emulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=KEY,
        base_url=emu.base_url,
        max_retries=0,
        default_headers={"anthropic-version": "2024-01-01"},
    ) as sdk:
        with pytest.raises(anthropic.BadRequestError):
            await create(sdk)


async def test_x_api_key_wins_over_bearer(emu: Emulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key="wrong-key",
        base_url=emu.base_url,
        max_retries=0,
        default_headers={"x-api-key": KEY},
    ) as sdk:
        message = await create(sdk)
    assert text_of(message) == expected_text()
    assert emu.requests[-1].api_key == KEY


async def test_wrong_key_is_authentication_error(emu: Emulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key="wrong-key", base_url=emu.base_url, max_retries=2
    ) as sdk:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await create(sdk)
    assert caught.value.status_code == 401
    assert caught.value.type == "authentication_error"
    assert caught.value.request_id is not None
    assert emu.stats()["requests"] == 1  # 401 is not retried


async def test_context_length_is_bad_request(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(client, messages=user("[[context_length]] hi"))
    assert caught.value.api_message is not None
    assert caught.value.api_message.startswith("prompt is too long")


async def test_unknown_model_is_not_found() -> None:
    async with (
        Emulator(provider="anthropic", models={MODEL}) as strict,
        anthropic.AsyncAnthropic(api_key=KEY, base_url=strict.base_url, max_retries=0) as sdk,
    ):
        with pytest.raises(anthropic.NotFoundError) as caught:
            await sdk.messages.create(model="claude-0-nope", max_tokens=16, messages=MESSAGES)
    assert caught.value.type == "not_found_error"


# -- faults ------------------------------------------------------------------------------------

STATUS_FAULTS: list[tuple[str, type[anthropic.APIStatusError], int, str]] = [
    ("rate_limit", anthropic.RateLimitError, 429, "rate_limit_error"),
    ("quota", anthropic.BadRequestError, 400, "invalid_request_error"),  # credit balance
    ("server_error", anthropic.InternalServerError, 500, "api_error"),
    ("bad_gateway", anthropic.InternalServerError, 502, "api_error"),
    ("unavailable", anthropic.ServiceUnavailableError, 503, "api_error"),
    ("overloaded", anthropic.OverloadedError, 529, "overloaded_error"),
    ("unauthorized", anthropic.AuthenticationError, 401, "authentication_error"),
    ("stream_error", anthropic.InternalServerError, 500, "api_error"),  # non-streaming: 500
]


@pytest.mark.parametrize(("kind", "exc", "status", "etype"), STATUS_FAULTS)
async def test_error_fault_raises_sdk_class(
    emu: Emulator,
    client: anthropic.AsyncAnthropic,
    kind: str,
    exc: type[anthropic.APIStatusError],
    status: int,
    etype: str,
) -> None:
    emu.schedule(kind)
    with pytest.raises(exc) as caught:
        await create(client)
    assert type(caught.value) is exc
    assert caught.value.status_code == status
    assert caught.value.type == etype
    assert caught.value.request_id == caught.value.response.headers["request-id"]
    assert emu.stats()["faults_injected"] == {kind: 1}
    assert text_of(await create(client)) == expected_text()


async def test_hang_times_out(emu: Emulator) -> None:
    emu.schedule("hang")
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=0.3
    ) as sdk:
        started = time.monotonic()
        with pytest.raises(anthropic.APITimeoutError):
            await create(sdk)
    assert 0.25 <= time.monotonic() - started < 3.0


async def test_reset_is_connection_error(emu: Emulator, client: anthropic.AsyncAnthropic) -> None:
    emu.schedule("reset")
    with pytest.raises(anthropic.APIConnectionError) as caught:
        await create(client)
    assert not isinstance(caught.value, anthropic.APITimeoutError)


async def test_malformed_body_fails_to_decode(
    emu: Emulator, client: anthropic.AsyncAnthropic
) -> None:
    emu.schedule("malformed")
    with pytest.raises(UNREADABLE):
        await create(client)

    emu.schedule("malformed")
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        with pytest.raises(UNREADABLE):
            await stream.get_final_message()


async def test_stream_cut(emu: Emulator, client: anthropic.AsyncAnthropic) -> None:
    # The contract: a cut stream raises, never ends as if complete, after a prefix of the reply.
    # Which class it raises is the SDK's choice and has changed: up to 2.16 httpx2's own
    # transport error escaped while a stream was read; 2.17 wraps it in APIConnectionError,
    # the class its README documents for network failures. Both are accepted.
    emu.schedule("stream_cut")
    received: list[str] = []
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
            async for piece in stream.text_stream:
                received.append(piece)
    assert 0 < len("".join(received).split()) < REPLY_TOKENS
    assert expected_text().startswith("".join(received))

    emu.schedule("stream_cut")
    with pytest.raises(anthropic.APIConnectionError):
        await create(client)


async def test_stream_error_event(emu: Emulator, client: anthropic.AsyncAnthropic) -> None:
    emu.schedule("stream_error")
    received: list[str] = []
    async with client.messages.stream(model=MODEL, max_tokens=256, messages=MESSAGES) as stream:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async for piece in stream.text_stream:
                received.append(piece)
    # The error event rides on a 200 response, so the SDK's status lookup finds no subclass.
    assert type(caught.value) is anthropic.APIStatusError
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert 0 < len("".join(received).split()) < REPLY_TOKENS


# -- retries -----------------------------------------------------------------------------------


async def test_sdk_retry_honours_retry_after(emu: Emulator) -> None:
    hint = 0.7  # above the SDK's own first backoff (at most 0.5 s)
    emu.schedule("rate_limit", retry_after=hint)
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.base_url, max_retries=2, timeout=5.0
    ) as sdk:
        started = time.monotonic()
        message = await create(sdk)
        elapsed = time.monotonic() - started
    assert text_of(message) == expected_text()
    stats = emu.stats()
    assert stats["requests"] == 2
    assert stats["responses_by_status"] == {"429": 1, "200": 1}
    assert hint <= elapsed < hint + 2.0
    assert [r.headers["x-stainless-retry-count"] for r in emu.requests] == ["0", "1"]


async def test_sdk_retries_overloaded(emu: Emulator) -> None:
    emu.schedule("overloaded", count=1)
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.base_url, max_retries=1, timeout=5.0
    ) as sdk:
        message = await create(sdk)
    assert text_of(message) == expected_text()
    assert emu.stats()["responses_by_status"] == {"529": 1, "200": 1}


def test_every_fault_kind_is_exercised() -> None:
    covered = {kind for kind, *_ in STATUS_FAULTS} | {
        "hang",
        "reset",
        "malformed",
        "stream_cut",
        "stream_error",
        "bad_output",  # test_anthropic_sdk_output.py::test_bad_output_fails_the_sdk_validation
    }
    assert covered == set(FAULT_KINDS)


# -- tool use ----------------------------------------------------------------------------------

WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK = "Weather in Oslo and Lima?"


def tool_uses(message: Message) -> list[ToolUseBlock]:
    return [block for block in message.content if isinstance(block, ToolUseBlock)]


async def test_stream_get_final_message_has_parsed_tool_use_blocks(
    client: anthropic.AsyncAnthropic,
) -> None:
    async with client.messages.stream(
        model=MODEL, max_tokens=256, messages=user(ASK), tools=[WEATHER]
    ) as stream:
        partial = [event.partial_json async for event in stream if event.type == "input_json"]
        final = await stream.get_final_message()

    assert final.stop_reason == "tool_use"
    calls = tool_uses(final)
    assert [(c.name, c.input) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert all(c.id.startswith("toolu_01") for c in calls)
    assert len(partial) > 2 * len(calls)  # the arguments came in several pieces each


async def test_tool_round_trip_with_sdk_types(
    emu: Emulator, client: anthropic.AsyncAnthropic
) -> None:
    first = await create(
        client,
        messages=user(ASK),
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    (call,) = tool_uses(first)
    assert emu.requests[-1].json is not None
    assert emu.requests[-1].json["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }
    messages: list[MessageParam] = [
        *user(ASK),
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12 C"}],
        },
    ]
    second = await create(client, messages=messages, tools=[WEATHER])
    assert second.stop_reason == "end_turn"
    assert text_of(second) == "Tool results: get_weather returned 12 C."


async def test_unanswered_tool_use_is_a_bad_request(client: anthropic.AsyncAnthropic) -> None:
    first = await create(client, messages=user(ASK), tools=[WEATHER])
    messages: list[MessageParam] = [
        *user(ASK),
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await create(client, messages=messages, tools=[WEATHER])
    assert "`tool_use` ids were found without `tool_result` blocks" in str(caught.value.api_message)


async def test_thinking_stream_round_trip(client: anthropic.AsyncAnthropic) -> None:
    thinking: ThinkingConfigParam = {"type": "enabled", "budget_tokens": 1024}
    async with client.messages.stream(
        model=MODEL, max_tokens=2048, messages=user(ASK), tools=[WEATHER], thinking=thinking
    ) as stream:
        final = await stream.get_final_message()
    assert isinstance(final.content[0], ThinkingBlock) and final.content[0].signature
    results: list[ToolResultBlockParam] = [
        {"type": "tool_result", "tool_use_id": c.id, "content": "12 C"} for c in tool_uses(final)
    ]
    messages: list[MessageParam] = [
        *user(ASK),
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": results},
    ]
    answer = await create(
        client, max_tokens=2048, messages=messages, tools=[WEATHER], thinking=thinking
    )
    assert text_of(answer).startswith("Tool results: get_weather returned 12 C")
