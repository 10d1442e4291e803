"""Google Gemini generateContent: build (v1 / v1beta, stream URL), parse, classify, stream."""

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
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from flyllm.providers.base import NON_SSE_LINE, Endpoint, HttpRequest, HttpResponse, SseEvent
from flyllm.providers.google import GOOGLE_BASE_URL, GoogleProvider
from flyllm.types import Message, Usage
from tests.fixtures import API_KEY, fixture_bytes, replay, response

NOW = 1_750_000_000.0
GOOGLE = GoogleProvider(clock=lambda: NOW)
ENDPOINT = Endpoint("gemini-2.5-flash", API_KEY, GOOGLE_BASE_URL)
CHAT = [
    Message("system", "You are terse."),
    Message("user", "Hello"),
    Message("assistant", "Hi!"),
    Message("user", "How are you?"),
    Message("user", "Answer briefly."),
]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- build ----------------------------------------------------------------------------------


def test_build_v1_url_headers_roles_and_system_instruction() -> None:
    request = GOOGLE.build(ENDPOINT, CHAT, {})
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1/models/gemini-2.5-flash:generateContent"
    )
    assert request.headers == {"content-type": "application/json", "x-goog-api-key": API_KEY}
    assert body_of(request) == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}]},
            {"role": "model", "parts": [{"text": "Hi!"}]},
            {"role": "user", "parts": [{"text": "How are you?"}, {"text": "Answer briefly."}]},
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
    }
    assert API_KEY not in repr(request)
    assert API_KEY not in request.url


def test_build_v1beta_and_stream_url() -> None:
    endpoint = Endpoint("gemini-2.5-flash", API_KEY, GOOGLE_BASE_URL + "/", api_version="v1beta")
    request = GOOGLE.build(endpoint, CHAT, {}, stream=True)
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
        ":streamGenerateContent?alt=sse"
    )
    assert request.headers["accept"] == "text/event-stream"
    assert "stream" not in body_of(request)


def test_build_v1_stream_url() -> None:
    request = GOOGLE.build(ENDPOINT, CHAT, {}, stream=True)
    assert request.url.endswith("/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse")


def test_build_model_given_as_resource_path() -> None:
    endpoint = Endpoint("tunedModels/my-model-123", API_KEY, GOOGLE_BASE_URL)
    assert GOOGLE.build(endpoint, CHAT, {}).url.endswith(
        "/v1/tunedModels/my-model-123:generateContent"
    )


def test_build_generation_config_for_every_known_param() -> None:
    params = {
        "max_tokens": 800,
        "temperature": 1.0,
        "top_p": 0.8,
        "top_k": 10,
        "stop": ["Title"],
        "seed": 42,
    }
    request = GOOGLE.build(ENDPOINT, CHAT, params)
    assert body_of(request)["generationConfig"] == {
        "maxOutputTokens": 800,
        "temperature": 1.0,
        "topP": 0.8,
        "topK": 10,
        "stopSequences": ["Title"],
        "seed": 42,
    }
    assert request.notes == ()


def test_build_clamps_and_cuts_with_notes() -> None:
    params = {"temperature": 3.0, "top_k": 0, "stop": list("abcdefg")}
    request = GOOGLE.build(ENDPOINT, CHAT, params)
    config = body_of(request)["generationConfig"]
    assert config["temperature"] == 2.0
    assert config["topK"] == 1
    assert config["stopSequences"] == list("abcde")
    assert request.notes == (
        "temperature 3.0 clamped to 2.0 for google",
        "top_k 0 raised to 1 for google",
        "stop has 7 sequences but google accepts 5; kept the first 5",
    )


def test_build_unknown_params_top_level_and_generation_config_merge() -> None:
    params = {
        "max_tokens": 50,
        "safetySettings": [
            {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
        ],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}},
    }
    body = body_of(GOOGLE.build(ENDPOINT, CHAT, params))
    assert body["safetySettings"][0]["threshold"] == "BLOCK_ONLY_HIGH"
    assert body["generationConfig"] == {
        "maxOutputTokens": 50,
        "thinkingConfig": {"thinkingBudget": 0},
    }


def test_build_no_system_no_config() -> None:
    body = body_of(GOOGLE.build(ENDPOINT, [Message("user", "x")], {}))
    assert body == {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}


# --- parse ----------------------------------------------------------------------------------


def test_parse_recorded_response_with_thought_tokens() -> None:
    completion = GOOGLE.parse(response("google", "generate_content.json"))
    assert completion.content == (
        "There are **3** r's in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y."
    )
    assert (completion.finish_reason, completion.raw_finish_reason) == ("stop", "STOP")
    # completion counts the billed thoughts: 28 + 244; total as reported
    assert completion.usage == Usage(9, 272, 281, 0)
    assert completion.model == "gemini-3-pro-preview"


def test_parse_skips_thought_parts_and_signature_only_parts() -> None:
    completion = GOOGLE.parse(response("google", "generate_content_thought.json"))
    assert completion.content == "Strawberry has three r's."
    assert completion.usage == Usage(12, 108, 120, 4)


