"""Structured output and images on Gemini through the manager and the emulator: a schema, a
pydantic class, "json", a non-conforming answer failing over to the next instance, a stream
with a schema, images from bytes and a path, and images refused before anything is sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from flyllm import GenerationRequest, LlmManager, Message, TaskDefinition
from flyllm.emulator import Emulator
from flyllm.errors import InvalidRequestError
from flyllm.params import OutputFormat, ToolSet
from flyllm.providers import get_provider
from flyllm.providers.base import Endpoint, HttpResponse
from flyllm.types import Image, JsonSchema, Tool
from tests.integration.conftest import EmulatorFactory, body

MODEL = "gemini-2.5-flash"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB")
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 16
INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "minLength": 1},
        "total": {"type": "number", "minimum": 0},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
    },
    "required": ["number", "total", "lines"],
    "additionalProperties": False,
    "$defs": {"line": {"type": "object", "properties": {"text": {"type": "string"}}}},
}
PROMPT = "Extract the invoice of Acme: INV-7, 12.50 EUR"


class Line(BaseModel):
    text: str
    amount: float


class Invoice(BaseModel):
    """An invoice's fields."""

    number: str
    total: float
    lines: list[Line]


async def add(manager: LlmManager, emulators: EmulatorFactory, **kwargs: Any) -> Emulator:
    emu = await emulators("google", **kwargs)
    manager.add_provider("google", "k", MODEL, [TaskDefinition("t")], base_url=emu.base_url)
    return emu


def ask(fmt: Any, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(prompt=PROMPT, task="t", response_format=fmt, **kwargs)


async def test_schema(manager: LlmManager, emulators: EmulatorFactory) -> None:
    emu = await add(manager, emulators)
    response = await manager.generate(ask(JsonSchema("invoice", INVOICE)))
    assert response.success and json.loads(response.content) == response.parsed
    assert response.parsed == {"number": "Acme", "total": 42.0, "lines": [{"text": "Acme"}]}
    config = body(emu)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["$defs"] == INVOICE["$defs"]
    assert "minLength" not in json.dumps(config)  # not in Gemini's subset: flyllm checks it


async def test_pydantic_class(manager: LlmManager, emulators: EmulatorFactory) -> None:
    emu = await add(manager, emulators)
    response = await manager.generate(ask(Invoice))
    assert isinstance(response.parsed, Invoice)
    assert response.parsed.lines == [Line(text="Acme", amount=42.0)]
    schema = body(emu)["generationConfig"]["responseJsonSchema"]
    assert schema["properties"]["lines"]["items"] == {"$ref": "#/$defs/Line"}
    assert schema["description"] == "An invoice's fields."


async def test_json_any_object(manager: LlmManager, emulators: EmulatorFactory) -> None:
    emu = await add(manager, emulators)
    response = await manager.generate(
        GenerationRequest(prompt="Say hello to Oslo", task="t", response_format="json")
    )
    assert response.parsed == {"answer": "Oslo", "ok": True}
    assert body(emu)["generationConfig"] == {"responseMimeType": "application/json"}


async def test_bad_output_fails_over_to_the_next_instance(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad = await emulators("google")
    bad.schedule("bad_output", count=1)
    good = await emulators("google")
    task = TaskDefinition("t")
    manager.add_provider("google", "k", MODEL, [task], base_url=bad.base_url)
    manager.add_provider("google", "k", MODEL, [task], base_url=good.base_url)
    response = await manager.generate(ask(JsonSchema("invoice", INVOICE)))
    assert response.success and response.attempts == 2 and response.instance_id == 1
    assert response.parsed["number"] == "Acme"
    assert {u.id: u.failures for u in manager.token_usage()} == {0: 1, 1: 0}
    assert bad.stats()["faults_injected"] == {"bad_output": 1}
    assert len(good.requests) == 1


async def test_stream_with_a_schema_parses_at_the_end(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    await add(manager, emulators)
    texts: list[str] = []
    async with manager.stream(ask(JsonSchema("invoice", INVOICE))) as chunks:
        async for chunk in chunks:
            texts.append(chunk.text)
    assert len([t for t in texts if t]) > 1  # the JSON came in pieces
    assert json.loads("".join(texts)) == chunks.response.parsed
    assert chunks.response.parsed["lines"] == [{"text": "Acme"}]


async def test_images_from_bytes_and_a_path(
    manager: LlmManager, emulators: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await add(manager, emulators)
    path = tmp_path / "photo.bin"  # the type comes from the bytes, not the name
    path.write_bytes(JPEG)
    turn = Message.user(["What is in these?", Image.from_bytes(PNG), Image.from_path(path)])
    response = await manager.generate(GenerationRequest(messages=[turn], task="t"))
    assert response.content.startswith("[2 images: image/png, image/jpeg] ")
    parts = body(emu)["contents"][0]["parts"]
    assert parts[1] == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
    }
    assert parts[2]["inlineData"]["mimeType"] == "image/jpeg"


async def test_gs_image_goes_by_uri(manager: LlmManager, emulators: EmulatorFactory) -> None:
    emu = await add(manager, emulators)
    turn = Message.user(["Describe", Image.from_url("gs://bucket/cat.webp")])
    response = await manager.generate(GenerationRequest(messages=[turn], task="t"))
    assert response.content.startswith("[1 image: image/webp] ")
    assert body(emu)["contents"][0]["parts"][1] == {
        "fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/cat.webp"}
    }


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (Image.from_bytes(b"GIF89a" + b"\0" * 10), "does not read image/gif"),
        (Image.from_bytes(PNG + bytes(75_000_000)), "over Gemini's 100 MB per request"),
    ],
    ids=["gif", "oversized"],
)
async def test_refused_images_are_never_sent(
    manager: LlmManager, emulators: EmulatorFactory, image: Image, why: str
) -> None:
    emu = await add(manager, emulators)
    turn = Message.user(["Look", image])
    with pytest.raises(InvalidRequestError, match=why):
        await manager.generate(GenerationRequest(messages=[turn], task="t"))
    assert emu.requests == []


WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.mark.parametrize("model", [MODEL, "gemini-3-flash-preview"])
async def test_schema_beside_tools_is_taken_by_every_gemini(
    emulators: EmulatorFactory, model: str
) -> None:
    # Through the provider and the emulator only: the engine's handling of a tool-call step
    # of a structured request is the manager's (it validates the step's empty text today).
    emu = await emulators("google")
    provider = get_provider("google")
    endpoint = Endpoint(model, "k", emu.base_url)
    output = OutputFormat("invoice", INVOICE)
    messages = [Message.user("Weather in Oslo?")]
    sent = provider.build(endpoint, messages, {}, tools=ToolSet((WEATHER,)), output=output)
    async with (
        aiohttp.ClientSession() as session,
        session.post(sent.url, data=sent.body, headers=sent.headers) as answer,
    ):
        raw = HttpResponse(answer.status, dict(answer.headers), await answer.read())
    completion = provider.parse(raw, endpoint)  # Gemini 2.5 would 400 on JSON mode here
    assert [c.name for c in completion.tool_calls] == ["get_weather"]
    config = body(emu).get("generationConfig", {})
    assert ("responseJsonSchema" in config) is (model != MODEL)
