"""Ollama's native chat API: build (options, explicit stream flag), parse, classify, NDJSON
streams."""

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
    ProviderError,
    QuotaError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
    UnsupportedFeatureError,
)
from flyllm.providers import get_provider
from flyllm.providers.base import Delta, Endpoint, HttpRequest, HttpResponse, SseEvent, ToolSet
from flyllm.providers.ollama import OLLAMA_BASE_URL, OllamaProvider
from flyllm.types import Message, Tool, ToolCall, ToolCallDelta, Usage
from tests.fixtures import API_KEY, fixture_bytes, one_byte, random_reads, replay, response

NOW = 1_750_000_000.0
OLLAMA = OllamaProvider(clock=lambda: NOW)
LOCAL = Endpoint("llama3.2", "", OLLAMA_BASE_URL)
CHAT = [Message("system", "You are terse."), Message("user", "Hello")]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- build ----------------------------------------------------------------------------------


def test_build_url_headers_and_explicit_stream_flag() -> None:
    request = OLLAMA.build(LOCAL, CHAT, {})
    assert request.method == "POST"
    assert request.url == "http://localhost:11434/api/chat"
    assert request.headers == {"content-type": "application/json", "accept": "application/json"}
    assert body_of(request) == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello"},
        ],
        "stream": False,  # Ollama streams when the field is absent
    }
    streamed = OLLAMA.build(LOCAL, CHAT, {}, stream=True)
    assert body_of(streamed)["stream"] is True
    assert get_provider("ollama").stream_framing == "ndjson"


def test_build_with_a_key_sends_bearer_and_keeps_it_out_of_reprs() -> None:
    hosted = Endpoint("gpt-oss:120b", API_KEY, "https://ollama.com/", headers={"X-Trace": "1"})
    request = OLLAMA.build(hosted, CHAT, {})
    assert request.url == "https://ollama.com/api/chat"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["X-Trace"] == "1"
    assert API_KEY not in repr(request) and API_KEY not in repr(hosted)


def test_build_puts_known_params_into_options() -> None:
    params = {
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "stop": ["\n\n", "END", "a", "b", "c", "d"],
        "seed": 42,
    }
    request = OLLAMA.build(LOCAL, CHAT, params)
    assert body_of(request)["options"] == {
        "num_predict": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 20,
        "stop": ["\n\n", "END", "a", "b", "c", "d"],
        "seed": 42,
    }
    assert request.notes == ()


def test_build_clamps_and_merges_extra_options() -> None:
    params = {
        "temperature": 3.5,
        "top_p": 1.5,
        "options": {"num_ctx": 8192},
        "keep_alive": "10m",
        "model": "other",
    }
    request = OLLAMA.build(LOCAL, CHAT, params)
    body = body_of(request)
    assert body["options"] == {"temperature": 2.0, "top_p": 1.0, "num_ctx": 8192}
    assert body["keep_alive"] == "10m" and body["model"] == "llama3.2"
    assert request.notes == (
        "temperature 3.5 clamped to 2.0 for ollama",
        "top_p 1.5 clamped to 1.0 for ollama",
        "model is set by flyllm; left out",
    )


# --- parse ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "finish", "raw", "usage"),
    [
        ("chat.json", "Hello! How are you today?", "stop", "stop", Usage(26, 298, 324)),
        (
            "chat_length.json",
            "The sky is blue because of a phenomenon called Rayleigh",
            "length",
            "length",
            Usage(31, 10, 41),
        ),
        ("chat_cached_prompt.json", "Still blue.", "stop", "stop", Usage(0, 4, 4)),
        (
            "chat_thinking.json",
            "There are 3 r's in strawberry.",
            "stop",
            "stop",
            Usage(18, 147, 165),
        ),
    ],
)
def test_parse_recorded_answers(name: str, text: str, finish: str, raw: str, usage: Usage) -> None:
    completion = OLLAMA.parse(response("ollama", name))
    assert completion.content == text
    assert (completion.finish_reason, completion.raw_finish_reason) == (finish, raw)
    assert completion.usage == usage
    assert completion.model in ("llama3.2", "qwen3:8b")


