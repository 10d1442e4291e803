"""OpenAI Chat Completions dialect on the wire."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, generate_text
from tests.emulator.conftest import post, sse_data, sse_events

KEY = "sk-good-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def chat(content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("openai", api_keys={KEY}, models={"gpt-4o-mini"}, seed=5) as instance:
        yield instance


def url(emu: Emulator) -> str:
    return emu.base_url + "/chat/completions"


async def test_base_url_follows_the_sdk_convention(emu: Emulator) -> None:
    assert emu.base_url == f"http://127.0.0.1:{emu.port}/v1"
    assert emu.url == f"http://127.0.0.1:{emu.port}"


async def test_non_stream_answer_shape(emu: Emulator, session: aiohttp.ClientSession) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
            },
        ],
    }
    status, response, raw = await post(session, url(emu), body, AUTH)
    assert status == 200 and response.content_type == "application/json"
    data = json.loads(raw)
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", data["id"])
    assert data["object"] == "chat.completion" and data["model"] == "gpt-4o-mini"
    (choice,) = data["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    message = choice["message"]
    assert message["role"] == "assistant" and message["refusal"] is None
    assert message["content"] == " ".join(generate_text("Hello\nthere", seed=5))
    usage = data["usage"]
    assert usage["prompt_tokens"] == (3 + 3) + (2 + 3)
    assert usage["completion_tokens"] == len(message["content"].split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_stream_with_include_usage(emu: Emulator, session: aiohttp.ClientSession) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    status, response, raw = await post(session, url(emu), body, AUTH)
    assert status == 200 and response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert all(event.startswith(b"data: ") and b"\n" not in event for event in sse_events(raw))
    chunks = sse_data(raw)
    assert chunks[-1] == "[DONE]"
    first, *content, finish, usage_chunk, _ = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert {c["id"] for c in chunks[:-1]} == {first["id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == " ".join(generate_text("Hello there", seed=5))
    assert len(content) == len(text.split())
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(content)
    assert "usage" not in finish


async def test_stream_without_include_usage_has_no_usage_chunk(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    _, _, raw = await post(session, url(emu), chat(stream=True), AUTH)
    chunks = sse_data(raw)
    assert chunks[-1] == "[DONE]" and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks[:-1])


@pytest.mark.parametrize("limit_field", ["max_completion_tokens", "max_tokens"])
async def test_max_tokens_gives_length(
    emu: Emulator, session: aiohttp.ClientSession, limit_field: str
) -> None:
    _, _, raw = await post(session, url(emu), {**chat(), limit_field: 3}, AUTH)
    data = json.loads(raw)
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["choices"][0]["message"]["content"] == " ".join(generate_text("Hello there", 5)[:3])
    assert data["usage"]["completion_tokens"] == 3


async def test_stop_sequence_gives_stop_and_stream_matches(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    words = generate_text("Hello there", seed=5)
    full = " ".join(words)
    _, _, raw = await post(session, url(emu), chat(stop=words[4]), AUTH)
    data = json.loads(raw)
    content = data["choices"][0]["message"]["content"]
    assert content == full[: full.index(words[4])]
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == 4
    _, _, raw = await post(session, url(emu), chat(stop=[words[4]], stream=True), AUTH)
    deltas = [c["choices"][0]["delta"].get("content", "") for c in sse_data(raw)[1:-1]]
    assert "".join(deltas) == content


async def test_missing_and_wrong_keys(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat())
    error = json.loads(raw)["error"]
    assert status == 401 and set(error) == {"message", "type", "param", "code"}
    assert error["code"] is None and "didn't provide an API key" in error["message"]
    status, _, raw = await post(
        session, url(emu), chat(), {"Authorization": "Bearer sk-wrong-key-99999999"}
    )
    error = json.loads(raw)["error"]
    assert status == 401 and error["code"] == "invalid_api_key"
    assert "sk-wrong-key-99999999" not in error["message"] and error["message"].count("9999") == 1


@pytest.mark.parametrize(
    ("body", "param", "code", "needle"),
    [
        (chat(foo=1), None, None, "Unrecognized request argument supplied: foo"),
        ({"model": "gpt-4o-mini"}, "messages", "missing_required_parameter", "'messages'"),
        ({"messages": [{"role": "user", "content": "x"}]}, None, None, "you must provide a model"),
        (
            chat(stream_options={"include_usage": True}),
            "stream_options",
            None,
            "only allowed when 'stream'",
        ),
        (
            chat(stop=["a", "b", "c", "d", "e"]),
            "stop",
            "array_above_max_length",
            "maximum length 4",
        ),
        (chat(max_completion_tokens=0), "max_completion_tokens", "integer_below_min_value", ">= 1"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
            "'robot'",
        ),
    ],
)
async def test_validation_errors(
    emu: Emulator,
    session: aiohttp.ClientSession,
    body: dict[str, Any],
    param: str | None,
    code: str | None,
    needle: str,
) -> None:
    status, _, raw = await post(session, url(emu), body, AUTH)
    error = json.loads(raw)["error"]
    assert status == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code and needle in error["message"]


async def test_unknown_model_and_malformed_json(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), {**chat(), "model": "gpt-nope"}, AUTH)
    error = json.loads(raw)["error"]
    assert status == 404 and error["code"] == "model_not_found" and "gpt-nope" in error["message"]
    status, _, raw = await post(session, url(emu), b'{"model": "gpt-4o-mini", "messa', AUTH)
    error = json.loads(raw)["error"]
    assert status == 400 and "could not parse the JSON body" in error["message"]


async def test_unknown_url(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, emu.base_url + "/completions", chat(), AUTH)
    assert status == 404 and "Invalid URL (POST /v1/completions)" in raw.decode()


async def test_request_id_and_rate_limit_headers(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    remaining = []
    for _ in range(3):
        _, response, _ = await post(session, url(emu), chat(), AUTH)
        headers = response.headers
        assert re.fullmatch(r"req_[0-9a-f]{32}", headers["x-request-id"])
        assert headers["openai-processing-ms"].isdigit()
        assert headers["x-ratelimit-limit-requests"] == "30000"
        assert re.fullmatch(r"\d+(ms|s)|\d+m\d+(\.\d+)?s", headers["x-ratelimit-reset-requests"])
        assert re.fullmatch(
            r"\d+(\.\d+)?(ms|s)|\d+m\d+(\.\d+)?s", headers["x-ratelimit-reset-tokens"]
        )
        remaining.append(int(headers["x-ratelimit-remaining-requests"]))
    # The bucket refills continuously (500 requests/s): only the first figure is exact.
    assert remaining[0] == 30000 - 1 and max(remaining) <= 30000 - 1
    _, response, _ = await post(session, url(emu), chat(), {"Authorization": "Bearer nope"})
    assert (
        "x-ratelimit-remaining-requests" in response.headers and "x-request-id" in response.headers
    )


async def test_refusal_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    _, _, raw = await post(session, url(emu), chat("please [[refusal]]"), AUTH)
    data = json.loads(raw)
    message = data["choices"][0]["message"]
    assert message["content"] is None and message["refusal"]
    assert data["usage"]["completion_tokens"] == len(message["refusal"].split())
    _, _, raw = await post(session, url(emu), chat("please [[refusal]]", stream=True), AUTH)
    chunks = sse_data(raw)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None, "refusal": ""}
    assert (
        "".join(c["choices"][0]["delta"].get("refusal", "") for c in chunks[1:-1])
        == message["refusal"]
    )


async def test_context_length_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat("[[context_length]] long"), AUTH)
    error = json.loads(raw)["error"]
    assert (
        status == 400
        and error["code"] == "context_length_exceeded"
        and error["param"] == "messages"
    )
    assert "maximum context length is 128000 tokens" in error["message"]


async def test_blocked_trigger_is_a_normal_answer_here(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), chat("[[blocked]]"), AUTH)
    assert status == 200 and json.loads(raw)["choices"][0]["finish_reason"] == "stop"
