"""OpenAI Chat Completions (and the openai_compatible variant): build, parse, classify, stream."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
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
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse, SseEvent
from flyllm.providers.openai import OPENAI_BASE_URL, OpenAIProvider
from flyllm.types import Message, Usage
from tests.fixtures import API_KEY, fixture_bytes, replay, response

NOW = 1_750_000_000.0
OPENAI = OpenAIProvider(clock=lambda: NOW)
COMPAT = OpenAIProvider.compatible(clock=lambda: NOW)
ENDPOINT = Endpoint("gpt-4o-mini", API_KEY, OPENAI_BASE_URL)
LOCAL = Endpoint("llama3", "", "http://127.0.0.1:8000/v1/")
IN_30_SECONDS = format_datetime(datetime.fromtimestamp(NOW + 30, timezone.utc), usegmt=True)
CHAT = [
    Message("system", "You are terse."),
    Message("user", "Hello!"),
    Message("assistant", "Hi."),
    Message("user", "How are you?"),
]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- build ----------------------------------------------------------------------------------


def test_build_url_headers_and_messages() -> None:
    request = OPENAI.build(ENDPOINT, CHAT, {})
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers == {
        "content-type": "application/json",
        "authorization": f"Bearer {API_KEY}",
    }
    assert body_of(request) == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello!"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "How are you?"},
        ],
    }
    assert request.notes == ()
    assert API_KEY not in repr(request)


def test_build_body_is_compact_utf8() -> None:
    request = OPENAI.build(ENDPOINT, [Message("user", "café ☕")], {"temperature": 0.5})
    assert (
        request.body
        == (
            '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"café ☕"}],'
            '"temperature":0.5}'
        ).encode()
    )


def test_build_trailing_slash_and_custom_base_url() -> None:
    endpoint = Endpoint("gpt-4o", API_KEY, "https://proxy.example/openai/v1/")
    assert (
        OPENAI.build(endpoint, CHAT, {}).url == "https://proxy.example/openai/v1/chat/completions"
    )


def test_build_translates_every_known_param() -> None:
    params = {
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
    }
    request = OPENAI.build(ENDPOINT, CHAT, params)
    body = body_of(request)
    assert body["max_completion_tokens"] == 64
    assert "max_tokens" not in body
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["stop"] == ["\n\n"]
    assert body["seed"] == 7
    assert request.notes == ()


def test_build_leaves_out_top_k_and_clamps_with_notes() -> None:
    params = {"top_k": 40, "temperature": 2.5, "top_p": 1.5, "stop": list("abcdef")}
    request = OPENAI.build(ENDPOINT, CHAT, params)
    body = body_of(request)
    assert "top_k" not in body
    assert body["temperature"] == 2.0
    assert body["top_p"] == 1.0
    assert body["stop"] == ["a", "b", "c", "d"]
    assert request.notes == (
        "top_k is not supported by openai; left out",
        "temperature 2.5 clamped to 2.0 for openai",
        "top_p 1.5 clamped to 1.0 for openai",
        "stop has 6 sequences but openai accepts 4; kept the first 4",
    )


def test_build_negative_temperature_clamped_to_zero() -> None:
    request = OPENAI.build(ENDPOINT, CHAT, {"temperature": -0.5})
    assert body_of(request)["temperature"] == 0.0
    assert request.notes == ("temperature -0.5 clamped to 0.0 for openai",)


def test_build_unknown_params_go_to_top_level_unchanged() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    params = {"presence_penalty": 0.5, "response_format": fmt, "user": "u-1", "max_tokens": 5}
    body = body_of(OPENAI.build(ENDPOINT, CHAT, params))
    assert body["presence_penalty"] == 0.5
    assert body["response_format"] == fmt
    assert body["user"] == "u-1"
    assert body["max_completion_tokens"] == 5


def test_build_reserved_keys_are_not_overridden() -> None:
    request = OPENAI.build(ENDPOINT, CHAT, {"stream": True, "model": "other", "messages": []})
    body = body_of(request)
    assert "stream" not in body
    assert body["model"] == "gpt-4o-mini"
    assert len(body["messages"]) == 4
    assert request.notes == (
        "stream is set by flyllm; left out",
        "model is set by flyllm; left out",
        "messages is set by flyllm; left out",
    )


def test_build_none_params_are_skipped() -> None:
    request = OPENAI.build(ENDPOINT, CHAT, {"temperature": None, "seed": None})
    assert "temperature" not in body_of(request)
    assert "seed" not in body_of(request)


def test_build_stream_variant() -> None:
    request = OPENAI.build(ENDPOINT, CHAT, {}, stream=True)
    body = body_of(request)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert request.headers["accept"] == "text/event-stream"


def test_build_stream_options_given_by_caller_are_merged() -> None:
    params = {"stream_options": {"include_obfuscation": False}}
    body = body_of(OPENAI.build(ENDPOINT, CHAT, params, stream=True))
    assert body["stream_options"] == {"include_usage": True, "include_obfuscation": False}


def test_build_endpoint_headers_come_last_and_replace_case_insensitively() -> None:
    endpoint = Endpoint(
        "gpt-4o",
        API_KEY,
        OPENAI_BASE_URL,
        headers={"OpenAI-Organization": "org-1", "Authorization": "Bearer other"},
    )
    headers = OPENAI.build(endpoint, CHAT, {}).headers
    assert headers["OpenAI-Organization"] == "org-1"
    assert headers["Authorization"] == "Bearer other"
    assert "authorization" not in headers


def test_compatible_uses_max_tokens_keeps_all_stops_and_sends_no_empty_auth() -> None:
    request = COMPAT.build(LOCAL, CHAT, {"max_tokens": 10, "stop": list("abcdef")}, stream=True)
    body = body_of(request)
    assert request.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert body["max_tokens"] == 10
    assert "max_completion_tokens" not in body
    assert body["stop"] == list("abcdef")
    assert body["stream_options"] == {"include_usage": True}
    assert "authorization" not in request.headers
    assert request.notes == ()


def test_compatible_has_no_default_base_url() -> None:
    assert COMPAT.name == "openai_compatible"
    assert COMPAT.default_base_url == ""
    assert COMPAT.requires_base_url
    assert not OPENAI.requires_base_url
    with pytest.raises(ConfigurationError, match="base_url"):
        COMPAT.build(Endpoint("m", "", ""), CHAT, {})


def test_compatible_with_key_sends_bearer() -> None:
    endpoint = Endpoint("m", "local-key", "http://127.0.0.1:1/v1")
    assert COMPAT.build(endpoint, CHAT, {}).headers["authorization"] == "Bearer local-key"


# --- parse ----------------------------------------------------------------------------------


def test_parse_recorded_completion() -> None:
    completion = OPENAI.parse(
        response("openai", "chat_completion.json", 200, {"x-request-id": "r1"})
    )
    assert completion.content == "Hello! How can I assist you today?"
    assert completion.finish_reason == "stop"
    assert completion.raw_finish_reason == "stop"
    assert completion.usage == Usage(19, 10, 29, 0)
    assert completion.model == "gpt-5.4"
    assert completion.request_id == "r1"


def test_parse_tool_calls_with_null_content_and_cached_tokens() -> None:
    completion = OPENAI.parse(response("openai", "tool_calls.json"))
    assert completion.content == ""
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(82, 17, 99, 64)


def test_parse_length() -> None:
    completion = OPENAI.parse(response("openai", "length.json"))
    assert (completion.finish_reason, completion.raw_finish_reason) == ("length", "length")
    assert completion.content == "Once upon a"


def test_parse_refusal_raises_content_filter_with_the_text() -> None:
    with pytest.raises(ContentFilterError) as info:
        OPENAI.parse(response("openai", "refusal.json"))
    assert "I'm sorry, I can't assist with that request." in str(info.value)
    assert info.value.retryable is False
    assert info.value.provider == "openai"


def test_parse_content_filter_finish_raises_with_partial_content() -> None:
    with pytest.raises(ContentFilterError) as info:
        OPENAI.parse(response("openai", "content_filter.json"))
    assert info.value.partial_content == "Here is how"


def test_parse_unknown_finish_reason_is_other() -> None:
    body = b'{"choices":[{"index":0,"message":{"content":"x"},"finish_reason":"weird"}]}'
    completion = OPENAI.parse(HttpResponse(200, {}, body))
    assert (completion.finish_reason, completion.raw_finish_reason) == ("other", "weird")
    assert completion.usage == Usage()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1,2]", b'{"choices":[]}', b'{"object":"chat.completion"}', b'{"choices":[1]}'],
)
def test_parse_unreadable_bodies_are_malformed_and_retryable(body: bytes) -> None:
    with pytest.raises(MalformedResponseError) as info:
        OPENAI.parse(HttpResponse(200, {"x-request-id": "r9"}, body))
    assert info.value.retryable is True
    assert info.value.request_id == "r9"


def test_parse_error_status_raises_the_classified_error() -> None:
    with pytest.raises(RateLimitError):
        OPENAI.parse(response("openai", "error_rate_limit.json", 429))


def test_parse_200_with_error_object_raises_it() -> None:
    body = b'{"error":{"message":"model overloaded","type":"server_error","code":null}}'
    with pytest.raises(OverloadedError):
        COMPAT.parse(HttpResponse(200, {}, body))


# --- classify_error -------------------------------------------------------------------------

EMPTY = b""


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable"),
    [
        (400, fixture_bytes("openai", "error_bad_request.json"), BadRequestError, False),
        (400, fixture_bytes("openai", "error_context_length.json"), ContextLengthError, False),
        (401, fixture_bytes("openai", "error_invalid_key.json"), AuthenticationError, True),
        (403, fixture_bytes("openai", "error_region.json"), PermissionDeniedError, True),
        (404, fixture_bytes("openai", "error_model_not_found.json"), NotFoundError, True),
        (408, EMPTY, ProviderTimeoutError, True),
        (409, EMPTY, ServerError, True),
        (413, fixture_bytes("openai", "bad_gateway.html"), BadRequestError, False),
        (422, fixture_bytes("openai", "error_bad_request.json"), BadRequestError, False),
        (429, fixture_bytes("openai", "error_rate_limit.json"), RateLimitError, True),
        (429, fixture_bytes("openai", "error_insufficient_quota.json"), QuotaError, True),
        (500, fixture_bytes("openai", "error_server.json"), ServerError, True),
        (502, fixture_bytes("openai", "bad_gateway.html"), ServerError, True),
        (503, fixture_bytes("openai", "error_overloaded.json"), OverloadedError, True),
        (503, b'{"error":{"message":"Slow Down","type":"server_error"}}', OverloadedError, True),
        (503, b"Service Unavailable", OverloadedError, True),
        (
            500,
            b'{"error":{"message":"The engine is overloaded","type":"server_error"}}',
            OverloadedError,
            True,
        ),
        (504, EMPTY, ProviderTimeoutError, True),
        (418, b"I'm a teapot", BadRequestError, False),
        (599, EMPTY, ServerError, True),
    ],
)
def test_classify_table(
    status: int, body: bytes, cls: type[ProviderError], retryable: bool
) -> None:
    err = OPENAI.classify_error(HttpResponse(status, {"x-request-id": "req_1"}, body))
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status == status
    assert err.provider == "openai"
    assert err.request_id == "req_1"
    assert err.message


def test_classify_uses_the_providers_message() -> None:
    err = OPENAI.classify_error(response("openai", "error_rate_limit.json", 429))
    assert err.message.startswith("Rate limit reached for gpt-4o-mini")
    assert str(err).startswith("[openai, HTTP 429] rate_limit: Rate limit reached")


def test_classify_html_body_gives_a_readable_excerpt() -> None:
    err = OPENAI.classify_error(response("openai", "bad_gateway.html", 502))
    assert err.message == "HTTP 502: 502 Bad Gateway 502 Bad Gateway cloudflare"


def test_classify_long_text_body_is_cut() -> None:
    err = OPENAI.classify_error(HttpResponse(500, {}, b"x" * 5000))
    assert len(err.message) < 260


def test_classify_empty_body() -> None:
    assert (
        OPENAI.classify_error(HttpResponse(500, {}, b"")).message == "HTTP 500 with an empty body"
    )


def test_api_key_never_appears_in_errors() -> None:
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {API_KEY}."}}).encode()
    for body in (echo, fixture_bytes("openai", "error_invalid_key.json")):
        err = OPENAI.classify_error(HttpResponse(401, {"x-request-id": "r"}, body))
        assert isinstance(err, AuthenticationError)
        assert API_KEY not in str(err)
        assert API_KEY not in repr(err)
        assert "sk-" not in str(err)
        assert "Incorrect API key provided" in str(err)


@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [(400, "true", True), (500, "false", False), (429, "FALSE", False), (400, "maybe", False)],
)
def test_x_should_retry_overrides(status: int, header: str, retryable: bool) -> None:
    err = OPENAI.classify_error(HttpResponse(status, {"x-should-retry": header}, b""))
    assert err.retryable is retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "200", "retry-after": "9"}, 0.2),
        ({"retry-after": IN_30_SECONDS}, 30.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "1h2m3.5s", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-tokens": "1s", "x-ratelimit-remaining-tokens": "100"}, 3723.5),
        ({"x-ratelimit-reset-requests": "12ms", "x-ratelimit-reset-tokens": "9ms"}, 0.009),
        ({"retry-after": "3", "x-ratelimit-reset-tokens": "6m0s"}, 3.0),
        ({"x-ratelimit-reset-tokens": "garbage"}, None),
    ],
)  # fmt: skip
def test_retry_after_hints_on_429(headers: dict[str, str], expected: float | None) -> None:
    body = b'{"error":{"message":"slow down","type":null,"code":"rate_limit_exceeded"}}'
    err = OPENAI.classify_error(HttpResponse(429, headers, body))
    assert err.retry_after == (pytest.approx(expected) if expected is not None else None)


def test_reset_hint_follows_the_error_type() -> None:
    headers = {"x-ratelimit-reset-requests": "12ms", "x-ratelimit-reset-tokens": "6m0s"}
    err = OPENAI.classify_error(response("openai", "error_rate_limit.json", 429, headers))
    assert err.retry_after == pytest.approx(360.0)  # the body says type "tokens"


def test_reset_headers_are_ignored_unless_429() -> None:
    err = OPENAI.classify_error(HttpResponse(500, {"x-ratelimit-reset-tokens": "6m0s"}, b""))
    assert err.retry_after is None


# --- stream ---------------------------------------------------------------------------------


def test_stream_recorded_capture() -> None:
    result = replay(OPENAI.stream_parser(), [fixture_bytes("openai", "stream_basic.txt")])
    assert result.done
    assert result.completion is not None
    assert result.text == result.completion.content
    assert result.completion.content.startswith("I'm just a computer program")
    assert result.completion.finish_reason == "stop"
    assert result.completion.usage == Usage(14, 30, 44, 0)
    assert result.completion.model == "gpt-4o-2024-08-06"


def test_stream_accepts_null_usage_and_ignores_other_choices() -> None:
    parser = OPENAI.stream_parser()
    chunk = '{"model":"m","usage":null,"choices":[{"index":%d,"delta":{"content":"%s"}}]}'
    assert parser.feed(SseEvent(chunk % (0, "a"))) == "a"
    assert parser.feed(SseEvent(chunk % (1, "zzz"))) == ""
    assert (
        parser.feed(SseEvent('{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}')) == ""
    )
    assert not parser.done
    assert parser.feed(SseEvent("[DONE]")) == ""
    assert parser.done
    assert parser.feed(SseEvent('{"choices":[{"index":0,"delta":{"content":"late"}}]}')) == ""
    completion = parser.finish()
    assert (completion.content, completion.finish_reason, completion.usage) == (
        "a",
        "length",
        Usage(),
    )


def test_stream_error_payload_raises_by_type() -> None:
    result = replay(OPENAI.stream_parser(), [fixture_bytes("openai", "stream_error.txt")])
    assert isinstance(result.error, ServerError)
    assert result.error.status == 200
    assert result.error.partial_content == "I'm just a"
    assert "The server had an error" in result.error.message


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"type": "server_error", "message": "boom"}, ServerError),
        ({"type": "tokens", "code": "rate_limit_exceeded", "message": "slow"}, RateLimitError),
        ({"type": "insufficient_quota", "code": "insufficient_quota", "message": "q"}, QuotaError),
        ({"type": "invalid_request_error", "code": "context_length_exceeded", "message": "long"},
         ContextLengthError),
        ({"type": "invalid_request_error", "message": "bad"}, BadRequestError),
        ({"type": "server_error", "message": "The engine is currently overloaded"},
         OverloadedError),
        ({"type": "something_new", "message": "?"}, ServerError),
    ],
)  # fmt: skip
def test_stream_error_kinds(error: dict[str, str], cls: type[ProviderError]) -> None:
    parser = OPENAI.stream_parser()
    with pytest.raises(cls):
        parser.feed(SseEvent(json.dumps({"error": error})))


def test_stream_refusal_raises_content_filter() -> None:
    result = replay(OPENAI.stream_parser(), [fixture_bytes("openai", "stream_refusal.txt")])
    assert isinstance(result.error, ContentFilterError)
    assert "I'm sorry, I can't help with that." in result.error.message


def test_stream_event_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        OPENAI.stream_parser().feed(SseEvent("{oops"))