def test_parse_unknown_done_reason_is_other_and_bad_bodies_are_malformed() -> None:
    body = (
        b'{"model":"m","message":{"role":"assistant","content":"x"},"done":true,'
        b'"done_reason":"unload"}'
    )
    completion = OLLAMA.parse(HttpResponse(200, {}, body))
    assert completion.finish_reason == "other" and completion.raw_finish_reason == "unload"
    with pytest.raises(MalformedResponseError):
        OLLAMA.parse(HttpResponse(200, {}, b'{"model":"m","done":true}'))
    with pytest.raises(MalformedResponseError):
        OLLAMA.parse(HttpResponse(200, {}, b"<html>proxy</html>"))
    with pytest.raises(ServerError, match="runner"):
        OLLAMA.parse(HttpResponse(200, {}, b'{"error":"llama runner crashed"}'))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls", "snippet"),
    [
        (404, "error_not_found.json", NotFoundError, "model 'llama9' not found"),
        (400, "error_bad_request.json", BadRequestError, "cannot unmarshal"),
        (503, "error_busy.json", OverloadedError, "server busy"),
        (500, "error_server.json", ServerError, "runner process"),
        (400, "error_context.json", ContextLengthError, "context length"),
        (500, "error_context.json", ContextLengthError, "context length"),
        (401, "error_unauthorized.json", AuthenticationError, "unauthorized"),
        (429, "error_usage_limit.json", QuotaError, "usage limit"),
    ],
)
def test_classify_error_bodies(
    status: int, name: str, cls: type[ProviderError], snippet: str
) -> None:
    err = OLLAMA.classify_error(response("ollama", name, status))
    assert type(err) is cls
    assert snippet in err.message
    assert err.status == status and err.provider == "ollama"


def test_rate_limit_with_retry_hints_and_non_json_bodies() -> None:
    err = OLLAMA.classify_error(HttpResponse(429, {"retry-after": "7"}, b'{"error":"slow down"}'))
    assert type(err) is RateLimitError and err.retry_after == 7.0 and err.retryable
    gateway = OLLAMA.classify_error(HttpResponse(502, {}, b"<html><h1>502 Bad Gateway</h1></html>"))
    assert type(gateway) is ServerError and "502 Bad Gateway" in gateway.message
    empty = OLLAMA.classify_error(HttpResponse(500, {}, b""))
    assert empty.message == "HTTP 500 with an empty body"


# --- streams --------------------------------------------------------------------------------


def _replays(name: str) -> list[Any]:
    data = fixture_bytes("ollama", name)
    runs = [replay(OLLAMA.stream_parser(), [data], "ndjson")]
    runs.append(replay(OLLAMA.stream_parser(), one_byte(data), "ndjson"))
    runs += [replay(OLLAMA.stream_parser(), random_reads(data, s), "ndjson") for s in range(15)]
    return runs


def test_stream_deltas_counts_and_split_independence() -> None:
    runs = _replays("stream_basic.ndjson")
    first = runs[0]
    assert first.deltas == ["Hello", "!", " 👋", " What can I do for you today?"]
    assert first.completion is not None and first.done
    assert first.completion.content == "Hello! 👋 What can I do for you today?"
    assert first.completion.usage == Usage(10, 17, 27)
    assert first.completion.finish_reason == "stop" and first.completion.model == "gemma2:2b"
    assert all(r.deltas == first.deltas and r.completion == first.completion for r in runs)


def test_stream_with_crlf_and_no_final_newline() -> None:
    for run in _replays("stream_crlf_length.ndjson"):
        assert run.completion is not None
        assert run.completion.content == "Why not"
        assert run.completion.finish_reason == "length"
        assert run.completion.usage == Usage(12, 2, 14)


@pytest.mark.parametrize(
    ("name", "cls", "partial"),
    [
        ("stream_error.ndjson", ServerError, "Once upon"),
        ("stream_truncated.ndjson", MalformedResponseError, "Once upon a"),
    ],
)
def test_failing_streams(name: str, cls: type[ProviderError], partial: str) -> None:
    for run in _replays(name):
        assert type(run.error) is cls and run.text == partial
        if cls is ServerError:
            assert run.error.partial_content == partial and run.error.status == 200


def test_stream_without_its_done_line_is_interrupted() -> None:
    parser = OLLAMA.stream_parser()
    line = '{"model":"m","message":{"role":"assistant","content":"half"},"done":false}'
    assert parser.feed(SseEvent(line)) == "half"
    assert not parser.done
    with pytest.raises(StreamInterruptedError) as caught:
        parser.finish()
    assert caught.value.partial_content == "half" and caught.value.provider == "ollama"


