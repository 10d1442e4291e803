"""Cohere chat v2: build (p, k, stop_sequences), parse content blocks and usage, classify,
named-event streams."""

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
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse, SseEvent
from flyllm.providers.cohere import COHERE_BASE_URL, CohereProvider
from flyllm.types import Message, Usage
from tests.fixtures import API_KEY, fixture_bytes, one_byte, random_reads, replay, response

NOW = 1_750_000_000.0
COHERE = CohereProvider(clock=lambda: NOW)
ENDPOINT = Endpoint("command-a-03-2025", API_KEY, COHERE_BASE_URL)
CHAT = [Message("system", "You are terse."), Message("user", "Hello")]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- build ----------------------------------------------------------------------------------


def test_build_url_headers_and_messages() -> None:
    request = COHERE.build(ENDPOINT, CHAT, {})
    assert request.url == "https://api.cohere.com/v2/chat"
    assert request.headers == {
        "content-type": "application/json",
        "authorization": f"Bearer {API_KEY}",
    }
    assert body_of(request) == {
        "model": "command-a-03-2025",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello"},
        ],
        "stream": False,
    }
    assert API_KEY not in repr(request)
    streamed = COHERE.build(Endpoint("m", API_KEY, "http://127.0.0.1:9/"), CHAT, {}, stream=True)
    assert streamed.url == "http://127.0.0.1:9/v2/chat"
    assert body_of(streamed)["stream"] is True
    assert streamed.headers["accept"] == "text/event-stream"


def test_build_translates_known_params() -> None:
    params = {
        "max_tokens": 300,
        "temperature": 0.3,
        "top_p": 0.75,
        "top_k": 40,
        "stop": ["END"],
        "seed": 7,
        "safety_mode": "STRICT",
    }
    request = COHERE.build(ENDPOINT, CHAT, params)
    body = body_of(request)
    assert body["max_tokens"] == 300 and body["temperature"] == 0.3
    assert body["p"] == 0.75 and body["k"] == 40 and "top_p" not in body and "top_k" not in body
    assert body["stop_sequences"] == ["END"] and "stop" not in body
    assert body["seed"] == 7 and body["safety_mode"] == "STRICT"
    assert request.notes == ()


def test_build_clamps_to_the_documented_ranges() -> None:
    params = {"temperature": 1.5, "top_p": 1.0, "top_k": 900, "stop": list("abcdefg")}
    request = COHERE.build(ENDPOINT, CHAT, params)
    body = body_of(request)
    assert body["temperature"] == 1.0 and body["p"] == 0.99 and body["k"] == 500
    assert body["stop_sequences"] == list("abcde")
    assert request.notes == (
        "temperature 1.5 clamped to 1.0 for cohere",
        "top_p 1.0 clamped to 0.99 for cohere",
        "top_k 900 clamped to 500.0 for cohere",
        "stop has 7 sequences but cohere accepts 5; kept the first 5",
    )


# --- parse ----------------------------------------------------------------------------------


def test_parse_recorded_answer_uses_billed_units() -> None:
    completion = COHERE.parse(response("cohere", "chat.json"))
    assert completion.content.startswith("LLMs stand for Large Language Models")
    assert (completion.finish_reason, completion.raw_finish_reason) == ("stop", "COMPLETE")
    assert completion.usage == Usage(5, 23, 28, 0)
    assert completion.request_id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"


def test_parse_max_tokens_cached_tokens_and_thinking_blocks() -> None:
    limited = COHERE.parse(response("cohere", "chat_max_tokens.json"))
    assert limited.content == "Large language models are"
    assert limited.finish_reason == "length" and limited.usage == Usage(7, 4, 11, 64)
    thinking = COHERE.parse(response("cohere", "chat_thinking.json"))
    assert thinking.content == "17 × 3 = 51."  # the thinking block is not part of the text
    assert thinking.usage == Usage(512, 40, 552, 0)  # no billed_units: the token counts


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("STOP_SEQUENCE", "stop"), ("TOOL_CALL", "tool_calls"), ("USER_CANCEL", "other")],
)
def test_parse_other_finish_reasons(finish: str, expected: str) -> None:
    body = {"id": "x", "finish_reason": finish, "message": {"role": "assistant", "content": []}}
    completion = COHERE.parse(HttpResponse(200, {}, json.dumps(body).encode()))
    assert completion.finish_reason == expected and completion.content == ""


