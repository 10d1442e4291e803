"""Mistral chat completions dialect on the wire: strict schema, usage placement, error shapes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, generate_text
from tests.emulator.conftest import post, sse_data

KEY = "mistral-good"
AUTH = {"Authorization": f"Bearer {KEY}"}


def chat(content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "mistral-small-latest",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        "mistral", api_keys={KEY}, models={"mistral-small-latest"}, seed=4
    ) as instance:
        yield instance


def url(emu: Emulator) -> str:
    return emu.base_url + "/v1/chat/completions"


async def test_non_stream_answer_shape(emu: Emulator, session: aiohttp.ClientSession) -> None:
    assert emu.base_url == emu.url
    status, _, raw = await post(session, url(emu), chat(random_seed=1, safe_prompt=False), AUTH)
    assert status == 200
    data = json.loads(raw)
    assert list(data) == ["id", "created", "model", "usage", "object", "choices"]
    assert re.fullmatch(r"[0-9a-f]{32}", data["id"]) and data["object"] == "chat.completion"
    text = " ".join(generate_text("Hello there", seed=4))
    assert data["choices"] == [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "tool_calls": None, "content": text},
        }
    ]
    assert data["usage"] == {
        "prompt_tokens": 5,
        "total_tokens": 5 + len(text.split()),
        "completion_tokens": len(text.split()),
    }


async def test_stream_usage_rides_on_the_finish_chunk(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), chat(stream=True, max_tokens=3), AUTH)
    assert status == 200
    chunks = sse_data(raw)
    assert chunks[-1] == "[DONE]"
    first, *content, finish, _ = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["choices"][0]["logprobs"] is None and "usage" not in c for c in [first, *content])
    assert len(content) == 3
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {
        "content": ""
    }
    assert finish["usage"] == {"prompt_tokens": 5, "total_tokens": 8, "completion_tokens": 3}
    assert "system_fingerprint" not in first


async def test_stop_sequence(emu: Emulator, session: aiohttp.ClientSession) -> None:
    words = generate_text("Hello there", seed=4)
    _, _, raw = await post(session, url(emu), chat(stop=[words[5]]), AUTH)
    data = json.loads(raw)
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["choices"][0]["message"]["content"] == " ".join(words[:5]) + " "
    assert data["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize("field", ["max_completion_tokens", "store", "user", "stream_options"])
async def test_openai_only_fields_are_422_with_an_object_message(
    emu: Emulator, session: aiohttp.ClientSession, field: str
) -> None:
    status, _, raw = await post(session, url(emu), {**chat(), field: 1}, AUTH)
    body = json.loads(raw)
    assert status == 422 and body["object"] == "error" and body["type"] == "invalid_request_error"
    assert body["param"] is None and body["code"] is None
    assert body["message"] == {
        "detail": [
            {
                "type": "extra_forbidden",
                "loc": ["body", field],
                "msg": "Extra inputs are not permitted",
                "input": 1,
            }
        ]
    }


async def test_auth_uses_the_gateway_shape(emu: Emulator, session: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, _, raw = await post(session, url(emu), chat(), headers)
        body = json.loads(raw)
        assert (
            status == 401
            and body["message"] == "Unauthorized"
            and set(body) == {"message", "request_id"}
        )


async def test_unknown_model_is_400_invalid_model(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), {**chat(), "model": "no-such-model"}, AUTH)
    assert status == 400
    assert json.loads(raw) == {
        "object": "error",
        "message": "Invalid model: no-such-model",
        "type": "invalid_model",
        "param": None,
        "code": "1500",
    }


async def test_malformed_json_and_missing_fields(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), b"[1, 2", AUTH)
    assert status == 400 and json.loads(raw)["object"] == "error"
    status, _, raw = await post(session, url(emu), {"messages": []}, AUTH)
    detail = json.loads(raw)["message"]["detail"]
    assert (
        status == 422 and detail[0]["type"] == "missing" and detail[0]["loc"] == ["body", "model"]
    )


async def test_rate_limit_headers(emu: Emulator, session: aiohttp.ClientSession) -> None:
    _, first, _ = await post(session, url(emu), chat(), AUTH)
    limit = int(first.headers["ratelimitbysize-limit"])
    cost = int(first.headers["ratelimitbysize-query-cost"])
    # The bucket refills continuously, so only the first answer's figure is exact.
    assert int(first.headers["ratelimitbysize-remaining"]) == limit - cost
    assert int(first.headers["ratelimitbysize-query-cost"]) > 0
    assert 0 < int(first.headers["ratelimitbysize-reset"]) <= 60
    assert (
        "x-ratelimitbysize-remaining-month" in first.headers
        and "mistral-correlation-id" in first.headers
    )


async def test_triggers(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat("[[refusal]]"), AUTH)
    data = json.loads(raw)
    assert status == 200 and data["choices"][0]["message"]["content"].startswith("t")
    status, _, raw = await post(session, url(emu), chat("[[context_length]]"), AUTH)
    body = json.loads(raw)
    assert status == 400 and "too large for model" in body["message"] and body["object"] == "error"