def test_stream_error_line_with_a_context_message_and_lines_after_done() -> None:
    parser = OLLAMA.stream_parser()
    with pytest.raises(ContextLengthError):
        parser.feed(SseEvent('{"error":"the input length exceeds the context length"}'))
    done = OLLAMA.stream_parser()
    done.feed(SseEvent('{"model":"m","message":{"content":"a"},"done":true,"eval_count":1}'))
    assert done.feed(SseEvent('{"model":"m","message":{"content":"late"},"done":false}')) == ""
    assert done.finish().content == "a"
    with pytest.raises(MalformedResponseError):
        OLLAMA.stream_parser().feed(SseEvent("[1, 2]"))


# --- tools ----------------------------------------------------------------------------------

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def _tools(choice: str = "auto", parallel: bool | None = None) -> ToolSet:
    return ToolSet((WEATHER, Tool("get_time")), choice, parallel)


def test_build_offers_tools_as_ollama_takes_them() -> None:
    request = OLLAMA.build(LOCAL, CHAT, {}, tools=_tools())
    body = body_of(request)
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
    assert "tool_choice" not in body and request.notes == ()


def test_build_without_a_tool_choice_on_the_wire() -> None:
    assert OLLAMA.capabilities == frozenset({"tools", "structured_output", "images", "embeddings"})
    assert "tools" not in body_of(OLLAMA.build(LOCAL, CHAT, {}, tools=_tools("none")))
    required = OLLAMA.build(LOCAL, CHAT, {}, tools=_tools("required", parallel=False))
    assert len(body_of(required)["tools"]) == 2 and "tool_choice" not in body_of(required)
    assert any("required" in n for n in required.notes)
    assert any("parallel" in n for n in required.notes)
    with pytest.raises(UnsupportedFeatureError) as caught:
        OLLAMA.build(LOCAL, CHAT, {}, tools=_tools("get_weather"))
    assert caught.value.feature == "named_tool_choice" and caught.value.provider == "ollama"


def test_build_sends_calls_as_objects_and_results_with_the_tool_name() -> None:
    calls = (
        ToolCall("toolu_01A", "get_weather", {"city": "Oslo"}),
        ToolCall("call_x", "get_time", {}, raw_arguments="{cut"),
    )
    conversation = [
        Message.user("Weather in Oslo?"),
        Message.assistant("", calls),
        Message.tool_result("toolu_01A", {"temp": 3}),
        Message.tool_result("call_x", "bad zone", is_error=True, name="get_time"),
        Message("tool", "orphan", tool_call_id="nowhere"),
    ]
    messages = body_of(OLLAMA.build(LOCAL, conversation, {}, tools=_tools()))["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "toolu_01A", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            {"id": "call_x", "function": {"name": "get_time", "arguments": {}}},
        ],
    }
    assert messages[2] == {
        "role": "tool",
        "content": '{"temp": 3}',
        "tool_name": "get_weather",
        "tool_call_id": "toolu_01A",
    }
    assert messages[3]["tool_name"] == "get_time" and messages[3]["content"] == "Error: bad zone"
    assert "tool_name" not in messages[4]


def test_parse_whole_calls_without_ids() -> None:
    completion = OLLAMA.parse(response("ollama", "chat_tool_calls.json"))
    assert completion.finish_reason == "tool_calls" and completion.raw_finish_reason == "stop"
    first, second = completion.tool_calls
    assert (first.name, first.arguments) == ("get_weather", {"city": "Oslo"})
    assert (second.name, second.arguments) == ("get_weather", {"city": "Lima", "days": 2})
    assert first.id.startswith("call_") and second.id.startswith("call_") and first.id != second.id
    assert completion.content == "" and completion.usage == Usage(122, 33, 155)


def _answer(calls: Any) -> HttpResponse:
    body = {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": calls},
            "done_reason": "stop", "done": True}  # fmt: skip
    return HttpResponse(200, {}, json.dumps(body).encode())


def test_parse_keeps_ids_and_reads_text_arguments() -> None:
    calls = [
        {"id": "call_1", "function": {"name": "f", "arguments": {"a": [1, {"b": None}]}}},
        {"function": {"name": "g", "arguments": '{"x": 1}'}},
        {"function": {"name": "h", "arguments": "not json"}},
        {"function": {"name": "k"}},
    ]
    got = OLLAMA.parse(_answer(calls)).tool_calls
    assert got[0] == ToolCall("call_1", "f", {"a": [1, {"b": None}]})
    assert got[1].arguments == {"x": 1} and got[2].raw_arguments == "not json"
    assert got[3].arguments == {} and got[3].raw_arguments is None


