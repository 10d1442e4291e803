"""The Mistral dialect of the emulator, driven by the official ``mistralai`` 3.x SDK.

Pointing the SDK at the emulator takes ``Mistral(api_key=..., server_url=emu.base_url)``
(``http://host:port``; the SDK appends ``/v1/chat/completions``). The 3.x package lives under
``mistralai.client``; its errors are ``errors.SDKError`` for any 4xx/5xx except 422
(``errors.HTTPValidationError``), ``errors.ResponseValidationError`` for a body it cannot
read, and httpx2's own exceptions for timeouts and dropped connections. It retries only
when given a ``RetryConfig``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral, errors, models
from mistralai.client.utils import BackoffStrategy, RetryConfig

from flyllm.emulator import FAULT_KINDS, Emulator
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

MODEL = "mistral-small-latest"
# A connection cut mid-answer: httpx2's transport errors surface (its documented base class, not
# the subclass of the day), or the SDK's own NoResponseError should a release wrap them.
NETWORK = (httpx2.TransportError, errors.NoResponseError)
MESSAGES: list[models.ChatCompletionRequestMessageTypedDict] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": PROMPT},
]
STREAM_MESSAGES: list[models.ChatCompletionStreamRequestMessageTypedDict] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": PROMPT},
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="mistral", api_keys={KEY}, reply_tokens=REPLY_TOKENS) as emulator:
        yield emulator


@contextlib.asynccontextmanager
async def mistral(emu: Emulator, key: str = KEY, **options: Any) -> AsyncIterator[Mistral]:
    """A client on the emulator; both its sync and async HTTP clients are closed on exit."""
    options.setdefault("timeout_ms", 5000)
    with Mistral(api_key=key, server_url=emu.base_url, **options) as sdk:
        async with sdk:
            yield sdk


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[Mistral]:
    async with mistral(emu) as sdk:
        yield sdk


def text(content: object) -> str:
    assert isinstance(content, str)
    return content


async def complete(sdk: Mistral, **kwargs: Any) -> models.ChatCompletionResponse:
    kwargs.setdefault("messages", MESSAGES)
    return await sdk.chat.complete_async(model=MODEL, **kwargs)


async def stream_all(sdk: Mistral, **kwargs: Any) -> list[models.CompletionChunk]:
    kwargs.setdefault("messages", STREAM_MESSAGES)
    stream = await sdk.chat.stream_async(model=MODEL, **kwargs)
    async with stream:
        return [event.data async for event in stream]


def reply_text(response: models.ChatCompletionResponse) -> str:
    message = response.choices[0].message
    assert message is not None
    return text(message.content)


def streamed_text(chunks: list[models.CompletionChunk]) -> str:
    return "".join(text(c.choices[0].delta.content) for c in chunks if c.choices[0].delta.content)


# -- success paths ---------------------------------------------------------------------------


async def test_non_stream_text_finish_reason_and_usage(emu: Emulator, client: Mistral) -> None:
    response = await complete(client)

    assert response.object == "chat.completion"
    assert response.model == MODEL
    choice = response.choices[0]
    assert reply_text(response) == expected_text()
    assert choice.finish_reason == "stop"
    usage = response.usage
    assert usage.completion_tokens == REPLY_TOKENS
    assert usage.prompt_tokens is not None
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + REPLY_TOKENS
    sent = emu.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json is not None
    assert sent.json["messages"][0] == {"role": "system", "content": SYSTEM}


async def test_stream_usage_rides_on_the_finish_chunk(client: Mistral) -> None:
    reference = await complete(client)
    chunks = await stream_all(client)

    assert streamed_text(chunks) == expected_text()
    assert chunks[0].choices[0].delta.role == "assistant"
    reasons = [c.choices[0].finish_reason for c in chunks]
    assert reasons[-1] == "stop"
    assert all(reason is None for reason in reasons[:-1])
    # Unlike OpenAI: always sent, on the chunk that carries finish_reason (choices not empty).
    last = chunks[-1]
    assert last.usage is not None
    assert last.usage.completion_tokens == REPLY_TOKENS
    assert last.usage.prompt_tokens == reference.usage.prompt_tokens
    assert last.usage.total_tokens == reference.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])


async def test_raw_stream_is_data_only_and_ends_with_done(client: Mistral) -> None:
    stream = await client.chat.stream_async(model=MODEL, messages=STREAM_MESSAGES)
    async with stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in stream.response.aiter_lines()]
    events = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    finish = json.loads(events[-2].removeprefix("data: "))
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"]["completion_tokens"] == REPLY_TOKENS


async def test_max_tokens_gives_length(client: Mistral) -> None:
    response = await complete(client, max_tokens=5)
    assert reply_text(response) == expected_text(max_tokens=5)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 5

    chunks = await stream_all(client, max_tokens=5)
    assert streamed_text(chunks) == expected_text(max_tokens=5)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_stop_sequence(client: Mistral) -> None:
    stop, cut = stop_case()
    response = await complete(client, stop=[stop])
    assert reply_text(response) == cut
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == len(cut.split())

    chunks = await stream_all(client, stop=stop)
    assert streamed_text(chunks) == cut


async def test_random_seed_is_accepted(emu: Emulator, client: Mistral) -> None:
    response = await complete(client, random_seed=42, temperature=0.3)
    assert reply_text(response) == expected_text()
    assert emu.requests[-1].json is not None
    assert emu.requests[-1].json["random_seed"] == 42


# -- request errors ----------------------------------------------------------------------------


class _AddFields(httpx2.AsyncHTTPTransport):
    """Adds fields to each JSON request body: the SDK itself cannot send unknown fields."""

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.fields = fields

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        body.update(self.fields)
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
        rebuilt = httpx2.Request(
            request.method,
            request.url,
            headers=headers,
            content=json.dumps(body).encode(),
            extensions=request.extensions,
        )
        return await super().handle_async_request(rebuilt)


async def test_openai_only_fields_are_422(emu: Emulator) -> None:
    transport = _AddFields(max_completion_tokens=64, store=True, user="u-1")
    async with (
        httpx2.AsyncClient(transport=transport) as http,
        mistral(emu, async_client=http) as sdk,
    ):
        with pytest.raises(errors.HTTPValidationError) as caught:
            await complete(sdk)
    assert caught.value.status_code == 422
    # Mistral wraps the validation details in the error's `message` object.
    detail = json.loads(caught.value.body)["message"]["detail"]
    assert {tuple(d["loc"]) for d in detail} == {
        ("body", "max_completion_tokens"),
        ("body", "store"),
        ("body", "user"),
    }
    assert {d["type"] for d in detail} == {"extra_forbidden"}


async def test_wrong_key_is_401(emu: Emulator) -> None:
    async with mistral(emu, key="wrong-key") as sdk:
        with pytest.raises(errors.SDKError) as caught:
            await complete(sdk)
    assert caught.value.status_code == 401
    assert json.loads(caught.value.body)["message"] == "Unauthorized"


async def test_context_length_is_400(client: Mistral) -> None:
    with pytest.raises(errors.SDKError) as caught:
        await complete(client, messages=[{"role": "user", "content": "[[context_length]] hi"}])
    assert caught.value.status_code == 400
    assert "too large for model" in json.loads(caught.value.body)["message"]


async def test_unknown_model_is_400() -> None:
    async with Emulator(provider="mistral", models={MODEL}) as strict, mistral(strict) as sdk:
        with pytest.raises(errors.SDKError) as caught:
            await sdk.chat.complete_async(model="no-such-model", messages=MESSAGES)
    assert caught.value.status_code == 400
    assert json.loads(caught.value.body)["type"] == "invalid_model"


# -- faults ------------------------------------------------------------------------------------

STATUS_FAULTS: list[tuple[str, int]] = [
    ("rate_limit", 429),
    ("quota", 429),
    ("server_error", 500),
    ("bad_gateway", 502),
    ("unavailable", 503),
    ("overloaded", 503),
    ("unauthorized", 401),
    ("stream_error", 500),  # non-streaming: a plain 500
]


@pytest.mark.parametrize(("kind", "status"), STATUS_FAULTS)
async def test_error_fault_raises_sdk_error(
    emu: Emulator, client: Mistral, kind: str, status: int
) -> None:
    emu.schedule(kind)
    with pytest.raises(errors.SDKError) as caught:
        await complete(client)
    assert type(caught.value) is errors.SDKError
    assert caught.value.status_code == status
    assert f"Status {status}" in caught.value.message
    assert emu.stats()["faults_injected"] == {kind: 1}
    assert reply_text(await complete(client)) == expected_text()


async def test_error_fault_before_a_stream(emu: Emulator, client: Mistral) -> None:
    emu.schedule("rate_limit", retry_after=3.0)
    with pytest.raises(errors.SDKError) as caught:
        await stream_all(client)
    assert caught.value.status_code == 429
    assert caught.value.headers["retry-after"] == "3"


async def test_hang_times_out(emu: Emulator) -> None:
    emu.schedule("hang")
    async with mistral(emu, timeout_ms=300) as sdk:
        started = time.monotonic()
        with pytest.raises(httpx2.TimeoutException):
            await complete(sdk)
    assert 0.25 <= time.monotonic() - started < 3.0


async def test_reset_is_transport_error(emu: Emulator, client: Mistral) -> None:
    emu.schedule("reset")
    with pytest.raises(httpx2.TransportError) as caught:
        await complete(client)
    assert not isinstance(caught.value, httpx2.TimeoutException)


async def test_malformed_is_response_validation_error(emu: Emulator, client: Mistral) -> None:
    emu.schedule("malformed")
    with pytest.raises(errors.ResponseValidationError):
        await complete(client)

    emu.schedule("malformed")
    with pytest.raises(errors.ResponseValidationError):
        await stream_all(client)


async def test_stream_cut(emu: Emulator, client: Mistral) -> None:
    emu.schedule("stream_cut")
    stream = await client.chat.stream_async(model=MODEL, messages=STREAM_MESSAGES)
    received: list[str] = []
    with pytest.raises(NETWORK):
        async for event in stream:
            received.append(text(event.data.choices[0].delta.content))
    assert 0 < len("".join(received).split()) < REPLY_TOKENS
    assert expected_text().startswith("".join(received))

    emu.schedule("stream_cut")
    with pytest.raises(NETWORK):
        await complete(client)


async def test_stream_error_event(emu: Emulator, client: Mistral) -> None:
    # An error object inside a 200 stream is not a chunk; the SDK fails to read it as one.
    emu.schedule("stream_error")
    stream = await client.chat.stream_async(model=MODEL, messages=STREAM_MESSAGES)
    received: list[str] = []
    with pytest.raises(errors.ResponseValidationError) as caught:
        async for event in stream:
            received.append(text(event.data.choices[0].delta.content))
    assert json.loads(caught.value.body)["data"]["object"] == "error"
    assert 0 < len("".join(received).split()) < REPLY_TOKENS


# -- retries -----------------------------------------------------------------------------------


def retry_config() -> RetryConfig:
    # Backoff of 1 ms without jitter: any longer wait comes from the server's Retry-After.
    backoff = BackoffStrategy(
        initial_interval=1, max_interval=50, exponent=1.1, max_elapsed_time=5000, jitter_ms=0
    )
    return RetryConfig("backoff", backoff, retry_connection_errors=False)


async def test_retry_config_honours_retry_after(emu: Emulator) -> None:
    # Mistral's gateway sends whole-second Retry-After only (no retry-after-ms): 0.4 s -> "1".
    emu.schedule("rate_limit", retry_after=0.4)
    async with mistral(emu, retry_config=retry_config()) as sdk:
        started = time.monotonic()
        response = await complete(sdk)
        elapsed = time.monotonic() - started
    assert reply_text(response) == expected_text()
    assert emu.stats()["responses_by_status"] == {"429": 1, "200": 1}
    assert 1.0 <= elapsed < 3.0


async def test_retry_config_retries_5xx_and_streams(emu: Emulator) -> None:
    emu.schedule("bad_gateway")
    emu.schedule("unavailable")
    async with mistral(emu, retry_config=retry_config()) as sdk:
        chunks = await stream_all(sdk)
    assert streamed_text(chunks) == expected_text()
    assert emu.stats()["responses_by_status"] == {"502": 1, "503": 1, "200": 1}


async def test_no_retry_without_retry_config(emu: Emulator, client: Mistral) -> None:
    emu.schedule("rate_limit", retry_after=0.0)
    with pytest.raises(errors.SDKError):
        await complete(client)
    assert emu.stats()["requests"] == 1


def test_every_fault_kind_is_exercised() -> None:
    covered = {kind for kind, _ in STATUS_FAULTS} | {
        "hang",
        "reset",
        "malformed",
        "stream_cut",
        "stream_error",
        "bad_output",  # exercised by the structured-output tests of this SDK
    }
    assert covered == set(FAULT_KINDS)
