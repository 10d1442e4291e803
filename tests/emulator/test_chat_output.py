"""Structured output and images on the chat-completions dialects (OpenAI, Azure, compatible
services, Mistral) on the raw wire: wrong shapes get the provider's 400, right ones get JSON
that follows the schema and an acknowledgement of the images."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator
from tests.emulator.conftest import post

KEY = "emulator-output-key-1"
AUTH = {"Authorization": f"Bearer {KEY}"}
ASK = [{"role": "user", "content": "Extract the invoice"}]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
BMP = b"BM" + b"\x00" * 30
CLOSED = {
    "type": "object",
    "properties": {
        "total": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["total", "tags"],
    "additionalProperties": False,
}


def schema_format(schema: dict[str, Any], strict: bool = True, name: str = "invoice") -> Any:
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": strict},
    }


def data_uri(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def image(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


def looking(*parts: dict[str, Any], role: str = "user") -> list[dict[str, Any]]:
    return [{"role": role, "content": [{"type": "text", "text": "What is this?"}, *parts]}]


OPEN = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"response_format": {"type": "yaml"}}, "'text', 'json_object', and 'json_schema'"),
        ({"response_format": {"type": "json_object"}}, "must contain the word 'json'"),
        ({"response_format": schema_format(CLOSED, name="a b")}, "json_schema.name"),
        ({"response_format": schema_format({"type": "array"})}, "'type: \"object\"'"),
        ({"response_format": schema_format(OPEN)}, "'additionalProperties' is required"),
        (
            {
                "response_format": schema_format(
                    {**OPEN, "additionalProperties": False, "properties": {"total": {}, "n": {}}}
                )
            },
            "Missing 'n'",
        ),
        (
            {
                "response_format": schema_format(
                    {
                        **CLOSED,
                        "properties": {"total": {"type": "string", "minLength": 2}, "tags": {}},
                    }
                )
            },
            "'minLength' is not permitted",
        ),
        ({"messages": looking({"type": "audio"})}, "'text' and 'image_url'"),
        ({"messages": looking(image(data_uri(PNG)), role="system")}, "only allowed for"),
        ({"messages": looking(image(data_uri(PNG), detail="max"))}, "'high', and 'original'"),
        ({"messages": looking(image(data_uri(BMP, "image/bmp")))}, "unsupported image"),
        ({"messages": looking(image("ftp://example.com/a.png"))}, "must be a URL"),
        ({"messages": looking({"type": "image_url", "image_url": "https://x/a.png"})}, "url"),
    ],
)
async def test_openai_rejects_wrong_output_and_image_shapes(
    session: aiohttp.ClientSession, fields: dict[str, Any], says: str
) -> None:
    async with Emulator("openai", api_keys={KEY}) as emu:
        body = {"model": "gpt-4o", "messages": ASK, **fields}
        status, _, raw = await post(session, emu.base_url + "/chat/completions", body, AUTH)
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error"
    assert says in error["message"]


async def test_openai_answers_schema_json_and_acknowledges_images(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator("openai", api_keys={KEY}) as emu:
        url = emu.base_url + "/chat/completions"
        body = {"model": "gpt-4o", "messages": ASK, "response_format": schema_format(CLOSED)}
        status, _, raw = await post(session, url, body, AUTH)
        value = json.loads(json.loads(raw)["choices"][0]["message"]["content"])
        assert status == 200 and isinstance(value["total"], float) and value["tags"]
        parts = looking(image(data_uri(PNG)), image(data_uri(JPEG, "image/jpeg"), detail="low"))
        status, _, raw = await post(session, url, {"model": "gpt-4o", "messages": parts}, AUTH)
    text = json.loads(raw)["choices"][0]["message"]["content"]
    assert status == 200 and text.startswith("[2 images: image/png, image/jpeg] ")


@pytest.mark.parametrize(
    ("version", "accepted"), [("2024-06-01", False), ("2024-08-01-preview", True)]
)
async def test_azure_gates_json_schema_by_api_version(
    session: aiohttp.ClientSession, version: str, accepted: bool
) -> None:
    body = {"messages": ASK, "response_format": schema_format(CLOSED)}
    async with Emulator("azure", api_keys={KEY}) as emu:
        url = f"{emu.base_url}/openai/deployments/gpt-4o/chat/completions?api-version={version}"
        status, _, raw = await post(session, url, body, {"api-key": KEY})
    assert (status == 200) is accepted, raw
    if not accepted:
        assert "2024-08-01-preview and later" in json.loads(raw)["error"]["message"]


async def test_mistral_takes_url_strings_and_at_most_eight_images(
    session: aiohttp.ClientSession,
) -> None:
    one = {"type": "image_url", "image_url": data_uri(PNG)}
    async with Emulator("mistral", api_keys={KEY}) as emu:
        url = emu.base_url + "/v1/chat/completions"
        body = {"model": "pixtral-12b", "messages": looking(one),
                "response_format": schema_format(OPEN, strict=False)}  # fmt: skip
        status, _, raw = await post(session, url, body, AUTH)
        assert status == 200 and json.loads(json.loads(raw)["choices"][0]["message"]["content"])
        body = {"model": "pixtral-12b", "messages": looking(*[one] * 9)}
        status, _, raw = await post(session, url, body, AUTH)
    assert status == 400 and "Max is 8" in json.loads(raw)["message"]


async def test_openai_refuses_a_hostile_deep_strict_schema(
    session: aiohttp.ClientSession,
) -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(300):
        deep = {"type": "object", "properties": {"x": deep}, "required": ["x"],
                "additionalProperties": False}  # fmt: skip
    body = {"model": "gpt-4o", "messages": ASK, "response_format": schema_format(deep)}
    async with Emulator("openai", api_keys={KEY}) as emu:
        status, _, raw = await post(session, emu.base_url + "/chat/completions", body, AUTH)
    assert status == 400 and "nested too deeply" in json.loads(raw)["error"]["message"]
