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
    UnsupportedFeatureError,
)
from flyllm.providers._tools import charset_id
from flyllm.providers.base import Delta, Endpoint, HttpRequest, HttpResponse, SseEvent, ToolSet
from flyllm.providers.cohere import COHERE_BASE_URL, CohereProvider
from flyllm.types import Message, Tool, ToolCall, ToolCallDelta, Usage
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


# --- tools ----------------------------------------------------------------------------------

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _tools(choice: str = "auto", parallel: bool | None = None) -> ToolSet:
    return ToolSet((WEATHER, Tool("get_time")), choice, parallel)


def test_build_offers_tools_and_translates_the_choice() -> None:
    body = body_of(COHERE.build(ENDPOINT, CHAT, {}, tools=_tools()))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": dict(WEATHER.parameters),
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    assert "tool_choice" not in body  # auto is Cohere's default: left out
    assert body_of(COHERE.build(ENDPOINT, CHAT, {}, tools=_tools("required")))["tool_choice"] == (
        "REQUIRED"
    )
    assert body_of(COHERE.build(ENDPOINT, CHAT, {}, tools=_tools("none")))["tool_choice"] == "NONE"
    serial = COHERE.build(ENDPOINT, CHAT, {}, tools=_tools(parallel=False))
    assert "parallel" not in serial.body.decode() and any("parallel" in n for n in serial.notes)
    assert "tools" not in body_of(COHERE.build(ENDPOINT, CHAT, {}))


def test_a_named_tool_choice_is_refused_before_sending() -> None:
    assert COHERE.capabilities == frozenset({"tools", "structured_output", "images", "embeddings"})
    with pytest.raises(UnsupportedFeatureError) as caught:
        COHERE.build(ENDPOINT, CHAT, {}, tools=_tools("get_weather"))
    assert caught.value.feature == "named_tool_choice" and caught.value.provider == "cohere"
    assert "get_weather" in caught.value.message and API_KEY not in str(caught.value)


def test_build_sends_calls_with_their_plan_and_results_by_id() -> None:
    calls = (
        ToolCall("get_weather_1byjy32y4hvq", "get_weather", {"city": "Oslo"}),
        ToolCall("toolu_01.weird/id", "get_weather", {}, raw_arguments='{"city": "Li'),
    )
    conversation = [
        Message.user("Weather in Oslo and Lima?"),
        Message.assistant("I will look it up.", calls),
        Message.tool_result("get_weather_1byjy32y4hvq", {"temp": 3}),
        Message.tool_result("toolu_01.weird/id", "no such city", is_error=True),
    ]
    messages = body_of(COHERE.build(ENDPOINT, conversation, {}, tools=_tools()))["messages"]
    assistant, first, second = messages[1:]
    rewritten = charset_id("toolu_01.weird/id")
    assert assistant == {
        "role": "assistant",
        "tool_plan": "I will look it up.",
        "tool_calls": [
            {
                "id": "get_weather_1byjy32y4hvq",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            },
            {
                "id": rewritten,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Li'},
            },
        ],
    }
    assert first == {
        "role": "tool",
        "tool_call_id": "get_weather_1byjy32y4hvq",
        "content": '{"temp": 3}',
    }
    assert second == {"role": "tool", "tool_call_id": rewritten, "content": "Error: no such city"}


def test_an_openai_started_conversation_gets_a_plan_cohere_accepts() -> None:
    # An OpenAI assistant turn with calls has no text and no provider_data.
    conversation = [
        Message.user("Weather in Oslo?"),
        Message.assistant("", [ToolCall("call_abc123", "get_weather", {"city": "Oslo"})]),
        Message.tool_result("call_abc123", "3 C"),
    ]
    messages = body_of(COHERE.build(ENDPOINT, conversation, {}))["messages"]
    assert messages[1]["tool_plan"] and "content" not in messages[1]
    assert messages[1]["tool_calls"][0]["id"] == messages[2]["tool_call_id"] == "call_abc123"


def test_parse_tool_calls_in_order_with_the_plan_as_text() -> None:
    completion = COHERE.parse(response("cohere", "chat_tool_calls.json"))
    assert completion.finish_reason == "tool_calls" and completion.raw_finish_reason == "TOOL_CALL"
    assert completion.content == "I will look up the weather in Oslo and Lima."
    assert completion.tool_calls == (
        ToolCall("get_weather_1byjy32y4hvq", "get_weather", {"city": "Oslo"}),
        ToolCall("get_weather_jtz0z8rqs1mn", "get_weather", {"city": "Lima", "unit": "celsius"}),
    )
    assert completion.usage == Usage(37, 28, 65, 0)


def _answer(calls: Any, **message: Any) -> HttpResponse:
    body = {"id": "x", "message": {"role": "assistant", "tool_calls": calls, **message},
            "finish_reason": "TOOL_CALL"}  # fmt: skip
    return HttpResponse(200, {}, json.dumps(body).encode())


