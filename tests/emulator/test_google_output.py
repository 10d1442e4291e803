"""The Gemini dialect's structured output and image parts on the wire: what it answers for
``responseJsonSchema``/``responseSchema`` and JSON mode, how it acknowledges ``inlineData``
and ``fileData`` images, and the 400s it gives for what Gemini refuses."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator
from flyllm.emulator.dialects import _google_output
from tests.emulator.conftest import post, sse_data

KEY = "AIza-good"
AUTH = {"x-goog-api-key": KEY}
MODEL = "gemini-2.5-flash"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 8).decode()
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "n": {"type": "integer", "minimum": 3}},
    "required": ["city", "n"],
    "additionalProperties": False,
}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("google", api_keys={KEY}, models={MODEL}) as instance:
        yield instance


def url(emu: Emulator, stream: bool = False) -> str:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{emu.base_url}/v1beta/models/{MODEL}:{action}"


def request(parts: list[dict[str, Any]] | None = None, **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": parts or [{"text": "Weather in Oslo"}]}]
    }
    if config:
        body["generationConfig"] = config
    return body


def text_of(raw: bytes) -> str:
    text: str = json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"]
    return text


async def test_json_schema_answer_follows_it(emu: Emulator, session: aiohttp.ClientSession) -> None:
    body = request(responseMimeType="application/json", responseJsonSchema=SCHEMA)
    status, _, raw = await post(session, url(emu), body, AUTH)
    assert status == 200 and json.loads(text_of(raw)) == {"city": "Oslo", "n": 42}


async def test_snake_case_openapi_schema_and_stream(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    openapi = {"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}
    body = request(response_mime_type="application/json", response_schema=openapi)
    status, _, raw = await post(session, url(emu, stream=True), body, AUTH)
    chunks = sse_data(raw, b"\r\n\r\n")
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"].get("parts", [])
    )
    assert status == 200 and json.loads(text) == {"ok": True}


async def test_json_mode_gives_an_object(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(
        session, url(emu), request(responseMimeType="application/json"), AUTH
    )
    assert status == 200 and isinstance(json.loads(text_of(raw)), dict)


async def test_bad_output_breaks_the_schema(emu: Emulator, session: aiohttp.ClientSession) -> None:
    emu.schedule("bad_output", count=1)
    body = request(responseMimeType="application/json", responseJsonSchema=SCHEMA)
    _, _, raw = await post(session, url(emu), body, AUTH)
    assert json.loads(text_of(raw)) == []


async def test_images_are_acknowledged_in_order(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    parts: list[dict[str, Any]] = [
        {"text": "Compare"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"file_data": {"mime_type": "image/webp", "file_uri": "gs://b/x.webp"}},
        {"inline_data": {"mime_type": "application/pdf", "data": "JVBERi0="}},  # not an image
    ]
    status, _, raw = await post(session, url(emu), request(parts), AUTH)
    assert status == 200 and text_of(raw).startswith("[2 images: image/png, image/webp] ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (request(responseMimeType="text/html"), "allowed mimetypes are"),
        (
            request(responseMimeType="application/json", responseSchema={}, responseJsonSchema={}),
            "mutually exclusive",
        ),
        (request(responseJsonSchema=SCHEMA), "a response schema needs response_mime_type"),
        (
            request(responseMimeType="application/json", responseSchema=SCHEMA),
            'Unknown name "additionalProperties"',
        ),
        (
            request(
                responseMimeType="application/json",
                responseJsonSchema={
                    "type": "object",
                    "properties": {"a": {"$ref": "#/$defs/A", "title": "A"}},
                    "$defs": {"A": {"type": "string"}},
                },
            ),
            "If $ref is set, no other properties",
        ),
        (
            request([{"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}}]),
            "Unsupported MIME type: image/gif",
        ),
        (
            request([{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]),
            "Base64 decoding failed",
        ),
        (request([{"inlineData": {"data": PNG}}]), "mime_type is required"),
        (
            request([{"fileData": {"mimeType": "image/png", "fileUri": "ftp://x/y.png"}}]),
            "unsupported file uri",
        ),
        (request([{"fileData": {"fileUri": "gs://b/y.png"}}]), "mime_type is required"),
    ],
    ids=[
        "mime",
        "both-schemas",
        "schema-without-json",
        "openapi-additional",
        "ref-siblings",
        "gif",
        "base64",
        "inline-mime",
        "file-uri",
        "file-mime",
    ],
)
async def test_refusals_are_invalid_argument(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, _, raw = await post(session, url(emu), body, AUTH)
    error = json.loads(raw)["error"]
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert message in error["message"]


async def test_inline_data_over_the_limit_is_refused(
    emu: Emulator, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_google_output, "MAX_INLINE", 20)
    parts = [{"inlineData": {"mimeType": "image/png", "data": PNG}} for _ in range(2)]
    status, _, raw = await post(session, url(emu), request(parts), AUTH)
    assert status == 400
    assert json.loads(raw)["error"]["message"] == (
        "Request payload size exceeds the limit: 20 bytes."
    )


@pytest.mark.parametrize(("model", "status"), [(MODEL, 400), ("gemini-3-flash-preview", 200)])
async def test_json_mode_beside_tools_is_refused_before_gemini_3(
    session: aiohttp.ClientSession, model: str, status: int
) -> None:
    declaration = {"name": "f", "parametersJsonSchema": {"type": "object"}}
    body = request(responseMimeType="application/json", responseJsonSchema=SCHEMA)
    body["tools"] = [{"functionDeclarations": [declaration]}]
    async with Emulator("google", api_keys={KEY}) as emu:
        url = f"{emu.base_url}/v1beta/models/{model}:generateContent"
        got, _, raw = await post(session, url, body, AUTH)
    assert got == status
    if status == 400:
        assert json.loads(raw)["error"]["message"] == (
            "Function calling with a response mime type: 'application/json' is unsupported"
        )
