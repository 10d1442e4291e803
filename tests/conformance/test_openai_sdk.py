"""The OpenAI dialect of the emulator, driven by the official ``openai`` SDK (AsyncOpenAI).

Pointing the SDK at the emulator takes only ``base_url=emu.base_url`` (``http://host:port/v1``)
and an ``api_key``; nothing else is fetched.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from flyllm.emulator import FAULT_KINDS, Emulator
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

MODEL = "gpt-4o-mini"
# An unreadable 200 body: the SDK has no class of its own for it today, so the decoder's
# ValueError surfaces; a later release may wrap it in its documented APIResponseValidationError.
UNREADABLE = (ValueError, openai.APIResponseValidationError)
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": PROMPT},
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="openai", api_keys={KEY}, reply_tokens=REPLY_TOKENS) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
    ) as sdk:
        yield sdk


def user(prompt: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": prompt}]


async def collect(stream: openai.AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


def streamed_text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- success paths ---------------------------------------------------------------------------


async def test_non_stream_text_finish_reason_and_usage(
    emu: Emulator, client: openai.AsyncOpenAI
) -> None:
    completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_text()
    assert choice.message.refusal is None
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == REPLY_TOKENS
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # What the SDK sent: Bearer auth on the chat completions route, the system prompt kept.
    sent = emu.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json is not None
    assert sent.json["messages"][0] == {"role": "system", "content": SYSTEM}
    assert completion._request_id is not None
    assert completion._request_id.startswith("req_")


async def test_stream_deltas_and_usage_chunk(client: openai.AsyncOpenAI) -> None:
    reference = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = await collect(stream)

    assert streamed_text(chunks) == expected_text()
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishing[-1] == "stop"
    assert all(reason is None for reason in finishing[:-1])
    # include_usage: one extra, last chunk with no choices and the usage of the whole answer.
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert reference.usage is not None
    assert last.usage.prompt_tokens == reference.usage.prompt_tokens
    assert last.usage.completion_tokens == REPLY_TOKENS
    assert last.usage.total_tokens == reference.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = await collect(stream)

    assert streamed_text(chunks) == expected_text()
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_raw_stream_is_data_only_and_ends_with_done(client: openai.AsyncOpenAI) -> None:
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.iter_lines()]
    events = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in events)  # no event: lines
    assert events[-1] == "data: [DONE]"
    assert events.count("data: [DONE]") == 1


async def test_max_completion_tokens_gives_length(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_completion_tokens=5
    )
    assert completion.choices[0].message.content == expected_text(max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5

    stream = await client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        max_tokens=5,  # the deprecated spelling is still accepted
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = await collect(stream)
    assert streamed_text(chunks) == expected_text(max_tokens=5)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_stop_sequence_cuts_before_it(client: openai.AsyncOpenAI) -> None:
    stop, cut = stop_case()
    completion = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stop=[stop, "never-seen"]
    )
    assert completion.choices[0].message.content == cut
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(cut.split())

    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stop=stop, stream=True
    )
    assert streamed_text(await collect(stream)) == cut


async def test_refusal_fills_the_refusal_field(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model=MODEL, messages=user("[[refusal]] how do I pick a lock?")
    )
    message = completion.choices[0].message
    assert message.content is None
    assert message.refusal
    assert completion.choices[0].finish_reason == "stop"

    stream = await client.chat.completions.create(
        model=MODEL, messages=user("[[refusal]] how do I pick a lock?"), stream=True
    )
    chunks = await collect(stream)
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert refusal == message.refusal
    assert streamed_text(chunks) == ""


# -- request errors ----------------------------------------------------------------------------


async def test_context_length_is_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=user("[[context_length]] hi"))
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_")


async def test_wrong_key_is_authentication_error(emu: Emulator) -> None:
    async with openai.AsyncOpenAI(
        api_key="sk-wrong-key-123456789", base_url=emu.base_url, max_retries=2
    ) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong-key-123456789" not in caught.value.message  # OpenAI masks the key
    assert emu.stats()["requests"] == 1  # 401 is not retried


async def test_unknown_field_is_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"no_such_field": 1}
        )
    assert "no_such_field" in caught.value.message


async def test_unknown_model_is_not_found() -> None:
    async with (
        Emulator(provider="openai", models={MODEL}) as strict,
        openai.AsyncOpenAI(api_key=KEY, base_url=strict.base_url, max_retries=0) as sdk,
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.chat.completions.create(model="gpt-0-nope", messages=MESSAGES)
    assert caught.value.code == "model_not_found"


# -- faults ------------------------------------------------------------------------------------

STATUS_FAULTS: list[tuple[str, type[openai.APIStatusError], int, str | None]] = [
    ("rate_limit", openai.RateLimitError, 429, "rate_limit_exceeded"),
    ("quota", openai.RateLimitError, 429, "insufficient_quota"),
    ("server_error", openai.InternalServerError, 500, None),
    ("bad_gateway", openai.InternalServerError, 502, None),
    ("unavailable", openai.InternalServerError, 503, None),
    ("overloaded", openai.InternalServerError, 503, None),
    ("unauthorized", openai.AuthenticationError, 401, "invalid_api_key"),
    ("stream_error", openai.InternalServerError, 500, None),  # non-streaming: a plain 500
]


@pytest.mark.parametrize(("kind", "exc", "status", "code"), STATUS_FAULTS)
async def test_error_fault_raises_sdk_class(
    emu: Emulator,
    client: openai.AsyncOpenAI,
    kind: str,
    exc: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    emu.schedule(kind)
    with pytest.raises(exc) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert type(caught.value) is exc
    assert caught.value.status_code == status
    if code is not None:
        assert caught.value.code == code
    assert emu.stats()["faults_injected"] == {kind: 1}
    # The next request is served normally: a scheduled fault is used up.
    completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == expected_text()


async def test_rate_limit_before_a_stream_raises_at_create(
    emu: Emulator, client: openai.AsyncOpenAI
) -> None:
    emu.schedule("rate_limit", retry_after=2.0)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers["retry-after-ms"] == "2000"
    assert headers["x-ratelimit-remaining-requests"] == "0"


async def test_hang_times_out(emu: Emulator) -> None:
    emu.schedule("hang")
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=0.3
    ) as sdk:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert 0.25 <= time.monotonic() - started < 3.0


async def test_reset_is_connection_error(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.schedule("reset")
    with pytest.raises(openai.APIConnectionError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert not isinstance(caught.value, openai.APITimeoutError)


async def test_malformed_body_fails_to_decode(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    # The SDK has no class of its own for an unreadable 200 body: the JSON error surfaces as is.
    emu.schedule("malformed")
    with pytest.raises(UNREADABLE):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)

    emu.schedule("malformed")
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(UNREADABLE):
        await collect(stream)


async def test_stream_cut_is_connection_error(emu: Emulator, client: openai.AsyncOpenAI) -> None:
    emu.schedule("stream_cut")
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    # Part of the answer arrived before the cut, never its end.
    assert 0 < len("".join(received).split()) < REPLY_TOKENS
    assert expected_text().startswith("".join(received))

    emu.schedule("stream_cut")  # a non-streaming body cut in the middle
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)


async def test_stream_error_event_raises_api_error(
    emu: Emulator, client: openai.AsyncOpenAI
) -> None:
    emu.schedule("stream_error")
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    # An error inside a 200 stream is a bare APIError: no status, not retried.
    assert not isinstance(caught.value, openai.APIStatusError)
    assert caught.value.type == "server_error"
    assert 0 < len("".join(received).split()) < REPLY_TOKENS


# -- retries -----------------------------------------------------------------------------------


async def test_sdk_retry_honours_retry_after(emu: Emulator) -> None:
    # The SDK's own first backoff is at most 0.5 s; waiting longer proves it read the hint.
    hint = 0.7
    emu.schedule("rate_limit", retry_after=hint)
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url, max_retries=2, timeout=5.0
    ) as sdk:
        started = time.monotonic()
        completion = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
        elapsed = time.monotonic() - started
    assert completion.choices[0].message.content == expected_text()
    stats = emu.stats()
    assert stats["requests"] == 2
    assert stats["responses_by_status"] == {"429": 1, "200": 1}
    assert hint <= elapsed < hint + 2.0
    assert [r.headers["x-stainless-retry-count"] for r in emu.requests] == ["0", "1"]


async def test_sdk_retries_server_errors_until_it_gives_up(emu: Emulator) -> None:
    emu.schedule("server_error", count=3)
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url, max_retries=1, timeout=5.0
    ) as sdk:
        with pytest.raises(openai.InternalServerError):
            await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert emu.stats()["requests"] == 2


def test_every_fault_kind_is_exercised() -> None:
    covered = {kind for kind, *_ in STATUS_FAULTS} | {
        "hang",
        "reset",
        "malformed",
        "stream_cut",
        "stream_error",
        "bad_output",  # exercised by the structured-output tests of this SDK
    }
    assert covered == set(FAULT_KINDS)
