"""Ollama's structured output and images in the emulator, driven by the official ``ollama``
SDK as its docs show: ``format="json"``, ``format=Model.model_json_schema()`` (streamed too),
``images`` from bytes and a path; under ``bad_output`` the answer does not validate; and
flyllm fails over from the same fault."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import ollama
import pydantic
import pytest

from flyllm import GenerationRequest, LlmManager
from flyllm.emulator import Emulator

MODEL = "llama3.2-vision"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8


class Country(pydantic.BaseModel):
    name: str
    capital: str
    languages: list[str]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("ollama") as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=emu.base_url, timeout=5.0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_json_format(emu: Emulator, client: ollama.AsyncClient) -> None:
    response = await client.chat(model=MODEL, messages=ask("Canada as JSON"), format="json")
    assert isinstance(
        pydantic.TypeAdapter(dict).validate_json(response.message.content or ""), dict
    )
    assert emu.requests[-1].json["format"] == "json"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
async def test_schema_format_from_a_pydantic_model(
    stream: bool, emu: Emulator, client: ollama.AsyncClient
) -> None:
    schema = Country.model_json_schema()
    if stream:
        parts = [
            part.message.content or ""
            async for part in await client.chat(
                model=MODEL, messages=ask("Tell me about Canada."), format=schema, stream=True
            )
        ]
        text = "".join(parts)
        assert len(parts) > 2
    else:
        response = await client.chat(
            model=MODEL, messages=ask("Tell me about Canada."), format=schema
        )
        text = response.message.content or ""
    assert isinstance(Country.model_validate_json(text), Country)
    assert emu.requests[-1].json["format"] == schema  # type: ignore[index]


async def test_images_from_bytes_and_a_path(client: ollama.AsyncClient, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(JPEG)
    message = {"role": "user", "content": "What is in these images?", "images": [PNG, path]}
    response = await client.chat(model=MODEL, messages=[message])
    assert (response.message.content or "").startswith("[2 images: image/png, image/jpeg]")


async def test_bad_output_does_not_validate(emu: Emulator, client: ollama.AsyncClient) -> None:
    emu.schedule("bad_output")
    schema = Country.model_json_schema()
    response = await client.chat(model=MODEL, messages=ask("Canada"), format=schema)
    with pytest.raises(pydantic.ValidationError):
        Country.model_validate_json(response.message.content or "")


async def test_flyllm_fails_over_from_bad_output(emu: Emulator) -> None:
    async with Emulator("ollama") as second, LlmManager() as manager:
        for base_url in (emu.base_url, second.base_url):
            manager.add_provider("ollama", "", MODEL, base_url=base_url)
        emu.schedule("bad_output")
        request = GenerationRequest(prompt="Canada", response_format=Country)
        response = await manager.generate(request)
    assert isinstance(response.parsed, Country) and response.instance_id == 1
