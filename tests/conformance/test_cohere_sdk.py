"""The Cohere dialect of the emulator, driven by the official ``cohere`` SDK
(``cohere.AsyncClientV2(base_url=emu.base_url)``): chat, chat_stream events, errors."""

from __future__ import annotations

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
