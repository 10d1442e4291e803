"""Mistral chat completions: build, parse (string and chunked content), classify, stream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
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
    StreamInterruptedError,
)
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse, SseEvent
from flyllm.providers.mistral import MISTRAL_BASE_URL, MistralProvider
from flyllm.types import Message, Usage
from tests.fixtures import API_KEY, fixture_bytes, replay, response

NOW = 1_750_000_000.0
MISTRAL = MistralProvider(clock=lambda: NOW)
ENDPOINT = Endpoint("mistral-small-latest", API_KEY, MISTRAL_BASE_URL)
CHAT = [Message("system", "You are terse."), Message("user", "Hello")]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- build ----------------------------------------------------------------------------------


def test_build_url_headers_and_messages() -> None:
    request = MISTRAL.build(ENDPOINT, CHAT, {})
    assert request.url == "https://api.mistral.ai/v1/chat/completions"
    assert request.headers == {
        "content-type": "application/json",
        "authorization": f"Bearer {API_KEY}",
    }
    assert body_of(request) == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello"},
        ],
    }
    assert API_KEY not in repr(request)


def test_build_translates_known_params() -> None:
    params = {
        "max_tokens": 256,
        "temperature": 0.3,
        "top_p": 0.95,
        "stop": ["END", "STOP", "a", "b", "c"],
        "seed": 11,
    }
    request = MISTRAL.build(ENDPOINT, CHAT, params)
    body = body_of(request)
    assert body["max_tokens"] == 256
    assert "max_completion_tokens" not in body
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.95
    assert body["stop"] == ["END", "STOP", "a", "b", "c"]
    assert body["random_seed"] == 11
    assert "seed" not in body
    assert request.notes == ()


def test_build_clamps_temperature_and_leaves_out_top_k() -> None:
    request = MISTRAL.build(ENDPOINT, CHAT, {"temperature": 1.9, "top_k": 5})
    body = body_of(request)
    assert body["temperature"] == 1.5
    assert "top_k" not in body
    assert request.notes == (
        "temperature 1.9 clamped to 1.5 for mistral",
        "top_k is not supported by mistral; left out",
    )


def test_build_stream_has_no_stream_options_and_unknown_params_pass() -> None:
    base = Endpoint("mistral-large-latest", API_KEY, "https://api.mistral.ai/")
    params = {"safe_prompt": True, "prompt_mode": "reasoning"}
    request = MISTRAL.build(base, CHAT, params, stream=True)
    body = body_of(request)
    assert request.url == "https://api.mistral.ai/v1/chat/completions"
    assert body["stream"] is True
    assert "stream_options" not in body
    assert body["safe_prompt"] is True
    assert body["prompt_mode"] == "reasoning"
    assert request.headers["accept"] == "text/event-stream"


# --- parse ----------------------------------------------------------------------------------


def test_parse_recorded_completion() -> None:
    completion = MISTRAL.parse(response("mistral", "chat_completion.json"))
    assert completion.content == "**Holiday Name: …"
    assert (completion.finish_reason, completion.raw_finish_reason) == ("stop", "stop")
    assert completion.usage == Usage(13, 434, 447, 0)
    assert completion.model == "mistral-small-latest"


def test_parse_content_as_list_of_chunks_keeps_text_only() -> None:
    completion = MISTRAL.parse(response("mistral", "chat_completion_chunks.json"))
    assert completion.content == "2 + 2 = **4**."
    assert completion.usage == Usage(20, 160, 180, 0)


def test_parse_model_length_is_length() -> None:
    completion = MISTRAL.parse(response("mistral", "model_length.json"))
    assert (completion.finish_reason, completion.raw_finish_reason) == ("length", "model_length")


def test_parse_finish_reason_error_raises_server_error() -> None:
    with pytest.raises(ServerError) as info:
        MISTRAL.parse(response("mistral", "finish_error.json"))
    assert info.value.retryable is True
    assert info.value.partial_content == "Hel"


def test_parse_malformed() -> None:
    with pytest.raises(MalformedResponseError):
        MISTRAL.parse(HttpResponse(200, {}, b'{"id":"x","choices":null}'))


# --- classify_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls", "retryable", "message"),
    [
        (400, "error_invalid_model.json", NotFoundError, True, "Invalid model: no-such-model"),
        (400, "error_context.json", ContextLengthError, False,
         "Prompt contains 40012 tokens and 0 draft tokens, too large for model with 32768 "
         "maximum context length"),
        (400, "error_bad_request.json", BadRequestError, False,
         "Assistant message must have either content or tool_calls, but not none."),
        (422, "error_422.json", BadRequestError, False,
         "body.max_completion_tokens: Extra inputs are not permitted"),
        (401, "error_gateway_401.json", AuthenticationError, True, "Unauthorized"),
        (429, "error_gateway_429.json", RateLimitError, True, "Requests rate limit exceeded"),
        (429, "error_capacity_429.json", OverloadedError, True,
         "Service tier capacity exceeded for this model."),
        (429, "error_gateway_429_monthly.json", QuotaError, True, "Monthly tokens limit exceeded"),
    ],
)  # fmt: skip
def test_classify_table(
    status: int, name: str, cls: type[ProviderError], retryable: bool, message: str
) -> None:
    err = MISTRAL.classify_error(response("mistral", name, status))
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status == status
    assert err.provider == "mistral"
    assert err.message == message


def test_gateway_request_id_from_body() -> None:
    err = MISTRAL.classify_error(response("mistral", "error_gateway_401.json", 401))
    assert err.request_id == "8e7a0c4b2f1d4a6e9b3c5d7f1a2b4c6d"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(403, PermissionDeniedError), (404, NotFoundError), (500, ServerError), (502, ServerError),
     (503, OverloadedError), (504, ProviderTimeoutError)],
)  # fmt: skip
def test_classify_statuses_without_body(status: int, cls: type[ProviderError]) -> None:
    assert type(MISTRAL.classify_error(HttpResponse(status, {}, b""))) is cls


def test_validation_detail_with_several_entries_and_bare_fastapi_shape() -> None:
    detail = [
        {"type": "missing", "loc": ["body", "messages"], "msg": "Field required"},
        {
            "type": "extra_forbidden",
            "loc": ["body", "store"],
            "msg": "Extra inputs are not permitted",
        },
    ]
    err = MISTRAL.classify_error(HttpResponse(422, {}, json.dumps({"detail": detail}).encode()))
    assert isinstance(err, BadRequestError)
    assert err.message == "body.messages: Field required (and 1 more)"


def test_retry_after_header() -> None:
    seconds = {"retry-after": "4"}
    err = MISTRAL.classify_error(response("mistral", "error_gateway_429.json", 429, seconds))
    assert err.retry_after == 4.0
    date = {"retry-after": "Mon, 16 Jun 2025 15:07:00 GMT"}
    err = MISTRAL.classify_error(response("mistral", "error_gateway_429.json", 429, date))
    assert err.retry_after == pytest.approx(1_750_086_420.0 - NOW)


def test_key_never_in_error_text() -> None:
    body = json.dumps({"message": f"Bearer {API_KEY} is not valid"}).encode()
    err = MISTRAL.classify_error(HttpResponse(401, {}, body))
    assert API_KEY not in str(err)
    assert API_KEY not in repr(err)


# --- stream ---------------------------------------------------------------------------------


def test_stream_recorded_usage_on_finish_chunk() -> None:
    result = replay(MISTRAL.stream_parser(), [fixture_bytes("mistral", "stream.txt")])
    assert result.done
    assert result.completion is not None
    assert result.completion.content == "Hello! How can I help you today?"
    assert result.completion.finish_reason == "stop"
    assert result.completion.usage == Usage(13, 8, 21, 0)


def test_stream_finish_reason_error_raises() -> None:
    result = replay(MISTRAL.stream_parser(), [fixture_bytes("mistral", "stream_finish_error.txt")])
    assert isinstance(result.error, ServerError)
    assert result.error.partial_content == "Hello!"


def test_stream_truncated() -> None:
    result = replay(MISTRAL.stream_parser(), [fixture_bytes("mistral", "stream_truncated.txt")])
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.partial_content == "Hello! How can"


def test_stream_chunked_delta_content() -> None:
    parser = MISTRAL.stream_parser()
    thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}]
    think = {"choices": [{"index": 0, "delta": {"content": thinking}}]}
    answer = [{"type": "text", "text": "4"}]
    text = {"choices": [{"index": 0, "delta": {"content": answer}, "finish_reason": "stop"}]}
    assert parser.feed(SseEvent(json.dumps(think))) == ""
    assert parser.feed(SseEvent(json.dumps(text))) == "4"
    parser.feed(SseEvent("[DONE]"))
    assert parser.finish().content == "4"


def test_stream_error_object_raises() -> None:
    body = fixture_bytes("mistral", "error_capacity_429.json").decode()
    with pytest.raises(OverloadedError):
        MISTRAL.stream_parser().feed(SseEvent(body))