def test_parse_function_call_is_tool_calls() -> None:
    completion = GOOGLE.parse(response("google", "function_call.json"))
    assert completion.content == ""
    assert (completion.finish_reason, completion.raw_finish_reason) == ("tool_calls", "STOP")


def test_parse_max_tokens_is_length() -> None:
    completion = GOOGLE.parse(response("google", "max_tokens.json"))
    assert (completion.finish_reason, completion.content) == ("length", "Once upon a")


@pytest.mark.parametrize("raw", ["LANGUAGE", "OTHER", "MALFORMED_FUNCTION_CALL", "NEW_REASON"])
def test_parse_other_reasons(raw: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": raw}]}
    completion = GOOGLE.parse(HttpResponse(200, {}, json.dumps(body).encode()))
    assert (completion.finish_reason, completion.raw_finish_reason) == ("other", raw)


def test_parse_usage_total_missing_is_the_sum() -> None:
    body = {
        "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
    }
    completion = GOOGLE.parse(HttpResponse(200, {}, json.dumps(body).encode()))
    assert completion.usage == Usage(3, 4, 7, 0)


def test_parse_safety_finish_raises_content_filter() -> None:
    with pytest.raises(ContentFilterError) as info:
        GOOGLE.parse(response("google", "finish_safety.json"))
    assert "SAFETY" in str(info.value)
    assert info.value.partial_content == "Step one is"
    assert info.value.retryable is False


@pytest.mark.parametrize(
    "raw",
    ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"],
)
def test_parse_filter_reasons(raw: str) -> None:
    body = {"candidates": [{"content": {"parts": []}, "finishReason": raw}]}
    with pytest.raises(ContentFilterError):
        GOOGLE.parse(HttpResponse(200, {}, json.dumps(body).encode()))


def test_parse_blocked_prompt_without_candidates() -> None:
    with pytest.raises(ContentFilterError) as info:
        GOOGLE.parse(response("google", "blocked_prompt.json"))
    assert "PROHIBITED_CONTENT" in str(info.value)


@pytest.mark.parametrize("body", [b"", b"[]", b'{"usageMetadata":{}}', b'{"candidates":[7]}'])
def test_parse_unreadable_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError):
        GOOGLE.parse(HttpResponse(200, {}, body))


# --- classify_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls", "retryable"),
    [
        (400, "error_invalid_argument.json", BadRequestError, False),
        (400, "error_api_key.json", AuthenticationError, True),
        (400, "error_context.json", ContextLengthError, False),
        (400, "error_precondition.json", PermissionDeniedError, True),
        (403, "error_permission.json", PermissionDeniedError, True),
        (404, "error_not_found.json", NotFoundError, True),
        (429, "error_429.json", RateLimitError, True),
        (429, "error_429_per_day.json", QuotaError, True),
        (500, "error_internal.json", ServerError, True),
        (503, "error_unavailable.json", OverloadedError, True),
        (504, "error_deadline.json", ProviderTimeoutError, True),
    ],
)
def test_classify_table(status: int, name: str, cls: type[ProviderError], retryable: bool) -> None:
    err = GOOGLE.classify_error(response("google", name, status))
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status == status
    assert err.provider == "google"
    assert err.message == json.loads(fixture_bytes("google", name))["error"]["message"]


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, AuthenticationError), (408, ProviderTimeoutError), (499, ProviderConnectionError)],
)
def test_classify_statuses_without_body(status: int, cls: type[ProviderError]) -> None:
    assert type(GOOGLE.classify_error(HttpResponse(status, {}, b""))) is cls


def test_api_key_invalid_by_reason_alone() -> None:
    body = {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT",
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                   "reason": "API_KEY_INVALID"}]}}  # fmt: skip
    err = GOOGLE.classify_error(HttpResponse(400, {}, json.dumps(body).encode()))
    assert isinstance(err, AuthenticationError)


def test_retry_delay_from_body() -> None:
    assert GOOGLE.classify_error(response("google", "error_429.json", 429)).retry_after == 34.4
    assert (
        GOOGLE.classify_error(response("google", "error_429_per_day.json", 429)).retry_after == 13
    )


def test_header_retry_after_wins_over_body() -> None:
    err = GOOGLE.classify_error(response("google", "error_429.json", 429, {"retry-after": "3"}))
    assert err.retry_after == 3.0


def test_error_list_body_is_unwrapped() -> None:
    body = b'[{"error":{"code":503,"message":"busy","status":"UNAVAILABLE"}}]'
    err = GOOGLE.classify_error(HttpResponse(503, {}, body))
    assert isinstance(err, OverloadedError)
    assert err.message == "busy"


