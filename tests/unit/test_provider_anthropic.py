"""Anthropic Messages: build (both API versions), parse, classify, stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
    ContentFilterError,
    ContextLengthError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    RateLimitError,
    ServerError,
)
from flyllm.providers.anthropic import ANTHROPIC_BASE_URL, AnthropicProvider
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse, SseEvent
from flyllm.types import Message, Usage
from tests.fixtures import API_KEY, fixture_bytes, replay, response

NOW = 1_755_780_000.0  # 2025-08-21T12:40:00Z
ANTHROPIC = AnthropicProvider(clock=lambda: NOW)
ENDPOINT = Endpoint("claude-sonnet-4-5", API_KEY, ANTHROPIC_BASE_URL)
NEW_API = Endpoint("claude-sonnet-4-5", API_KEY, ANTHROPIC_BASE_URL, api_version="2026-10-21")
CHAT = [
    Message("system", "You are terse."),
    Message("user", "Hello"),
    Message("system", "Answer in English."),
    Message("user", "Again"),
    Message("assistant", "Hi"),
]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- build ----------------------------------------------------------------------------------


def test_build_url_headers_system_and_default_max_tokens() -> None:
    request = ANTHROPIC.build(ENDPOINT, CHAT, {})
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": API_KEY,
    }
    assert body_of(request) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": "Hi"},
        ],
    }
    assert request.notes == ()
    assert API_KEY not in repr(request)


def test_build_without_system_has_no_system_field() -> None:
    assert "system" not in body_of(ANTHROPIC.build(ENDPOINT, [Message("user", "x")], {}))


def test_build_translates_known_params_under_2023_06_01() -> None:
    params = {
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 20,
        "stop": ["\n\nHuman:"],
    }
    request = ANTHROPIC.build(ENDPOINT, CHAT, params)
    body = body_of(request)
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.8
    assert body["top_k"] == 20
    assert body["stop_sequences"] == ["\n\nHuman:"]
    assert "stop" not in body
    assert request.notes == ()


def test_build_clamps_temperature_and_leaves_out_seed() -> None:
    request = ANTHROPIC.build(ENDPOINT, CHAT, {"temperature": 1.7, "seed": 3, "top_p": -1.0})
    body = body_of(request)
    assert body["temperature"] == 1.0
    assert body["top_p"] == 0.0
    assert "seed" not in body
    assert request.notes == (
        "temperature 1.7 clamped to 1.0 for anthropic",
        "seed is not supported by anthropic; left out",
        "top_p -1.0 clamped to 0.0 for anthropic",
    )


def test_build_2026_10_21_leaves_out_sampling_params() -> None:
    params = {"temperature": 0.5, "top_p": 0.9, "top_k": 5, "max_tokens": 10, "stop": ["x"]}
    request = ANTHROPIC.build(NEW_API, CHAT, params)
    body = body_of(request)
    assert request.headers["anthropic-version"] == "2026-10-21"
    assert request.headers["x-api-key"] == API_KEY
    for key in ("temperature", "top_p", "top_k"):
        assert key not in body
    assert body["max_tokens"] == 10
    assert body["stop_sequences"] == ["x"]
    assert request.notes == (
        "temperature is not accepted by anthropic API 2026-10-21; left out",
        "top_p is not accepted by anthropic API 2026-10-21; left out",
        "top_k is not accepted by anthropic API 2026-10-21; left out",
    )


def test_build_unknown_params_top_level_and_extra_headers_last() -> None:
    endpoint = Endpoint(
        "claude-sonnet-4-5",
        API_KEY,
        ANTHROPIC_BASE_URL + "/",
        headers={"anthropic-beta": "context-1m-2025-08-07"},
    )
    params = {
        "metadata": {"user_id": "u1"},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
    }
    request = ANTHROPIC.build(endpoint, CHAT, params, stream=True)
    body = body_of(request)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert body["metadata"] == {"user_id": "u1"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["service_tier"] == "auto"
    assert body["stream"] is True
    assert "stream_options" not in body
    assert request.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert request.headers["accept"] == "text/event-stream"


# --- parse ----------------------------------------------------------------------------------


def test_parse_recorded_message() -> None:
    completion = ANTHROPIC.parse(
        response("anthropic", "message.json", 200, {"request-id": "req_1"})
    )
    assert completion.content == "Hi! My name is Claude."
    assert (completion.finish_reason, completion.raw_finish_reason) == ("stop", "end_turn")
    assert completion.usage == Usage(2095, 503, 2598, 0)
    assert completion.model == "claude-3-7-sonnet-20250219"
    assert completion.request_id == "req_1"


def test_parse_thinking_and_tool_use_blocks_with_cache_usage() -> None:
    completion = ANTHROPIC.parse(response("anthropic", "message_thinking_tool.json"))
    assert completion.content == "Let me look that up. One moment."
    assert (completion.finish_reason, completion.raw_finish_reason) == ("tool_calls", "tool_use")
    # prompt = input + cache creation + cache read; cached = the two cache counts
    assert completion.usage == Usage(472 + 1024 + 2048, 91, 472 + 1024 + 2048 + 91, 3072)


def test_parse_max_tokens_is_length() -> None:
    completion = ANTHROPIC.parse(response("anthropic", "message_max_tokens.json"))
    assert (completion.finish_reason, completion.raw_finish_reason) == ("length", "max_tokens")


@pytest.mark.parametrize(
    ("raw", "finish"),
    [
        ("stop_sequence", "stop"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "other"),
        ("brand_new_reason", "other"),
    ],
)
def test_parse_stop_reasons(raw: str, finish: str) -> None:
    body = {"content": [{"type": "text", "text": "x"}], "stop_reason": raw, "usage": {}}
    completion = ANTHROPIC.parse(HttpResponse(200, {}, json.dumps(body).encode()))
    assert (completion.finish_reason, completion.raw_finish_reason) == (finish, raw)


def test_parse_refusal_raises_content_filter_with_text() -> None:
    with pytest.raises(ContentFilterError) as info:
        ANTHROPIC.parse(response("anthropic", "message_refusal.json"))
    assert "I can't help with that." in str(info.value)
    assert info.value.partial_content == "I can't help with that."
    assert info.value.retryable is False


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"type":"message"}', b"null"])
def test_parse_unreadable_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        ANTHROPIC.parse(HttpResponse(200, {}, body))


def test_parse_error_status_raises() -> None:
    with pytest.raises(OverloadedError):
        ANTHROPIC.parse(response("anthropic", "error_overloaded.json", 529))


# --- classify_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls", "retryable"),
    [
        (400, "error_invalid_request.json", BadRequestError, False),
        (400, "error_prompt_too_long.json", ContextLengthError, False),
        (400, "error_credit_balance.json", QuotaError, True),
        (401, "error_auth.json", AuthenticationError, True),
        (402, "error_billing.json", QuotaError, True),
        (403, "error_permission.json", PermissionDeniedError, True),
        (404, "error_not_found.json", NotFoundError, True),
        (413, "error_request_too_large.json", BadRequestError, False),
        (429, "error_rate_limit.json", RateLimitError, True),
        (500, "error_api.json", ServerError, True),
        (529, "error_overloaded.json", OverloadedError, True),
    ],
)
def test_classify_table(status: int, name: str, cls: type[ProviderError], retryable: bool) -> None:
    err = ANTHROPIC.classify_error(response("anthropic", name, status))
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status == status
    assert err.provider == "anthropic"
    expected = json.loads(fixture_bytes("anthropic", name))["error"]["message"]
    assert err.message == expected


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (408, ProviderTimeoutError),
        (409, ServerError),
        (422, BadRequestError),
        (504, ProviderTimeoutError),
    ],
)
def test_classify_statuses_without_body(status: int, cls: type[ProviderError]) -> None:
    assert type(ANTHROPIC.classify_error(HttpResponse(status, {}, b""))) is cls


def test_request_id_from_header_then_body() -> None:
    with_header = response("anthropic", "error_not_found.json", 404, {"request-id": "req_hdr"})
    assert ANTHROPIC.classify_error(with_header).request_id == "req_hdr"
    body_only = response("anthropic", "error_not_found.json", 404)
    assert ANTHROPIC.classify_error(body_only).request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"


def test_x_should_retry_override() -> None:
    headers = {"x-should-retry": "false"}
    err = ANTHROPIC.classify_error(response("anthropic", "error_overloaded.json", 529, headers))
    assert isinstance(err, OverloadedError)
    assert err.retryable is False


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after-ms": "250.5"}, 0.2505),
        ({"retry-after": "Thu, 21 Aug 2025 12:40:45 GMT"}, 45.0),
        (
            {
                "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:05Z",
                "anthropic-ratelimit-tokens-remaining": "12000",
            },
            59.0,
        ),
        ({"anthropic-ratelimit-input-tokens-reset": "2025-08-21T14:40:30.5+02:00"}, 30.5),
        ({"anthropic-ratelimit-tokens-reset": "2025-08-21T12:39:00Z"}, 0.0),
        ({"anthropic-ratelimit-tokens-reset": "not a date"}, None),
        ({"retry-after": "2", "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z"}, 2.0),
    ],
)
def test_retry_after_hints(headers: dict[str, str], expected: float | None) -> None:
    err = ANTHROPIC.classify_error(response("anthropic", "error_rate_limit.json", 429, headers))
    assert err.retry_after == (pytest.approx(expected) if expected is not None else None)


def test_ratelimit_reset_only_on_429() -> None:
    headers = {"anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z"}
    err = ANTHROPIC.classify_error(response("anthropic", "error_api.json", 500, headers))
    assert err.retry_after is None


def test_non_json_error_body() -> None:
    err = ANTHROPIC.classify_error(HttpResponse(502, {}, b"<html><body>Bad gateway</body></html>"))
    assert isinstance(err, ServerError)
    assert err.message == "HTTP 502: Bad gateway"


def test_key_never_in_error_text() -> None:
    error = {"type": "authentication_error", "message": f"invalid x-api-key {API_KEY}"}
    body = json.dumps({"type": "error", "error": error})
    err = ANTHROPIC.classify_error(HttpResponse(401, {}, body.encode()))
    assert API_KEY not in str(err)
    assert API_KEY not in repr(err)


# --- stream ---------------------------------------------------------------------------------


def test_stream_recorded_basic() -> None:
    result = replay(ANTHROPIC.stream_parser(), [fixture_bytes("anthropic", "stream_basic.txt")])
    assert result.done
    assert result.deltas == ["Hello", " there", "!"]
    assert result.completion is not None
    assert result.completion.content == "Hello there!"
    assert result.completion.finish_reason == "stop"
    assert result.completion.usage == Usage(11, 6, 17, 0)
    assert result.completion.model == "claude-3-opus-latest"


def test_stream_thinking_is_skipped_and_usage_is_cumulative() -> None:
    result = replay(ANTHROPIC.stream_parser(), [fixture_bytes("anthropic", "stream_thinking.txt")])
    assert result.completion is not None
    assert result.completion.content == "27 × 453 = **12,231** ✅"
    # output_tokens 40 then 57 (cumulative): the last one, not 97
    assert result.completion.usage == Usage(336, 57, 393, 300)


def test_stream_tool_use_input_json_is_not_text() -> None:
    result = replay(ANTHROPIC.stream_parser(), [fixture_bytes("anthropic", "stream_tool_use.txt")])
    assert result.completion is not None
    assert result.completion.content == "Okay, let's check the weather for San Francisco, CA:"
    assert result.completion.finish_reason == "tool_calls"
    assert result.completion.usage == Usage(472, 89, 561, 0)


def test_stream_error_event_raises_overloaded() -> None:
    result = replay(ANTHROPIC.stream_parser(), [fixture_bytes("anthropic", "stream_error.txt")])
    assert isinstance(result.error, OverloadedError)
    assert result.error.message == "Overloaded"
    assert result.error.partial_content == "Hello"
    assert not result.done


@pytest.mark.parametrize(
    ("etype", "cls"),
    [
        ("overloaded_error", OverloadedError),
        ("rate_limit_error", RateLimitError),
        ("api_error", ServerError),
        ("invalid_request_error", BadRequestError),
        ("authentication_error", AuthenticationError),
        ("billing_error", QuotaError),
        ("timeout_error", ProviderTimeoutError),
        ("future_error", ServerError),
    ],
)
def test_stream_error_kinds(etype: str, cls: type[ProviderError]) -> None:
    data = json.dumps({"type": "error", "error": {"type": etype, "message": "m"}})
    with pytest.raises(cls) as info:
        ANTHROPIC.stream_parser().feed(SseEvent(data, "error"))
    assert info.value.status == 200


def test_stream_dispatches_on_data_type_without_event_names() -> None:
    data = fixture_bytes("anthropic", "stream_basic.txt").replace(b"event: ", b": event ")
    result = replay(ANTHROPIC.stream_parser(), [data])
    assert result.completion is not None
    assert result.completion.content == "Hello there!"


def test_stream_unknown_events_are_ignored() -> None:
    parser = ANTHROPIC.stream_parser()
    assert parser.feed(SseEvent('{"type":"brand_new","x":1}', "brand_new")) == ""
    assert parser.feed(SseEvent('{"type": "ping"}', "ping")) == ""


def test_stream_truncated_raises_interrupted_with_partial() -> None:
    result = replay(ANTHROPIC.stream_parser(), [fixture_bytes("anthropic", "stream_truncated.txt")])
    assert result.error is not None
    assert result.error.kind.value == "stream_interrupted"
    assert result.error.partial_content == "Hello wor"
    assert result.error.retryable is True


def test_stream_refusal_raises_at_finish() -> None:
    parser = ANTHROPIC.stream_parser()
    delta = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "No."}}
    parser.feed(SseEvent(json.dumps(delta), "content_block_delta"))
    stop = {"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {}}
    parser.feed(SseEvent(json.dumps(stop), "message_delta"))
    parser.feed(SseEvent('{"type":"message_stop"}', "message_stop"))
    with pytest.raises(ContentFilterError) as info:
        parser.finish()
    assert info.value.partial_content == "No."
