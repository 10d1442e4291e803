"""Structured output and images on Cohere through the manager and the emulator on loopback:
a schema (rewritten into Cohere's subset), a pydantic class, "json" with and without the word
in the prompt, a non-conforming answer failing over, streaming with a schema; images from bytes
and a path acknowledged by the emulator; limits and tools refused before anything is sent."""

from __future__ import annotations

import base64
from pathlib import Path

import pydantic
import pytest

from flyllm import GenerationRequest, Image, JsonSchema, LlmManager, LlmResponse, Message
from flyllm.emulator import Emulator
from flyllm.errors import AllAttemptsFailedError, InvalidRequestError, UnsupportedFeatureError
from flyllm.providers._json_hint import JSON_HINT
from flyllm.providers.cohere import TOOLS_WITH_OUTPUT
from tests.integration.conftest import EmulatorFactory, body
from tests.integration.test_tools_cohere import WEATHER

KEY = "co-" + "key-" + "0123456789"
MODEL = "command-a"
INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "maxLength": 20},
        "contact": {"type": "string", "format": "email"},
        "total": {"type": "number", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
    },
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 32
LOOK = GenerationRequest(messages=[Message.user(["What is this?", Image.from_bytes(PNG)])])


class Person(pydantic.BaseModel):
    """A person mentioned in the text."""

    name: str
    age: int


async def answer(manager: LlmManager, request: GenerationRequest, stream: bool) -> LlmResponse:
    """The response, streamed or not (a stream's response is complete once it is read)."""
    if not stream:
        return await manager.generate(request)
    async with manager.stream(request) as live:
        text = "".join([chunk.text async for chunk in live])
    assert live.response is not None and live.response.content == text
    return live.response


async def cohere(manager: LlmManager, emulators: EmulatorFactory, count: int = 1) -> list[Emulator]:
    emus = [await emulators("cohere") for _ in range(count)]
    for emu in emus:
        manager.add_provider("cohere", KEY, MODEL, base_url=emu.base_url)
    return emus


@pytest.mark.parametrize("stream", [False, True])
async def test_a_schema_is_sent_in_cohere_subset_and_the_answer_parsed(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await cohere(manager, emulators)
    fmt = JsonSchema("invoice", INVOICE)
    request = GenerationRequest(prompt="Extract the invoice from Oslo.", response_format=fmt)
    response = await answer(manager, request, stream)
    assert response.success and isinstance(response.parsed, dict)
    assert set(response.parsed) == {"number", "contact", "total", "lines"}
    sent = body(emu)["response_format"]
    assert sent["type"] == "json_object"
    schema = sent["json_schema"]
    assert schema["required"] == ["number"]  # Cohere wants one required property per object
    assert schema["properties"]["contact"] == {
        "type": "string",
        "description": "Constraints: format email.",
    }
    assert "minimum" not in schema["properties"]["total"]
    assert "minimum 0" in schema["properties"]["total"]["description"]


async def test_a_pydantic_class_gives_an_instance(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await cohere(manager, emulators)
    request = GenerationRequest(prompt="Who is Ada?", response_format=Person)
    response = await manager.generate(request)
    assert isinstance(response.parsed, Person)
    assert body(emu)["response_format"]["json_schema"]["required"] == ["name", "age"]


async def test_json_mode_adds_the_instruction_only_when_no_turn_says_json(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await cohere(manager, emulators)
    plain = await manager.generate(
        GenerationRequest(prompt="Describe Oslo.", response_format="json")
    )
    assert isinstance(plain.parsed, dict)
    sent = body(emu)
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"][0] == {"role": "system", "content": JSON_HINT}
    asked = GenerationRequest(prompt="Describe Oslo as JSON.", response_format="json")
    assert isinstance((await manager.generate(asked)).parsed, dict)
    assert [m["role"] for m in body(emu)["messages"]] == ["user"]


async def test_a_non_conforming_answer_fails_over(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    first, second = await cohere(manager, emulators, 2)
    first.schedule("bad_output")
    request = GenerationRequest(prompt="Who is Ada?", response_format=Person)
    response = await manager.generate(request)
    assert response.success and response.instance_id == 1 and isinstance(response.parsed, Person)
    assert first.stats()["requests"] == 1 and second.stats()["requests"] == 1
    assert response.attempts == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_images_from_bytes_and_a_path_arrive(
    stream: bool, manager: LlmManager, emulators: EmulatorFactory, tmp_path: Path
) -> None:
    (emu,) = await cohere(manager, emulators)
    path = tmp_path / "cat.bin"  # the media type comes from the bytes, not the name
    path.write_bytes(PNG)
    turn = Message.user(
        ["What is this?", Image.from_bytes(GIF, detail="low"), Image.from_path(path)]
    )
    response = await answer(manager, GenerationRequest(messages=[turn]), stream)
    assert response.content.startswith("[2 images: image/gif, image/png]")
    blocks = body(emu)["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "What is this?"}
    assert blocks[1]["image_url"] == {
        "url": "data:image/gif;base64," + base64.b64encode(GIF).decode(),
        "detail": "low",
    }
    assert blocks[2]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("images", "said"),
    [
        ([Image.from_bytes(PNG + b"\x00" * 20_000_000)], "20 MB"),
        ([Image.from_bytes(b"BM" + b"\x00" * 16)], "image/bmp"),
        ([Image.from_bytes(GIF + b"NETSCAPE2.0")], "animated"),
        ([Image.from_bytes(PNG)] * 21, "at most 20 images"),
    ],
)
async def test_images_cohere_refuses_are_refused_before_sending(
    images: list[Image], said: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await cohere(manager, emulators)
    with pytest.raises(InvalidRequestError, match=said):
        await manager.generate(GenerationRequest(messages=[Message.user(["Look", *images])]))
    assert emu.stats()["requests"] == 0


async def test_a_schema_with_tools_fails_over_before_sending_and_is_not_learned(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    (emu,) = await cohere(manager, emulators)
    other = await emulators("ollama")
    manager.add_provider("ollama", "", "llama3.2", base_url=other.base_url)
    request = GenerationRequest(
        prompt="Weather?", tools=[WEATHER], tool_choice="none", response_format="json"
    )
    response = await manager.generate(request)
    assert response.provider == "ollama" and emu.stats()["requests"] == 0
    manager.disable_instance(1)
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(request)
    (err,) = caught.value.attempts
    assert isinstance(err, UnsupportedFeatureError) and err.feature == TOOLS_WITH_OUTPUT
    plain = await manager.generate(GenerationRequest(prompt="Who?", response_format="json"))
    assert plain.instance_id == 0 and isinstance(plain.parsed, dict)  # still capable


@pytest.mark.parametrize(
    ("model", "request_"),
    [
        ("command-novision", LOOK),
        ("command-nojson", GenerationRequest(prompt="Who?", response_format="json")),
    ],
)  # fmt: skip
async def test_a_model_that_cannot_fails_over_and_is_learned(
    model: str, request_: GenerationRequest, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    plain, able = await emulators("cohere"), await emulators("cohere")
    manager.add_provider("cohere", KEY, model, base_url=plain.base_url)
    manager.add_provider("cohere", KEY, MODEL, base_url=able.base_url)
    for _ in range(2):
        response = await manager.generate(request_)
        assert response.success and response.instance_id == 1
    assert plain.stats()["responses_by_status"] == {"400": 1}  # learned: skipped the second time
    assert (await manager.generate(GenerationRequest(prompt="Hi"))).success  # text still goes
