"""Structured output and images through the manager on Mistral against the emulator on
loopback: a schema, a pydantic class, "json", a non-conforming answer failing over, a stream
with a schema, images from bytes and a path, and images refused before anything is sent."""

from __future__ import annotations

import json
import pathlib

import pydantic
import pytest

from flyllm import GenerationRequest, Image, JsonSchema, LlmManager, Message
from flyllm.emulator import Emulator
from flyllm.errors import InvalidRequestError
from tests.integration.conftest import EmulatorFactory, body

INVOICE = JsonSchema(
    "invoice",
    {
        "type": "object",
        "properties": {"total": {"type": "integer"}, "lines": {"type": "array",
                       "items": {"type": "string"}, "minItems": 2}},
        "required": ["total"],
    },
)  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
ASK = "Extract the invoice fields: total 42 EUR"


class Invoice(pydantic.BaseModel):
    """An invoice's fields."""

    total: int


async def add(manager: LlmManager, emulators: EmulatorFactory, count: int = 1) -> list[Emulator]:
    emus = [await emulators("mistral") for _ in range(count)]
    for emu in emus:
        manager.add_provider("mistral", "k-emulated", "pixtral-12b", base_url=emu.base_url)
    return emus


async def test_a_schema_a_pydantic_class_and_json_mode(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await add(manager, emulators)
    response = await manager.generate(GenerationRequest(prompt=ASK, response_format=INVOICE))
    assert response.parsed["total"] == 42 and len(response.parsed["lines"]) == 2
    spec = body(emu)["response_format"]["json_schema"]
    assert spec["strict"] is True and spec["schema"]["additionalProperties"] is False
    model = await manager.generate(GenerationRequest(prompt=ASK, response_format=Invoice))
    assert isinstance(model.parsed, Invoice) and model.parsed.total == 42
    plain = await manager.generate(GenerationRequest(prompt="A fact", response_format="json"))
    assert isinstance(plain.parsed, dict) and plain.parsed
    assert body(emu)["response_format"] == {"type": "json_object"}


async def test_a_non_conforming_answer_fails_over_and_streams_parse(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad, _good = await add(manager, emulators, 2)
    bad.schedule("bad_output", count=1)
    response = await manager.generate(GenerationRequest(prompt=ASK, response_format=INVOICE))
    assert response.attempts == 2 and response.parsed["total"] == 42
    async with manager.stream(GenerationRequest(prompt=ASK, response_format=INVOICE)) as stream:
        text = "".join([chunk.text async for chunk in stream])
    assert stream.response is not None and stream.response.parsed == json.loads(text)


async def test_images_from_bytes_and_a_path(
    manager: LlmManager, emulators: EmulatorFactory, tmp_path: pathlib.Path
) -> None:
    (emu,) = await add(manager, emulators)
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    turn = Message.user(["Describe", Image.from_bytes(PNG), Image.from_path(path)])
    response = await manager.generate(GenerationRequest(messages=[turn]))
    assert response.content.startswith("[2 images: image/png, image/png] ")
    assert body(emu)["messages"][0]["content"][1]["type"] == "image_url"


@pytest.mark.parametrize(
    ("images", "says"),
    [
        ([Image(PNG + b"\x00" * (10 * 1024 * 1024), None, "image/png")], "10 MB per image"),
        ([Image.from_bytes(PNG)] * 9, "over its limit of 8"),
    ],
)
async def test_refused_images_are_never_sent(
    images: list[Image], says: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await add(manager, emulators)
    with pytest.raises(InvalidRequestError, match=says):
        await manager.generate(GenerationRequest(messages=[Message.user(["look", *images])]))
    assert emu.stats()["requests"] == 0
