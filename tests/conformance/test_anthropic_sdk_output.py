"""Structured output and images in the emulator's Anthropic dialect, driven by the official
``anthropic`` SDK: ``messages.parse`` and ``messages.stream`` with a pydantic ``output_format``
(the SDK turns it into ``output_config.format`` with every object closed), the ``bad_output``
fault making the SDK's own validation fail, and image blocks the way the SDK's docs send them
(base64 and URL sources), an oversized one refused with the API's 400."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import cast

import anthropic
import pydantic
import pytest
from anthropic.types import MessageParam

from flyllm.emulator import Emulator
from tests.conformance.helpers import KEY

MODEL = "claude-sonnet-4-5"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


class Trip(pydantic.BaseModel):
    city: str
    days: int
    sights: list[str]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="anthropic", api_keys={KEY}) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
    ) as sdk:
        yield sdk


def user(content: str | list[dict[str, object]]) -> list[MessageParam]:
    return cast("list[MessageParam]", [{"role": "user", "content": content}])


async def test_parse_with_a_pydantic_model(client: anthropic.AsyncAnthropic, emu: Emulator) -> None:
    message = await client.messages.parse(
        model=MODEL, max_tokens=512, messages=user("Plan a trip to Oslo"), output_format=Trip
    )
    assert isinstance(message.parsed_output, Trip)
    assert message.parsed_output.sights and message.stop_reason == "end_turn"
    sent = emu.requests[-1].json
    assert isinstance(sent, dict)
    assert sent["output_config"]["format"]["schema"]["additionalProperties"] is False


async def test_stream_with_a_pydantic_model(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(
        model=MODEL, max_tokens=512, messages=user("Plan a trip to Lima"), output_format=Trip
    ) as stream:
        pieces = [event.text async for event in stream if event.type == "text"]
        final = await stream.get_final_message()
    assert len(pieces) > 1
    assert Trip.model_validate_json("".join(pieces)) == final.parsed_output


async def test_bad_output_fails_the_sdk_validation(
    client: anthropic.AsyncAnthropic, emu: Emulator
) -> None:
    emu.schedule("bad_output", count=1)
    with pytest.raises(pydantic.ValidationError):
        await client.messages.parse(
            model=MODEL, max_tokens=512, messages=user("Plan a trip"), output_format=Trip
        )
    assert emu.stats()["faults_injected"] == {"bad_output": 1}


async def test_images_by_base64_and_url(client: anthropic.AsyncAnthropic) -> None:
    content: list[dict[str, object]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.standard_b64encode(PNG).decode(),
            },
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/ant.jpg"}},
        {"type": "text", "text": "Describe these images."},
    ]
    message = await client.messages.create(model=MODEL, max_tokens=128, messages=user(content))
    block = message.content[0]
    assert block.type == "text" and block.text.startswith("[2 images: image/png, image/jpeg] ")


async def test_an_oversized_image_is_a_bad_request(client: anthropic.AsyncAnthropic) -> None:
    data = base64.standard_b64encode(PNG + b"\x00" * (4 * 2**20)).decode()
    content: list[dict[str, object]] = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        {"type": "text", "text": "What is this?"},
    ]
    with pytest.raises(anthropic.BadRequestError, match="image exceeds 5 MB maximum"):
        await client.messages.create(model=MODEL, max_tokens=128, messages=user(content))
