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


# --- tool use -----------------------------------------------------------------------------------

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK = "Weather in Oslo and Lima?"


def tool_message(messages: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "messages": messages or [{"role": "user", "content": ASK}],
        "tools": [WEATHER_TOOL],
        **extra,
    }


def use(call_id: str, city: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": city}}


def result(call_id: str, content: Any = "12 C", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


def answered(*results: dict[str, Any], calls: list[dict[str, Any]] | None = None) -> Any:
    calls = calls if calls is not None else [use("toolu_01A", "Oslo"), use("toolu_01B", "Lima")]
    return [
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": calls},
        {"role": "user", "content": list(results)},
    ]


async def test_tool_calls_parallel_and_single(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), tool_message(), V2023)
    data = json.loads(raw)
    assert status == 200 and data["stop_reason"] == "tool_use"
    assert [b["type"] for b in data["content"]] == ["tool_use", "tool_use"]
    assert [b["input"] for b in data["content"]] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert all(re.fullmatch(r"toolu_01[A-Za-z0-9]{22}", b["id"]) for b in data["content"])
    single = tool_message(tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    data = json.loads((await post(session, url(emu), single, V2026))[2])
    assert [b["input"] for b in data["content"]] == [{"city": "Oslo"}]


async def test_tool_results_are_quoted(emu: Emulator, session: aiohttp.ClientSession) -> None:
    messages = answered(
        result("toolu_01A", [{"type": "text", "text": "12 C"}]),
        result("toolu_01B", "no data", is_error=True),
        {"type": "text", "text": "Be brief."},
    )
    status, _, raw = await post(session, url(emu), tool_message(messages), V2023)
    data = json.loads(raw)
    assert status == 200 and data["stop_reason"] == "end_turn", data
    assert data["content"] == [
        {
            "type": "text",
            "text": "Tool results: get_weather returned 12 C; get_weather failed with no data.",
        }
    ]


async def test_tool_stream_sends_input_json_in_pieces(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), tool_message(stream=True), V2023)
    events = anthropic_events(raw)
    assert status == 200
    starts = [d for name, d in events if name == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1]
    assert all(s["content_block"]["input"] == {} for s in starts)
    for start in starts:
        pieces = [
            d["delta"]["partial_json"]
            for name, d in events
            if name == "content_block_delta" and d["index"] == start["index"]
        ]
        assert pieces[0] == "" and len(pieces) >= 3
        assert json.loads("".join(pieces))["city"] in ("Oslo", "Lima")
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        (
            answered(result("toolu_01A")),
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately "
            "after: toolu_01B.",
        ),
        (
            answered(result("toolu_01A"), result("toolu_01B"), result("toolu_01C")),
            "messages.2.content.2: unexpected `tool_use_id` found in `tool_result` blocks: "
            "toolu_01C.",
        ),
        (
            answered(result("toolu_01A"), result("toolu_01A"), result("toolu_01B")),
            "messages.2.content.1: each tool_use must have a single result.",
        ),
        (
            answered(result("toolu_01A"), {"type": "text", "text": "x"}, result("toolu_01B")),
            "messages.2: Did not find 2 `tool_result` block(s) at the beginning",
        ),
        (
            answered(result("t1"), result("t1"), calls=[use("t1", "Oslo"), use("t1", "Lima")]),
            "messages.1.content.1: `tool_use` ids must be unique",
        ),
        (
            answered(result("call.1"), calls=[use("call.1", "Oslo")]),
            "messages.1.content.0.tool_use.id: String should match pattern",
        ),
        (
            answered(
                result("t1"),
                calls=[{"type": "text", "text": ""}, use("t1", "Oslo")],
            ),
            "messages: text content blocks must be non-empty",
        ),
        (
            answered(
                result("t1"),
                calls=[{"type": "text", "text": " \n"}, use("t1", "Oslo")],
            ),
            "messages: text content blocks must contain non-whitespace text",
        ),
        (
            [{"role": "user", "content": [result("toolu_01A")]}],
            "messages.0.content.0: unexpected `tool_use_id`",
        ),
    ],
)
async def test_tool_pairing_rules(
    emu: Emulator, session: aiohttp.ClientSession, messages: Any, needle: str
) -> None:
    status, response, raw = await post(session, url(emu), tool_message(messages), V2023)
    assert status == 400
    error = error_of(raw, response)
    assert error["type"] == "invalid_request_error" and needle in error["message"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"tool_choice": {"type": "none", "disable_parallel_tool_use": True}}, "Extra inputs"),
        ({"tool_choice": {"type": "tool", "name": "nope"}}, "Tool 'nope' not found"),
        ({"tool_choice": {"type": "required"}}, "does not match any of the expected tags"),
        ({"tools": [{"name": "a b", "input_schema": {"type": "object"}}]}, "tools.0.custom.name"),
        ({"tools": [{"name": "a"}]}, "tools.0.custom.input_schema: Field required"),
        ({"thinking": {"type": "sometimes"}}, "thinking: Input tag"),
    ],
)
async def test_tool_offer_validation(
    emu: Emulator, session: aiohttp.ClientSession, extra: dict[str, Any], needle: str
) -> None:
    status, response, raw = await post(session, url(emu), tool_message(**extra), V2023)
    assert status == 400 and needle in error_of(raw, response)["message"]


async def test_model_without_tools(session: aiohttp.ClientSession) -> None:
    async with Emulator("anthropic", api_keys={KEY}) as notools:
        body = {**tool_message(), "model": "claude-notools"}
        status, response, raw = await post(session, url(notools), body, V2023)
    error = error_of(raw, response)
    assert status == 400 and error["message"] == "tools: claude-notools does not support tool use"


async def test_thinking_blocks_are_signed_and_checked(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    raw = (await post(session, url(emu), tool_message(thinking=thinking), V2023))[2]
    content = json.loads(raw)["content"]
    assert content[0]["type"] == "thinking" and content[0]["signature"]
    calls = content[1:]
    results = [result(b["id"]) for b in calls]
    back = answered(*results, calls=content)
    status, _, raw = await post(session, url(emu), tool_message(back, thinking=thinking), V2023)
    assert status == 200 and json.loads(raw)["content"][0]["type"] == "thinking"

    without = answered(*results, calls=calls)
    status, response, raw = await post(
        session, url(emu), tool_message(without, thinking=thinking), V2023
    )
    assert status == 400
    assert (
        "Expected `thinking` or `redacted_thinking`, but found `tool_use`"
        in (error_of(raw, response)["message"])
    )
    tampered = answered(*results, calls=[{**content[0], "thinking": "edited"}, *calls])
    status, response, raw = await post(
        session, url(emu), tool_message(tampered, thinking=thinking), V2023
    )
    assert status == 400
    assert error_of(raw, response)["message"] == (
        "messages.1.content.0: Invalid `signature` in `thinking` block"
    )


async def test_thinking_stream_sends_signature_delta(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    body = tool_message(stream=True, thinking={"type": "enabled", "budget_tokens": 1024})
    events = anthropic_events((await post(session, url(emu), body, V2023))[2])
    kinds = [d["delta"]["type"] for name, d in events if name == "content_block_delta"]
    assert kinds[:3] == ["thinking_delta", "thinking_delta", "signature_delta"]
    assert "input_json_delta" in kinds
