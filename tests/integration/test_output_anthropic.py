"""Structured output and images through the manager on Anthropic (the emulator on loopback):
a schema, a pydantic class and "json", natively and with the forced answer tool, streamed and
not; a non-conforming answer and a model without structured output failing over; images from
bytes and a path; images the API would refuse, refused before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flyllm import GenerationRequest, Image, InvalidRequestError, JsonSchema, LlmManager, Message
from flyllm.emulator import Emulator
from tests.integration.conftest import EmulatorFactory, body

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
TRIP = JsonSchema(
    "trip",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "days": {"type": "integer", "minimum": 1},
        },
        "required": ["city", "days"],
    },
)


class Invoice(BaseModel):
    """An invoice's fields."""

    number: str
    total: float


async def anthropic(
    manager: LlmManager,
    emulators: EmulatorFactory,
    mode: str = "native",
    model: str = "claude-sonnet-4-5",
) -> Emulator:
    emu = await emulators("anthropic")
    options = {"structured_output": mode}
    manager.add_provider("anthropic", "k", model, base_url=emu.base_url, options=options)
    return emu


def ask(response_format: Any, prompt: str = "Plan a trip to Oslo") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, response_format=response_format)


@pytest.mark.parametrize("mode", ["native", "tool"])
async def test_a_schema_gives_parsed_json(
    manager: LlmManager, emulators: EmulatorFactory, mode: str
) -> None:
    emu = await anthropic(manager, emulators, mode)
    response = await manager.generate(ask(TRIP))
    assert response.success and response.finish_reason == "stop"
    assert response.parsed == json.loads(response.content)
    assert set(response.parsed) == {"city", "days"} and response.parsed["days"] >= 1
    sent = body(emu)
    if mode == "native":
        assert sent["output_config"]["format"]["schema"]["additionalProperties"] is False
    else:
        assert sent["tool_choice"] == {
            "type": "tool",
            "name": "flyllm_output_trip",
            "disable_parallel_tool_use": True,
        }


async def test_a_pydantic_class_gives_an_instance(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await anthropic(manager, emulators)
    response = await manager.generate(ask(Invoice, "Extract the invoice"))
    assert isinstance(response.parsed, Invoice)
    assert response.parsed.model_dump() == json.loads(response.content)


async def test_json_gives_an_object_whatever_the_prompt(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await anthropic(manager, emulators)
    response = await manager.generate(ask("json", "Say hello"))
    assert isinstance(response.parsed, dict)
    assert body(emu)["tool_choice"]["name"] == "flyllm_output_response"


@pytest.mark.parametrize("mode", ["native", "tool"])
async def test_streaming_with_a_schema_parses_at_the_end(
    manager: LlmManager, emulators: EmulatorFactory, mode: str
) -> None:
    await anthropic(manager, emulators, mode)
    async with manager.stream(ask(TRIP)) as stream:
        text = "".join([chunk.text async for chunk in stream])
    assert stream.response.parsed == json.loads(text)
    assert set(stream.response.parsed) == {"city", "days"}


async def test_a_non_conforming_answer_fails_over(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad = await anthropic(manager, emulators)
    await anthropic(manager, emulators)
    bad.schedule("bad_output", count=1)
    response = await manager.generate(ask(TRIP))
    assert response.success and response.instance_id == 1 and response.attempts == 2
    assert set(response.parsed) == {"city", "days"}
    assert bad.stats()["faults_injected"] == {"bad_output": 1}


async def test_a_model_without_structured_output_is_learned_and_skipped(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    old = await anthropic(manager, emulators, model="claude-3-5-haiku-20241022")
    await anthropic(manager, emulators, "tool", model="claude-3-5-haiku-20241022")
    first = await manager.generate(ask(TRIP))
    assert first.instance_id == 1 and first.attempts == 2 and first.parsed is not None
    second = await manager.generate(ask(TRIP))
    assert second.instance_id == 1 and second.attempts == 1
    assert len(old.requests) == 1  # learned: the instance is no longer tried


async def test_images_from_bytes_and_a_path_arrive(
    manager: LlmManager, emulators: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await anthropic(manager, emulators)
    path = tmp_path / "picture.bin"  # the type comes from the bytes, not the name
    path.write_bytes(PNG)
    turn = Message.user(["What is in these?", Image.from_bytes(PNG), Image.from_path(path)])
    response = await manager.generate(GenerationRequest(messages=[turn]))
    assert response.content.startswith("[2 images: image/png, image/png] ")
    blocks = body(emu)["messages"][0]["content"]
    assert [b["type"] for b in blocks] == ["text", "image", "image"]


@pytest.mark.parametrize(
    ("image", "says"),
    [
        (Image.from_bytes(PNG + b"\x00" * (4 * 2**20)), "5 MB"),
        (Image.from_bytes(b"BM" + b"\x00" * 30), "JPEG, PNG, GIF and WEBP"),
    ],
)
async def test_images_anthropic_refuses_are_refused_before_sending(
    manager: LlmManager, emulators: EmulatorFactory, image: Image, says: str
) -> None:
    emu = await anthropic(manager, emulators)
    with pytest.raises(InvalidRequestError, match=says):
        await manager.generate(GenerationRequest(messages=[Message.user(["x", image])]))
    assert emu.requests == []