@pytest.mark.parametrize(
    "calls",
    [
        {"function": {"name": "f"}},
        [7],
        [{"function": ["f"]}],
        [{"function": {"name": ["f"], "arguments": {}}}],
        [{"function": {"name": "", "arguments": {}}}],
        [{"id": 3, "function": {"name": "f", "arguments": {}}}],
        [{"function": {"name": "f", "arguments": [1, 2]}}],
        [{"function": {"name": "f", "arguments": 12}}],
    ],
)
def test_parse_refuses_tool_calls_of_the_wrong_shape(calls: Any) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        OLLAMA.parse(_answer(calls))
    assert "tool_calls" in caught.value.message


@pytest.mark.parametrize("depth", [5, 900, 2_000, 100_000])
def test_deeply_nested_arguments_end_in_a_call_or_a_typed_error(depth: int) -> None:
    deep = '{"a":' * depth + "1" + "}" * depth
    head = b'{"message":{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":'
    answer = HttpResponse(200, {}, head + deep.encode() + b'}}]},"done":true}')
    try:
        completion = OLLAMA.parse(answer)
    except MalformedResponseError:
        assert depth > 900  # deeper than Python's JSON reader goes: refused, typed
    else:
        assert completion.tool_calls[0].name == "f" and depth <= 900


def test_model_without_tools_is_an_unsupported_feature() -> None:
    err = OLLAMA.classify_error(response("ollama", "error_no_tools.json", 400))
    assert type(err) is UnsupportedFeatureError and err.feature == "tools"
    assert err.status == 400 and "gemma2:2b does not support tools" in err.message
    assert type(OLLAMA.classify_error(response("ollama", "error_bad_request.json", 400))) is (
        BadRequestError
    )


def test_stream_whole_calls_one_delta_each_at_every_split_point() -> None:
    data = fixture_bytes("ollama", "stream_tool_calls.ndjson")
    first = replay(OLLAMA.stream_parser(), [data], "ndjson")
    assert first.deltas == ["Checking", " now."]
    assert first.tool_deltas[0] == ToolCallDelta(
        0, "call_k2n8zq1v", "get_weather", '{"city":"Oslo"}'
    )
    second = first.tool_deltas[1]
    assert (second.index, second.name, second.arguments_delta) == (
        1,
        "get_time",
        '{"zone":"America/Lima"}',
    )
    assert second.id is not None and second.id.startswith("call_")
    completion = first.completion
    assert completion is not None and completion.finish_reason == "tool_calls"
    assert completion.content == "Checking now."
    assert [c.arguments for c in completion.tool_calls] == [
        {"city": "Oslo"},
        {"zone": "America/Lima"},
    ]
    for i in range(1, len(data)):
        run = replay(OLLAMA.stream_parser(), [data[:i], data[i:]], "ndjson")
        assert run.deltas == first.deltas and run.completion is not None
        assert [(d.index, d.name, d.arguments_delta) for d in run.tool_deltas] == [
            (d.index, d.name, d.arguments_delta) for d in first.tool_deltas
        ]
        assert run.tool_deltas[0].id == "call_k2n8zq1v"
        assert [c.arguments for c in run.completion.tool_calls] == [
            c.arguments for c in completion.tool_calls
        ]


def test_stream_refuses_a_call_of_the_wrong_shape() -> None:
    line = '{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":1}}]}}'
    with pytest.raises(MalformedResponseError):
        OLLAMA.stream_parser().feed(SseEvent(line))


def test_stream_calls_on_the_done_line_count_too() -> None:
    parser = OLLAMA.stream_parser()
    line = {"model": "m", "message": {"role": "assistant", "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
            "done": True, "done_reason": "stop", "eval_count": 4}  # fmt: skip
    out = parser.feed(SseEvent(json.dumps(line)))
    assert isinstance(out, Delta) and out.tool_calls[0].name == "f"
    completion = parser.finish()
    assert completion.finish_reason == "tool_calls" and completion.tool_calls[0].arguments == {
        "x": 1
    }
    assert parser.feed(SseEvent(json.dumps(line))) == ""  # nothing after the end
