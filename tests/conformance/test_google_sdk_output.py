"""Structured output and images on the Gemini dialect, driven by ``google-genai``: its
``response_schema`` helper with a pydantic class (``response.parsed`` an instance; the SDK
sends the OpenAPI-style ``responseSchema``), ``response_json_schema`` (JSON Schema as
``responseJsonSchema``), the JSON mime type alone, a streamed schema answer, the
``bad_output`` fault (the SDK leaves ``parsed`` None and the text does not validate; flyllm
fails over), ``Part.from_bytes``/``Part.from_uri`` images, and the 400s Gemini gives for a
GIF and for a ``$ref`` with siblings."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pydantic
import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

from flyllm import GenerationRequest, LlmManager, TaskDefinition
from flyllm.emulator import Emulator
from tests.conformance.helpers import KEY

MODEL = "gemini-2.5-flash"
PROMPT = "Extract the invoice of Acme: INV-7, 12.50 EUR"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB")

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


class Invoice(BaseModel):
    number: str
    total: float
    tags: list[str]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="google", api_keys={KEY}) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[genai.client.AsyncClient]:
    sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=emu.base_url))
    try:
        yield sdk.aio
    finally:
        await sdk.aio.aclose()
        sdk.close()


def config(**kwargs: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(response_mime_type="application/json", **kwargs)


def sent_config(emu: Emulator) -> dict[str, Any]:
    sent = emu.requests[-1].json
    assert isinstance(sent, dict)
    generation: dict[str, Any] = sent["generationConfig"]
    return generation


async def test_response_schema_with_a_pydantic_class(
    emu: Emulator, client: genai.client.AsyncClient
) -> None:
    response = await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=config(response_schema=Invoice)
    )
    assert response.parsed == Invoice(number="Acme", total=42.0, tags=["Acme"])
    assert sent_config(emu)["responseSchema"]["type"] == "OBJECT"  # the OpenAPI form


async def test_response_json_schema(emu: Emulator, client: genai.client.AsyncClient) -> None:
    schema = Invoice.model_json_schema()
    response = await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=config(response_json_schema=schema)
    )
    assert response.parsed == {"number": "Acme", "total": 42.0, "tags": ["Acme"]}
    assert sent_config(emu)["responseJsonSchema"] == schema


async def test_json_mime_type_alone(client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(model=MODEL, contents=PROMPT, config=config())
    assert response.text is not None
    assert json.loads(response.text) == {"answer": "Acme", "ok": True}


async def test_streamed_schema_answer(client: genai.client.AsyncClient) -> None:
    stream = await client.models.generate_content_stream(
        model=MODEL, contents=PROMPT, config=config(response_schema=Invoice)
    )
    texts = [chunk.text or "" async for chunk in stream]
    assert len(texts) > 2
    assert Invoice.model_validate_json("".join(texts)).number == "Acme"


async def test_bad_output_does_not_parse(emu: Emulator, client: genai.client.AsyncClient) -> None:
    emu.schedule("bad_output", count=1)
    response = await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=config(response_schema=Invoice)
    )
    assert response.parsed is None  # the SDK swallows the mismatch...
    with pytest.raises(pydantic.ValidationError):
        Invoice.model_validate_json(response.text or "")  # ...which is really there
    assert emu.stats()["faults_injected"] == {"bad_output": 1}


async def test_bad_output_fails_over_through_flyllm() -> None:
    async with (
        Emulator(provider="google", api_keys={KEY}) as bad,
        Emulator(provider="google", api_keys={KEY}) as good,
        LlmManager() as manager,
    ):
        bad.schedule("bad_output", count=1)
        for emu in (bad, good):
            manager.add_provider("google", KEY, MODEL, [TaskDefinition("t")], base_url=emu.base_url)
        request = GenerationRequest(prompt=PROMPT, task="t", response_format=Invoice)
        response = await manager.generate(request)
    assert response.attempts == 2 and response.instance_id == 1
    assert response.parsed == Invoice(number="Acme", total=42.0, tags=["Acme"])


async def test_ref_with_siblings_is_googles_400(client: genai.client.AsyncClient) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A", "description": "an a"}},
        "$defs": {"A": {"type": "string"}},
    }
    with pytest.raises(errors.ClientError) as caught:
        await client.models.generate_content(
            model=MODEL, contents=PROMPT, config=config(response_json_schema=schema)
        )
    assert caught.value.code == 400
    assert "If $ref is set, no other properties" in str(caught.value)


async def test_images_from_bytes_and_uri(emu: Emulator, client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(
        model=MODEL,
        contents=[
            "What is in these?",
            types.Part.from_bytes(data=PNG, mime_type="image/png"),
            types.Part.from_uri(file_uri="gs://bucket/cat.jpg", mime_type="image/jpeg"),
        ],
    )
    assert response.text is not None
    assert response.text.startswith("[2 images: image/png, image/jpeg] ")
    sent = emu.requests[-1].json
    assert isinstance(sent, dict)
    inline = sent["contents"][0]["parts"][1]["inlineData"]
    assert base64.urlsafe_b64decode(inline["data"]) == PNG


async def test_gif_is_googles_400(client: genai.client.AsyncClient) -> None:
    gif = types.Part.from_bytes(data=b"GIF89a" + b"\0" * 10, mime_type="image/gif")
    with pytest.raises(errors.ClientError) as caught:
        await client.models.generate_content(model=MODEL, contents=["Look", gif])
    assert caught.value.code == 400 and "Unsupported MIME type: image/gif" in str(caught.value)
