"""Structured output and images on Ollama through the manager and the emulator on loopback:
``format`` with a schema (streamed and not), a pydantic class, "json", a non-conforming answer
failing over; images from bytes and a path as base64; a GIF refused before anything is
sent (URLs are the engine's to download; the build's refusal is a unit test)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from flyllm import GenerationRequest, Image, JsonSchema, LlmManager, Message
from flyllm.emulator import Emulator
from flyllm.errors import InvalidRequestError
from flyllm.providers._json_hint import JSON_HINT
from tests.integration.conftest import EmulatorFactory, body
from tests.integration.test_output_cohere import GIF, INVOICE, PNG, Person, answer

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


async def ollama(manager: LlmManager, emulators: EmulatorFactory, count: int = 1) -> list[Emulator]:
    emus = [await emulators("ollama") for _ in range(count)]
    for emu in emus:
        manager.add_provider("ollama", "", "llama3.2", base_url=emu.base_url)
    return emus


@pytest.mark.parametrize("stream", [False, True])
async def test_a_schema_goes_as_format_and_the_answer_is_parsed(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await ollama(manager, emulators)
    request = GenerationRequest(
        prompt="Extract the invoice.", response_format=JsonSchema("invoice", INVOICE)
    )
    response = await answer(manager, request, stream)
    assert isinstance(response.parsed, dict)
    assert set(response.parsed) == {"number", "contact", "total", "lines"}
    assert body(emu)["format"] == INVOICE  # the grammar takes these keywords as they are


async def test_a_pydantic_class_and_json_mode(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await ollama(manager, emulators)
    person = await manager.generate(GenerationRequest(prompt="Who?", response_format=Person))
    assert isinstance(person.parsed, Person)
    assert body(emu)["format"]["required"] == ["name", "age"]
    plain = await manager.generate(
        GenerationRequest(prompt="Describe Oslo.", response_format="json")
    )
    assert isinstance(plain.parsed, dict)
    sent = body(emu)
    assert sent["format"] == "json" and sent["messages"][0] == {
        "role": "system",
        "content": JSON_HINT,
    }


async def test_a_non_conforming_answer_fails_over(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    first, _ = await ollama(manager, emulators, 2)
    first.schedule("bad_output")
    response = await manager.generate(GenerationRequest(prompt="Who?", response_format="json"))
    assert response.instance_id == 1 and isinstance(response.parsed, dict)
    assert first.stats()["requests"] == 1 and response.attempts == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_images_from_bytes_and_a_path_go_as_base64(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory, tmp_path: Path
) -> None:
    (emu,) = await ollama(manager, emulators)
    path = tmp_path / "photo"
    path.write_bytes(JPEG)
    turn = Message.user(["What is this?", Image.from_bytes(PNG), Image.from_path(path)])
    response = await answer(manager, GenerationRequest(messages=[turn]), stream)
    assert response.content.startswith("[2 images: image/png, image/jpeg]")
    sent = body(emu)["messages"][0]
    assert sent["content"] == "What is this?"
    assert sent["images"] == [base64.b64encode(PNG).decode(), base64.b64encode(JPEG).decode()]


async def test_a_format_ollama_cannot_decode_is_refused_before_sending(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await ollama(manager, emulators)
    turn = Message.user(["Look", Image.from_bytes(GIF)])
    with pytest.raises(InvalidRequestError, match="PNG and JPEG"):
        await manager.generate(GenerationRequest(messages=[turn]))
    assert emu.stats()["requests"] == 0


async def test_a_model_without_vision_fails_over_and_is_learned(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    plain, able = await emulators("ollama"), await emulators("ollama")
    manager.add_provider("ollama", "", "llama3.2-novision", base_url=plain.base_url)
    manager.add_provider("ollama", "", "llava", base_url=able.base_url)
    request = GenerationRequest(messages=[Message.user(["?", Image.from_bytes(PNG)])])
    for _ in range(2):
        response = await manager.generate(request)
        assert response.success and response.instance_id == 1
    assert plain.stats()["responses_by_status"] == {"400": 1}
