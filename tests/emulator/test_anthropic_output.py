"""The Anthropic dialect's structured output (output_config.format) and image blocks: what it
accepts, what it refuses with the API's 400, and what it answers."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm._schema import validate
from flyllm.emulator import Emulator
from tests.emulator.conftest import post

KEY = "sk-ant-good"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
CLOSED = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    models = {"claude-sonnet-4-5", "claude-3-5-haiku-20241022"}
    async with Emulator("anthropic", api_keys={KEY}, models=models, seed=3) as instance:
        yield instance


def message(content: Any, model: str = "claude-sonnet-4-5", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def schema_format(schema: Any) -> dict[str, Any]:
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


def image(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image", "source": source}


async def answer(emu: Emulator, session: aiohttp.ClientSession, body: Any) -> tuple[int, Any]:
    status, _, raw = await post(session, emu.base_url + "/v1/messages", body, HEADERS)
    return status, json.loads(raw)


async def test_output_config_answer_is_json_that_follows_the_schema(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, data = await answer(emu, session, message("Trip to Oslo", **schema_format(CLOSED)))
    assert status == 200, data
    value = json.loads(data["content"][0]["text"])
    assert validate(value, CLOSED) == [] and set(value) == {"city", "days"}


@pytest.mark.parametrize(
    ("schema", "model", "says"),
    [
        ({**CLOSED, "additionalProperties": True}, None, "must be explicitly set to false"),
        ({k: v for k, v in CLOSED.items() if k != "additionalProperties"}, None, "explicitly"),
        (
            {**CLOSED, "properties": {"n": {"type": "integer", "minimum": 1}}},
            None,
            "'minimum' is not supported",
        ),
        (
            {**CLOSED, "properties": {"a": {"type": "array", "minItems": 2}}},
            None,
            "minItems values other than 0 or 1",
        ),
        (
            {
                **CLOSED,
                "properties": {"n": {"$ref": "#/$defs/n"}},
                "$defs": {"n": {"$ref": "#/$defs/n"}},
            },
            None,
            "recursive schemas are not supported",
        ),
        (CLOSED, "claude-3-5-haiku-20241022", "structured outputs are not supported"),
    ],
)
async def test_schemas_and_models_the_api_refuses_get_its_400(
    emu: Emulator, session: aiohttp.ClientSession, schema: Any, model: str | None, says: str
) -> None:
    body = message("x", model or "claude-sonnet-4-5", **schema_format(schema))
    status, data = await answer(emu, session, body)
    assert status == 400 and data["error"]["type"] == "invalid_request_error"
    assert says in data["error"]["message"]


async def test_images_are_acknowledged_in_order(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    content = [
        image({"type": "base64", "media_type": "image/png", "data": PNG}),
        image({"type": "url", "url": "https://example.com/cat.gif"}),
        {"type": "text", "text": "What is in these?"},
    ]
    status, data = await answer(emu, session, message(content))
    assert status == 200, data
    assert data["content"][0]["text"].startswith("[2 images: image/png, image/gif] ")


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ({"type": "base64", "media_type": "image/jpeg", "data": PNG}, "does not match"),
        ({"type": "base64", "media_type": "image/bmp", "data": PNG}, "Input should be"),
        ({"type": "base64", "media_type": "image/png", "data": "A" * (5 * 2**20 + 4)}, "5 MB"),
        ({"type": "url", "url": "file:///etc/cat.png"}, "valid URL"),
        ({"type": "file", "file_id": "f"}, "expected tags"),
    ],
)
async def test_images_the_api_refuses_get_its_400(
    emu: Emulator, session: aiohttp.ClientSession, source: dict[str, Any], says: str
) -> None:
    status, data = await answer(emu, session, message([image(source), "x"][:1]))
    assert status == 400 and says in data["error"]["message"]


async def test_more_than_100_images_is_too_much_media(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    png = image({"type": "base64", "media_type": "image/png", "data": PNG})
    status, data = await answer(emu, session, message([png] * 101))
    assert status == 400
    assert data["error"]["message"] == "Too much media: 0 document pages + 101 images > 100"


async def test_a_forced_tool_with_thinking_on_is_refused(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    tool = {"name": "answer", "input_schema": {"type": "object"}}
    extra: dict[str, Any] = {
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": "answer"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    status, data = await answer(emu, session, message("x", **extra))
    assert status == 400
    assert data["error"]["message"] == (
        "Thinking may not be enabled when tool_choice forces tool use."
    )
