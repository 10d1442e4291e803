"""Anthropic Messages dialect on the wire, both API versions."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, generate_text
from tests.emulator.conftest import anthropic_events, post

KEY = "sk-ant-good"
V2023 = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
V2026 = {"Authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}


def message(content: Any = "Hello there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        "anthropic", api_keys={KEY}, models={"claude-sonnet-4-5"}, seed=2
    ) as instance:
        yield instance


def url(emu: Emulator) -> str:
    return emu.base_url + "/v1/messages"


def error_of(raw: bytes, response: aiohttp.ClientResponse) -> dict[str, Any]:
    body = json.loads(raw)
    assert body["type"] == "error" and set(body) == {"type", "error", "request_id"}
    assert body["request_id"] == response.headers["request-id"]
    error: dict[str, Any] = body["error"]
    return error


async def test_base_url_is_the_root(emu: Emulator) -> None:
    assert emu.base_url == emu.url == f"http://127.0.0.1:{emu.port}"


@pytest.mark.parametrize("headers", [V2023, V2026])
async def test_non_stream_answer_shape(
    emu: Emulator, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    body = message([{"type": "text", "text": "Hello"}], system="Be brief and kind.")
    status, _, raw = await post(session, url(emu), body, headers)
    assert status == 200
    data = json.loads(raw)
    assert re.fullmatch(r"msg_01[A-Za-z0-9]{22}", data["id"])
    assert (
        data["type"] == "message"
        and data["role"] == "assistant"
        and data["model"] == "claude-sonnet-4-5"
    )
    text = " ".join(generate_text("Hello", seed=2))
    assert data["content"] == [{"type": "text", "text": text}]
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    assert data["usage"]["input_tokens"] == (4 + 3) + (1 + 3)
    assert data["usage"]["output_tokens"] == len(text.split())
    assert "total_tokens" not in data["usage"]


async def test_stream_event_sequence(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, response, raw = await post(session, url(emu), message(stream=True), V2023)
    assert status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = anthropic_events(raw)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert (
        start["content"] == []
        and start["stop_reason"] is None
        and start["usage"]["input_tokens"] == 5
    )
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == " ".join(generate_text("Hello there", seed=2)) and deltas == len(text.split())
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == deltas and final["usage"]["input_tokens"] == 5
    assert b"[DONE]" not in raw


async def test_max_tokens_and_stop_sequences(emu: Emulator, session: aiohttp.ClientSession) -> None:
    words = generate_text("Hello there", seed=2)
    _, _, raw = await post(session, url(emu), message(max_tokens=2), V2023)
    data = json.loads(raw)
    assert data["stop_reason"] == "max_tokens" and data["usage"]["output_tokens"] == 2
    assert data["content"][0]["text"] == " ".join(words[:2])
    _, _, raw = await post(session, url(emu), message(stop_sequences=["zzz", words[3]]), V2023)
    data = json.loads(raw)
    assert data["stop_reason"] == "stop_sequence" and data["stop_sequence"] == words[3]
    assert data["content"][0]["text"] == " ".join(words[:3]) + " "
    assert data["usage"]["output_tokens"] == 3
    _, _, raw = await post(
        session, url(emu), message(stop_sequences=[words[3]], stream=True), V2023
    )
    final = anthropic_events(raw)[-2][1]
    assert final["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": words[3]}
    assert final["usage"]["output_tokens"] == 3


async def test_auth_missing_wrong_and_precedence(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, response, raw = await post(
        session, url(emu), message(), {"anthropic-version": "2023-06-01"}
    )
    assert status == 401 and error_of(raw, response)["type"] == "authentication_error"
    wrong = {"x-api-key": "nope", "anthropic-version": "2023-06-01"}
    status, response, raw = await post(session, url(emu), message(), wrong)
    assert status == 401 and error_of(raw, response)["message"] == "invalid x-api-key"
    status, _, _ = await post(session, url(emu), message(), V2026)
    assert status == 200
    both_good_key = {**V2026, "x-api-key": KEY, "Authorization": "Bearer nope"}
    status, _, _ = await post(session, url(emu), message(), both_good_key)
    assert status == 200
    both_bad_key = {**V2026, "x-api-key": "nope"}
    status, _, _ = await post(session, url(emu), message(), both_bad_key)
    assert status == 401
    assert [r.api_key for r in emu.requests] == [None, "nope", KEY, KEY, "nope"]


async def test_version_header_required_and_checked(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, response, raw = await post(session, url(emu), message(), {"x-api-key": KEY})
    error = error_of(raw, response)
    assert status == 400 and error == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    status, _, _ = await post(
        session, url(emu), message(), {"x-api-key": KEY, "anthropic-version": "2024-01-01"}
    )
    assert status == 400


@pytest.mark.parametrize("name", ["temperature", "top_p", "top_k"])
async def test_sampling_parameters_per_version(
    emu: Emulator, session: aiohttp.ClientSession, name: str
) -> None:
    status, _, _ = await post(session, url(emu), message(**{name: 1}), V2023)
    assert status == 200
    status, response, raw = await post(session, url(emu), message(**{name: 1}), V2026)
    error = error_of(raw, response)
    assert status == 400 and error["message"] == f"{name}: Extra inputs are not permitted"


async def test_2026_block_rules(emu: Emulator, session: aiohttp.ClientSession) -> None:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "d"},
    }
    body = message()
    body["messages"] += [
        {"role": "assistant", "content": [document]},
        {"role": "user", "content": "go"},
    ]
    assert (await post(session, url(emu), body, V2023))[0] == 200
    status, response, raw = await post(session, url(emu), body, V2026)
    assert status == 400 and "document" in error_of(raw, response)["message"]
    cited = message([{"type": "text", "text": "x", "citations": [{"type": "char_location"}]}])
    assert (await post(session, url(emu), cited, V2026))[0] == 400
    assert (await post(session, url(emu), cited, V2023))[0] == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
        ),
        (
            {
                **message(),
                "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}],
            },
            'Unexpected role "system"',
        ),
        (message(max_tokens=0), "greater than or equal to 1"),
        (message(foo=1), "foo: Extra inputs are not permitted"),
        ({**message(), "messages": []}, "messages"),
    ],
)
async def test_validation_errors(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], needle: str
) -> None:
    status, response, raw = await post(session, url(emu), body, V2023)
    error = error_of(raw, response)
    assert status == 400 and error["type"] == "invalid_request_error" and needle in error["message"]


async def test_unknown_model_and_malformed_json(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, response, raw = await post(session, url(emu), {**message(), "model": "claude-0"}, V2023)
    assert status == 404 and error_of(raw, response) == {
        "type": "not_found_error",
        "message": "model: claude-0",
    }
    status, response, raw = await post(session, url(emu), b"{not json", V2023)
    assert status == 400 and error_of(raw, response)["type"] == "invalid_request_error"


async def test_request_id_and_rate_limit_headers(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    _, first, _ = await post(session, url(emu), message(), V2023)
    _, second, _ = await post(session, url(emu), message(), V2023)
    assert re.fullmatch(r"req_011C[A-Za-z0-9]{20}", first.headers["request-id"])
    assert "x-request-id" not in first.headers
    for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
        reset = first.headers[f"anthropic-ratelimit-{kind}-reset"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", reset)
        assert datetime.strptime(reset, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc
        ) >= datetime.now(timezone.utc).replace(microsecond=0)
        assert int(first.headers[f"anthropic-ratelimit-{kind}-limit"]) > 0
    assert int(first.headers["anthropic-ratelimit-tokens-remaining"]) % 1000 == 0
    # The buckets refill continuously: only the first answer's figure is exact.
    limit = int(first.headers["anthropic-ratelimit-requests-limit"])
    assert int(first.headers["anthropic-ratelimit-requests-remaining"]) == limit - 1
    assert int(second.headers["anthropic-ratelimit-requests-remaining"]) <= limit - 1


async def test_refusal_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    _, _, raw = await post(session, url(emu), message("[[refusal]] now"), V2023)
    data = json.loads(raw)
    assert data["stop_reason"] == "refusal"
    assert data["usage"]["output_tokens"] == len(data["content"][0]["text"].split())
    _, _, raw = await post(session, url(emu), message("[[refusal]] now", stream=True), V2023)
    assert anthropic_events(raw)[-2][1]["delta"]["stop_reason"] == "refusal"


async def test_context_length_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, response, raw = await post(
        session, url(emu), message("x", system="[[context_length]]"), V2023
    )
    error = error_of(raw, response)
    assert status == 400 and error["type"] == "invalid_request_error"
    assert re.fullmatch(r"prompt is too long: \d+ tokens > 200000 maximum", error["message"])
