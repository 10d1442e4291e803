"""Structured output and images through the manager on the OpenAI family (OpenAI, Azure,
compatible services) against the emulator on loopback: a schema, a pydantic class, "json", a
non-conforming answer failing over, a stream with a schema, images from bytes and a path, and
images refused before anything is sent."""

from __future__ import annotations

import json
import pathlib

import pydantic
import pytest

from flyllm import GenerationRequest, Image, JsonSchema, LlmManager, Message
from flyllm.errors import InvalidRequestError
from tests.integration.conftest import EmulatorFactory, body

INVOICE = JsonSchema(
    "invoice",
    {
        "type": "object",
        "properties": {
            "total": {"type": "number", "minimum": 0},
            "currency": {"type": "string", "enum": ["EUR", "USD"]},
            "note": {"type": "string"},
        },
        "required": ["total", "currency"],
    },
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
ASK = "Extract the invoice fields: total 42 EUR"


class Invoice(pydantic.BaseModel):
    """An invoice's fields."""

    total: float
    currency: str


@pytest.mark.parametrize("provider", ["openai", "azure", "groq", "vllm"])
async def test_a_schema_is_enforced_and_parsed(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider)
    manager.add_provider(provider, "k-emulated", "gpt-4o", base_url=emu.base_url)
    response = await manager.generate(GenerationRequest(prompt=ASK, response_format=INVOICE))
    parsed = response.parsed
    assert parsed["total"] == 42.0 and parsed["currency"] == "EUR"
    assert isinstance(parsed["note"], str)
    sent = body(emu)["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"]["required"] == ["total", "currency", "note"]


async def test_a_pydantic_class_and_json_mode(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k-emulated", "gpt-4o", base_url=emu.base_url)
    response = await manager.generate(GenerationRequest(prompt=ASK, response_format=Invoice))
    assert isinstance(response.parsed, Invoice) and response.parsed.currency
    # The prompt never says "JSON": the emulator, like OpenAI, refuses json_object then,
    # unless flyllm adds its instruction.
    answer = await manager.generate(
        GenerationRequest(prompt="Tell me a fact", response_format="json")
    )
    assert isinstance(answer.parsed, dict) and answer.parsed
    assert body(emu)["response_format"] == {"type": "json_object"}


async def test_a_non_conforming_answer_fails_over(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad, good = await emulators("openai"), await emulators("openai")
    for emu in (bad, good):
        manager.add_provider("openai", "k-emulated", "gpt-4o", base_url=emu.base_url)
    bad.schedule("bad_output", count=1)
    response = await manager.generate(GenerationRequest(prompt=ASK, response_format=INVOICE))
    assert response.attempts == 2 and response.parsed["currency"] == "EUR"
    assert bad.stats()["faults_injected"] == {"bad_output": 1}


async def test_a_stream_with_a_schema_is_parsed_at_the_end(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k-emulated", "gpt-4o", base_url=emu.base_url)
    async with manager.stream(GenerationRequest(prompt=ASK, response_format=INVOICE)) as stream:
        text = "".join([chunk.text async for chunk in stream])
    assert stream.response is not None and stream.response.parsed == json.loads(text)
    assert body(emu)["stream"] is True


async def test_images_from_bytes_and_a_path(
    manager: LlmManager, emulators: EmulatorFactory, tmp_path: pathlib.Path
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k-emulated", "gpt-4o", base_url=emu.base_url)
    path = tmp_path / "cat.gif"  # the name lies: the bytes are a PNG
    path.write_bytes(PNG)
    turn = Message.user(["Compare", Image.from_bytes(PNG), Image.from_path(path, detail="high")])
    response = await manager.generate(GenerationRequest(messages=[turn]))
    assert response.content.startswith("[2 images: image/png, image/png] ")
    parts = body(emu)["messages"][0]["content"]
    assert parts[2]["image_url"]["detail"] == "high"


@pytest.mark.parametrize(
    ("image", "says"),
    [
        (Image(PNG + b"\x00" * (20 * 1024 * 1024), None, "image/png"), "20 MB per image"),
        (Image(b"BM" + b"\x00" * 30, None, "image/bmp"), "image/bmp are not accepted"),
    ],
)
async def test_a_refused_image_is_never_sent(
    image: Image, says: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k-emulated", "gpt-4o", base_url=emu.base_url)
    with pytest.raises(InvalidRequestError, match=says):
        await manager.generate(GenerationRequest(messages=[Message.user(["look", image])]))
    assert emu.stats()["requests"] == 0