def test_parse_keeps_unreadable_arguments_and_makes_up_missing_ids() -> None:
    calls = [
        {"type": "function", "function": {"name": "get_time"}},
        {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{not json"}},
        {"id": "c3", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}},
    ]
    got = COHERE.parse(_answer(calls)).tool_calls
    assert got[0].name == "get_time" and got[0].arguments == {} and got[0].raw_arguments is None
    assert got[0].id.startswith("call_") and len(got[0].id) == 29
    assert (got[1].arguments, got[1].raw_arguments) == ({}, "{not json")
    assert (got[2].arguments, got[2].raw_arguments) == ({}, "[1, 2]")
    deep = "[" * 50_000 + "]" * 50_000
    huge = COHERE.parse(_answer([{"id": "d", "function": {"name": "f", "arguments": deep}}]))
    assert huge.tool_calls[0].raw_arguments == deep  # honest text, kept as it came


@pytest.mark.parametrize(
    "calls",
    [
        {"id": "a"},
        ["not a call"],
        [{"id": "a", "function": "get_weather"}],
        [{"id": "a", "function": {"name": 7, "arguments": "{}"}}],
        [{"id": "a", "function": {"arguments": "{}"}}],
        [{"id": 5, "function": {"name": "f", "arguments": "{}"}}],
        [{"id": "a", "function": {"name": "f", "arguments": {"city": "Oslo"}}}],
    ],
)
def test_parse_refuses_tool_calls_of_the_wrong_shape(calls: Any) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        COHERE.parse(_answer(calls))
    assert "tool_calls" in caught.value.message


def test_parse_refuses_a_plan_of_the_wrong_type() -> None:
    with pytest.raises(MalformedResponseError):
        COHERE.parse(_answer([], tool_plan=["x"]))


def test_model_without_tools_is_an_unsupported_feature() -> None:
    err = COHERE.classify_error(response("cohere", "error_no_tools.json", 400))
    assert type(err) is UnsupportedFeatureError and err.feature == "tools"
    assert err.status == 400 and "aya" in err.message
    other = COHERE.classify_error(response("cohere", "error_bad_request.json", 400))
    assert type(other) is BadRequestError


def _every_split(data: bytes) -> list[Any]:
    return [replay(COHERE.stream_parser(), [data[:i], data[i:]]) for i in range(1, len(data))]


def test_stream_tool_calls_as_canonical_deltas_at_every_split_point() -> None:
    data = fixture_bytes("cohere", "stream_tool_calls.txt")
    first = replay(COHERE.stream_parser(), [data])
    assert first.deltas == ["I will", " look up the weather", " in Oslo and Lima."]
    assert [d.index for d in first.tool_deltas] == [0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert first.tool_deltas[0] == ToolCallDelta(0, "get_weather_1byjy32y4hvq", "get_weather")
    assert first.tool_deltas[6] == ToolCallDelta(1, "get_weather_jtz0z8rqs1mn", "get_weather")
    assert all(d.id is None and d.name is None for d in first.tool_deltas[1:6])
    completion = first.completion
    assert completion is not None and completion.finish_reason == "tool_calls"
    assert completion.content == "I will look up the weather in Oslo and Lima."
    assert completion.tool_calls == (
        ToolCall("get_weather_1byjy32y4hvq", "get_weather", {"city": "Oslo"}),
        ToolCall("get_weather_jtz0z8rqs1mn", "get_weather", {"city": "Lima é"}),
    )
    for run in [*_every_split(data), replay(COHERE.stream_parser(), one_byte(data))]:
        assert run.deltas == first.deltas
        assert run.tool_deltas == first.tool_deltas and run.completion == completion


def _tool_event(kind: str, index: Any, calls: Any) -> SseEvent:
    delta = {"message": {"tool_calls": calls}}
    return SseEvent(json.dumps({"type": kind, "index": index, "delta": delta}), kind)


@pytest.mark.parametrize(
    "events",
    [
        [_tool_event("tool-call-start", 0, [{"id": "a", "function": {"name": "f"}}])],
        [_tool_event("tool-call-start", 0, {"id": "a", "function": {"name": None}})],
        [_tool_event("tool-call-start", "0", {"id": "a", "function": {"name": "f"}})],
        [_tool_event("tool-call-delta", 0, {"function": {"arguments": "{"}})],
        [
            _tool_event("tool-call-start", 0, {"id": "a", "function": {"name": "f"}}),
            _tool_event("tool-call-delta", 0, {"function": {"arguments": 5}}),
        ],
        [
            _tool_event("tool-call-start", 0, {"id": "a", "function": {"name": "f"}}),
            _tool_event("tool-call-delta", 0, {"function": "{}"}),
        ],
        [SseEvent('{"type":"tool-plan-delta","delta":{"message":{"tool_plan":3}}}')],
    ],
)
def test_stream_refuses_tool_events_of_the_wrong_shape(events: list[SseEvent]) -> None:
    parser = COHERE.stream_parser()
    with pytest.raises(MalformedResponseError):
        for event in events:
            parser.feed(event)


def test_stream_finish_keeps_calls_whose_arguments_are_cut() -> None:
    parser = COHERE.stream_parser()
    parser.feed(_tool_event("tool-call-start", 3, {"id": "a", "function": {"name": "f"}}))
    out = parser.feed(_tool_event("tool-call-delta", 3, {"function": {"arguments": '{"x": '}}))
    assert isinstance(out, Delta) and out.tool_calls == (ToolCallDelta(0, None, None, '{"x": '),)
    parser.feed(SseEvent('{"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}'))
    completion = parser.finish()
    assert completion.finish_reason == "length"
    assert completion.tool_calls == (ToolCall("a", "f", {}, raw_arguments='{"x": '),)