def test_parse_error_and_timeout_finishes_raise() -> None:
    with pytest.raises(ServerError) as caught:
        COHERE.parse(response("cohere", "chat_error_finish.json"))
    assert caught.value.partial_content == "The answer" and caught.value.retryable
    body = b'{"id":"x","finish_reason":"TIMEOUT","message":{"role":"assistant","content":[]}}'
    with pytest.raises(ProviderTimeoutError):
        COHERE.parse(HttpResponse(200, {}, body))
    with pytest.raises(MalformedResponseError):
        COHERE.parse(HttpResponse(200, {}, b'{"id":"x","finish_reason":"COMPLETE"}'))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (401, "error_unauthorized.json", AuthenticationError),
        (498, "error_unauthorized.json", AuthenticationError),
        (400, "error_too_many_tokens.json", ContextLengthError),
        (400, "error_bad_request.json", BadRequestError),
        (422, "error_bad_request.json", BadRequestError),
        (429, "error_rate_limit.json", RateLimitError),
        (429, "error_trial_monthly.json", QuotaError),
        (404, "error_not_found.json", NotFoundError),
        (402, "error_payment.json", QuotaError),
        (500, "error_server.json", ServerError),
        (503, "error_server.json", OverloadedError),
        (499, "error_server.json", ProviderConnectionError),
    ],
)
def test_classify_error_bodies(status: int, name: str, cls: type[ProviderError]) -> None:
    err = COHERE.classify_error(response("cohere", name, status))
    assert type(err) is cls
    assert err.message == json.loads(fixture_bytes("cohere", name))["message"]
    assert err.request_id == json.loads(fixture_bytes("cohere", name))["id"]
    assert err.provider == "cohere" and err.status == status


def test_retry_after_headers_and_unreadable_bodies() -> None:
    err = COHERE.classify_error(
        HttpResponse(429, {"retry-after": "3"}, fixture_bytes("cohere", "error_rate_limit.json"))
    )
    assert err.retry_after == 3.0
    html = COHERE.classify_error(HttpResponse(504, {}, b"<html>Gateway Timeout</html>"))
    assert type(html) is ProviderTimeoutError and "Gateway Timeout" in html.message


# --- streams --------------------------------------------------------------------------------


def _replays(name: str) -> list[Any]:
    data = fixture_bytes("cohere", name)
    runs = [replay(COHERE.stream_parser(), [data]), replay(COHERE.stream_parser(), one_byte(data))]
    runs += [replay(COHERE.stream_parser(), random_reads(data, seed)) for seed in range(15)]
    return runs


def test_stream_text_usage_and_split_independence() -> None:
    runs = _replays("stream_basic.txt")
    first = runs[0]
    assert first.deltas == ["C", "oca", "-", "Cola", " is a soft drink."]
    assert first.completion is not None and first.done
    assert first.completion.content == "Coca-Cola is a soft drink."
    assert first.completion.usage == Usage(16, 7, 23, 0)
    assert first.completion.finish_reason == "stop"
    assert first.completion.request_id == "a8fc192e-4bb8-4e15-ae1f-a174e8b02ae8"
    assert all(r.deltas == first.deltas and r.completion == first.completion for r in runs)


def test_stream_skips_thinking_and_reads_token_usage() -> None:
    run = _replays("stream_thinking.txt")[0]
    assert run.deltas == ["51"]
    assert run.completion is not None and run.completion.usage == Usage(500, 12, 512, 448)


@pytest.mark.parametrize(
    ("name", "cls", "partial"),
    [
        ("stream_error.txt", ServerError, "Once upon"),
        ("stream_truncated.txt", StreamInterruptedError, "Once upon"),
    ],
)
def test_failing_streams(name: str, cls: type[ProviderError], partial: str) -> None:
    for run in _replays(name):
        assert type(run.error) is cls
        assert run.text == partial and run.error.partial_content == partial
        assert run.error.status == 200 and run.error.provider == "cohere"
    error = _replays("stream_error.txt")[0].error
    assert error is not None and "internal server error" in error.message


def test_stream_events_without_names_and_bad_payloads() -> None:
    parser = COHERE.stream_parser()
    delta = '{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"hi"}}}}'
    assert parser.feed(SseEvent(delta)) == "hi"
    parser.feed(SseEvent('{"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}'))
    assert parser.done and parser.finish().finish_reason == "length"
    assert parser.feed(SseEvent(delta)) == ""  # nothing after the end
    with pytest.raises(MalformedResponseError):
        COHERE.stream_parser().feed(SseEvent("not json", "content-delta"))
