"""The Cohere and Ollama dialects' structured output and images on the wire: what each takes
(and answers with schema-conforming JSON, or acknowledges), and the 400s and 500s in each
provider's shape for what it refuses."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator
from tests.emulator.conftest import post

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
GIF = b"GIF89a" + b"\x00" * 8
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
async def cohere() -> AsyncIterator[Emulator]:
    async with Emulator("cohere") as emu:
        yield emu


@pytest.fixture
async def ollama() -> AsyncIterator[Emulator]:
    async with Emulator("ollama") as emu:
        yield emu


async def co(session: aiohttp.ClientSession, emu: Emulator, **extra: Any) -> tuple[int, Any]:
    messages = extra.pop("messages", [{"role": "user", "content": "Where is Oslo?"}])
    body = {"model": "command-a", "messages": messages, **extra}
    status, _, raw = await post(
        session, emu.base_url + "/v2/chat", body, {"Authorization": "Bearer co-" + "k"}
    )
    return status, json.loads(raw)


async def ol(session: aiohttp.ClientSession, emu: Emulator, **extra: Any) -> tuple[int, Any]:
    messages = extra.pop("messages", [{"role": "user", "content": "Where is Oslo?"}])
    body = {"model": "llava", "messages": messages, "stream": False, **extra}
    status, _, raw = await post(session, emu.base_url + "/api/chat", body)
    return status, json.loads(raw)


@pytest.mark.parametrize("key", ["json_schema", "schema"])  # the SDK's field, the docs' examples
async def test_cohere_answers_a_schema_with_conforming_json(
    key: str, cohere: Emulator, session: aiohttp.ClientSession
) -> None:
    status, data = await co(session, cohere, response_format={"type": "json_object", key: SCHEMA})
    assert status == 200
    assert set(json.loads(data["message"]["content"][0]["text"])) == {"city"}


@pytest.mark.parametrize(
    ("fmt", "said"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_object", "extra": 1}, "unknown field"),
        ({"type": "json_object", "json_schema": {"type": "array"}}, "top level type"),
        ({"type": "json_object", "json_schema": {"type": "object", "properties": {}}}, "required"),
        ({"type": "json_object", "json_schema": {**SCHEMA, "properties": {"city": {
            "type": "string", "maxLength": 3}}}}, "maxLength is not supported"),
        ({"type": "json_object", "json_schema": {**SCHEMA, "properties": {"city": {
            "type": "string", "pattern": "^a$"}}}}, "regular expression"),
        ({"type": "json_object", "json_schema": {**SCHEMA, "properties": {"city": {
            "type": "string", "format": "email"}}}}, "format email"),
    ],
)  # fmt: skip
async def test_cohere_refuses_what_its_api_refuses(
    fmt: dict[str, Any], said: str, cohere: Emulator, session: aiohttp.ClientSession
) -> None:
    status, data = await co(session, cohere, response_format=fmt)
    assert status == 400 and said in data["message"] and data["message"].startswith("invalid")


async def test_cohere_refuses_a_format_with_tools(
    cohere: Emulator, session: aiohttp.ClientSession
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": SCHEMA}}
    status, data = await co(session, cohere, response_format={"type": "json_object"}, tools=[tool])
    assert status == 400 and "not supported with tools" in data["message"]


async def test_cohere_acknowledges_images_and_refuses_bad_ones(
    cohere: Emulator, session: aiohttp.ClientSession
) -> None:
    def turn(url: str, detail: str = "auto") -> list[dict[str, Any]]:
        block = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
        return [{"role": "user", "content": [{"type": "text", "text": "What?"}, block]}]

    png = "data:image/png;base64," + base64.b64encode(PNG).decode()
    status, data = await co(session, cohere, messages=turn(png))
    assert status == 200 and data["message"]["content"][0]["text"].startswith(
        "[1 image: image/png]"
    )
    bmp = "data:image/bmp;base64," + base64.b64encode(b"BM" + b"\x00" * 8).decode()
    for bad, said in [(turn(bmp), "unsupported image format"), (turn(png, "max"), "detail"),
                      (turn("ftp://x/a.png"), "base64 data URL"),
                      (turn(png) * 21, "too many images")]:  # fmt: skip
        status, data = await co(session, cohere, messages=bad)
        assert status == 400 and said in data["message"], data


@pytest.mark.parametrize("fmt", ["json", SCHEMA])
async def test_ollama_answers_its_formats_with_json(
    fmt: Any, ollama: Emulator, session: aiohttp.ClientSession
) -> None:
    status, data = await ol(session, ollama, format=fmt)
    assert status == 200 and isinstance(json.loads(data["message"]["content"]), dict)


@pytest.mark.parametrize(
    ("fmt", "said"),
    [("xml", "invalid format"), ({"$ref": "https://x.test/s.json"}, "invalid JSON schema")],
)
async def test_ollama_refuses_what_its_server_refuses(
    fmt: Any, said: str, ollama: Emulator, session: aiohttp.ClientSession
) -> None:
    status, data = await ol(session, ollama, format=fmt)
    assert status == 500 and said in data["error"]


async def test_ollama_acknowledges_images_and_refuses_bad_ones(
    ollama: Emulator, session: aiohttp.ClientSession
) -> None:
    def turn(*images: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": "What?", "images": list(images)}]

    status, data = await ol(session, ollama, messages=turn(base64.b64encode(PNG).decode()))
    assert status == 200 and data["message"]["content"].startswith("[1 image: image/png]")
    status, data = await ol(session, ollama, messages=turn("data:image/png;base64,AAAA"))
    assert status == 400 and data["error"] == "illegal base64 data at input byte 4"
    status, data = await ol(session, ollama, messages=turn(base64.b64encode(GIF).decode()))
    assert status == 500 and "image: unknown format" in data["error"]
