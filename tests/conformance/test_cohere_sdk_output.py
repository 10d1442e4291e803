"""Cohere's structured output and images in the emulator, driven by the official ``cohere``
SDK as its docs show: ``response_format`` json_object (with ``json_schema`` from a pydantic
model), streamed JSON, an image as a data URL and by http URL; under ``bad_output`` the answer
does not validate; and flyllm fails over from the same fault."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import cohere
import pydantic
import pytest

from flyllm import GenerationRequest, LlmManager
from flyllm.emulator import Emulator
from tests.conformance.helpers import KEY

pytestmark = pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated")

MODEL = "command-a-vision-07-2025"
JSON_MODE: Any = {"type": "json_object"}  # as the docs write it (a dict, not the SDK's type)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


class Book(pydantic.BaseModel):
    title: str
    author: str
    publication_year: int


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("cohere", api_keys={KEY}) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> cohere.AsyncClientV2:
    return cohere.AsyncClientV2(api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0)


def user(content: Any) -> Any:
    return [{"role": "user", "content": content}]


def text_of(response: Any) -> str:
    return "".join(block.text for block in response.message.content if block.type == "text")


async def test_json_mode(emu: Emulator, client: cohere.AsyncClientV2) -> None:
    response = await client.chat(
        model=MODEL, messages=user("Generate a JSON describing a person"),
        response_format=JSON_MODE,
    )  # fmt: skip
    assert isinstance(json.loads(text_of(response)), dict)
    assert emu.requests[-1].json["response_format"] == {"type": "json_object"}  # type: ignore[index]


async def test_json_schema_from_a_pydantic_model(
    emu: Emulator, client: cohere.AsyncClientV2
) -> None:
    fmt = cohere.JsonObjectResponseFormatV2(json_schema=Book.model_json_schema())
    response = await client.chat(model=MODEL, messages=user("A JSON book"), response_format=fmt)
    assert isinstance(Book.model_validate_json(text_of(response)), Book)
    sent = emu.requests[-1].json
    assert sent is not None and sent["response_format"]["json_schema"]["title"] == "Book"


async def test_streamed_json(client: cohere.AsyncClientV2) -> None:
    fmt = cohere.JsonObjectResponseFormatV2(json_schema=Book.model_json_schema())
    stream = client.chat_stream(model=MODEL, messages=user("A JSON book"), response_format=fmt)
    pieces = [
        event.delta.message.content.text
        async for event in stream
        if event.type == "content-delta" and event.delta and event.delta.message
        and event.delta.message.content and event.delta.message.content.text
    ]  # fmt: skip
    assert len(pieces) > 1 and Book.model_validate_json("".join(pieces))


async def test_images_by_data_url_and_http_url(client: cohere.AsyncClientV2) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://cohere.com/favicon-32x32.png"}},
    ]
    response = await client.chat(model=MODEL, messages=user(content))
    assert text_of(response).startswith("[2 images: image/png, image/png]")


async def test_bad_output_does_not_validate(emu: Emulator, client: cohere.AsyncClientV2) -> None:
    emu.schedule("bad_output")
    fmt = cohere.JsonObjectResponseFormatV2(json_schema=Book.model_json_schema())
    response = await client.chat(model=MODEL, messages=user("A JSON book"), response_format=fmt)
    with pytest.raises(pydantic.ValidationError):
        Book.model_validate_json(text_of(response))


async def test_flyllm_fails_over_from_bad_output(emu: Emulator) -> None:
    async with Emulator("cohere", api_keys={KEY}) as second, LlmManager() as manager:
        for base_url in (emu.base_url, second.base_url):
            manager.add_provider("cohere", KEY, MODEL, base_url=base_url)
        emu.schedule("bad_output")
        response = await manager.generate(GenerationRequest(prompt="A book", response_format=Book))
    assert isinstance(response.parsed, Book) and response.instance_id == 1