def test_key_never_in_error_text() -> None:
    key = "AIza" + "SyD-EXAMPLEKEYexamplekey0123456789"  # split: no key-shaped literal in git
    body = json.dumps({"error": {"code": 400, "message": f"API key not valid: {key}"}}).encode()
    err = GOOGLE.classify_error(HttpResponse(400, {}, body))
    assert isinstance(err, AuthenticationError)
    assert key not in str(err)
    assert key not in repr(err)


# --- stream ---------------------------------------------------------------------------------


def test_stream_recorded_crlf() -> None:
    result = replay(GOOGLE.stream_parser(), [fixture_bytes("google", "stream_basic.txt")])
    assert result.done
    assert result.completion is not None
    assert result.completion.content == "Four."
    assert result.completion.finish_reason == "stop"
    assert result.completion.usage == Usage(51, 2, 53, 0)
    assert result.completion.model == "gemini-2.5-flash"


def test_stream_thought_parts_skipped_and_usage_last_snapshot() -> None:
    result = replay(GOOGLE.stream_parser(), [fixture_bytes("google", "stream_thought.txt")])
    assert result.completion is not None
    assert result.completion.content == (
        "Morning frost glitters,\ncafé steam curls — sun rises,\nbirds stitch the cold sky. 🐦"
    )
    assert result.completion.usage == Usage(9, 19 + 121, 149, 0)


def test_stream_old_model_stop_on_every_chunk_is_not_the_end() -> None:
    parser = GOOGLE.stream_parser()
    result = replay(parser, [fixture_bytes("google", "stream_old_model.txt")])
    assert result.completion is not None
    assert result.completion.content == "Once upon a time, there was a cat."
    assert result.completion.usage == Usage(6, 10, 16, 0)


def test_stream_without_finish_reason_is_interrupted() -> None:
    result = replay(GOOGLE.stream_parser(), [fixture_bytes("google", "stream_truncated.txt")])
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.partial_content == "Four score"
    assert not result.done


def test_stream_bare_json_error_after_200() -> None:
    result = replay(GOOGLE.stream_parser(), [fixture_bytes("google", "stream_bare_error.txt")])
    assert isinstance(result.error, OverloadedError)
    assert result.error.message == "The model is overloaded. Please try again later."
    assert result.error.partial_content == "The answer"


def test_stream_cut_inside_bare_json_is_interrupted() -> None:
    data = fixture_bytes("google", "stream_bare_error.txt")
    data = data[: data.rindex(b"}")]  # the outer object never closes
    result = replay(GOOGLE.stream_parser(), [data])
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.partial_content == "The answer"


def test_stream_bare_json_completed_only_at_eof_still_raises() -> None:
    parser = GOOGLE.stream_parser()
    for line in ['{"error": {"code": 500,', '"message": "boom {"}}']:
        parser.feed(SseEvent(line, NON_SSE_LINE))
    with pytest.raises(ServerError, match="boom"):
        parser.finish()


def test_stream_bare_json_with_braces_in_strings() -> None:
    parser = GOOGLE.stream_parser()
    lines = [
        "{",
        '  "error": {"code": 429, "message": "limit {per minute}}} hit",',
        '  "status": "RESOURCE_EXHAUSTED"}',
        "}",
    ]
    with pytest.raises(RateLimitError) as info:
        for line in lines:
            parser.feed(SseEvent(line, NON_SSE_LINE))
        parser.finish()
    assert info.value.message == "limit {per minute}}} hit"


def test_stream_non_json_bare_lines_are_ignored() -> None:
    parser = GOOGLE.stream_parser()
    assert parser.feed(SseEvent("garbage: here", NON_SSE_LINE)) == ""
    with pytest.raises(StreamInterruptedError):
        parser.finish()


def test_stream_data_error_payload() -> None:
    result = replay(GOOGLE.stream_parser(), [fixture_bytes("google", "stream_data_error.txt")])
    assert isinstance(result.error, ServerError)
    assert result.error.status == 200
    assert result.error.partial_content == "The answer"


def test_stream_blocked_prompt_raises() -> None:
    result = replay(GOOGLE.stream_parser(), [fixture_bytes("google", "stream_blocked.txt")])
    assert isinstance(result.error, ContentFilterError)
    assert "SAFETY" in result.error.message


def test_stream_safety_finish_raises_at_finish_with_partial_text() -> None:
    parser = GOOGLE.stream_parser()
    chunk = {"candidates": [{"content": {"parts": [{"text": "Step one"}]}}]}
    assert parser.feed(SseEvent(json.dumps(chunk))) == "Step one"
    assert parser.feed(SseEvent('{"candidates":[{"finishReason":"SAFETY"}]}')) == ""
    assert parser.done
    with pytest.raises(ContentFilterError) as info:
        parser.finish()
    assert info.value.partial_content == "Step one"


def test_stream_error_retry_delay_kept() -> None:
    error = json.loads(fixture_bytes("google", "error_429.json"))
    with pytest.raises(RateLimitError) as info:
        GOOGLE.stream_parser().feed(SseEvent(json.dumps(error)))
    assert info.value.retry_after == 34.4
