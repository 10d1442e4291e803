"""Tool calling on the OpenAI family (OpenAI, openai_compatible, Azure, the presets): the
request's tools and tool turns, tool calls in answers and in streams, hostile shapes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from flyllm.errors import BadRequestError, MalformedResponseError, UnsupportedFeatureError
from flyllm.providers.azure import AzureOpenAIProvider
from flyllm.providers.base import Delta, Endpoint, HttpRequest, HttpResponse, SseEvent, ToolSet
from flyllm.providers.openai import OPENAI_BASE_URL, OpenAIProvider
from flyllm.providers.presets import PRESETS
from flyllm.types import Message, ProviderType, Tool, ToolCall
from tests.fixtures import API_KEY, fixture_bytes, one_byte, random_reads, replay, response

OPENAI = OpenAIProvider()
COMPAT = OpenAIProvider.compatible()
ENDPOINT = Endpoint("gpt-4o-mini", API_KEY, OPENAI_BASE_URL)
LOCAL = Endpoint("llama3", "", "http://127.0.0.1:8000/v1")
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = Tool("get_time")
ASK = [Message.user("Weather in Oslo and Lima?")]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


def answer(message: dict[str, Any], finish: str = "tool_calls") -> HttpResponse:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    return HttpResponse(200, {}, json.dumps({"choices": [choice]}).encode())


# --- request --------------------------------------------------------------------------------


def test_tools_are_sent_in_openai_shape_without_strict_or_defaults() -> None:
    body = body_of(OPENAI.build(ENDPOINT, ASK, {}, tools=ToolSet((WEATHER, CLOCK))))
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
    # "auto" is every API's default and parallel None is the provider's: neither is sent.
    assert "tool_choice" not in body and "parallel_tool_calls" not in body


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("none", "none"),
        ("required", "required"),
        ("get_time", {"type": "function", "function": {"name": "get_time"}}),
    ],
)
@pytest.mark.parametrize("parallel", [True, False])
def test_tool_choice_and_parallel_switch(choice: str, wire: Any, parallel: bool) -> None:
    tools = ToolSet((WEATHER, CLOCK), choice, parallel)
    body = body_of(OPENAI.build(ENDPOINT, ASK, {}, tools=tools))
    assert body["tool_choice"] == wire
    assert body["parallel_tool_calls"] is parallel


def test_a_pass_through_parameter_wins_over_the_built_tools() -> None:
    custom = [{"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}]
    body = body_of(OPENAI.build(ENDPOINT, ASK, {"tools": custom}, tools=ToolSet((WEATHER,))))
    assert body["tools"] == custom


def test_tool_turns_of_a_conversation_from_another_provider() -> None:
    """An Anthropic-started conversation: foreign ids kept as they are (OpenAI takes any
    string), no text on the assistant turn (content null), raw arguments replayed verbatim,
    a failed result marked in its text."""
    calls = (
        ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "Oslo"}),
        ToolCall("toolu_02", "get_time", {}, raw_arguments='{"zone": "Eur'),
    )
    turns = [
        *ASK,
        Message("assistant", "", tool_calls=calls, provider_data={"anthropic": {"x": 1}}),
        Message.tool_result("toolu_01A09q90qw90lq917835lq9", "3 degrees"),
        Message.tool_result("toolu_02", "bad zone", is_error=True),
    ]
    body = body_of(OPENAI.build(ENDPOINT, turns, {}))
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"zone": "Eur'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "3 degrees"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "Error: bad zone"},
    ]
    assert "anthropic" not in request_text(body)


def request_text(body: dict[str, Any]) -> str:
    return json.dumps(body)


def test_an_assistant_turn_with_text_and_calls_keeps_both() -> None:
    turn = Message.assistant("Checking.", [ToolCall("call_1", "get_weather", {"city": "Oslo"})])
    body = body_of(OPENAI.build(ENDPOINT, [*ASK, turn], {}))
    assert body["messages"][1]["content"] == "Checking."


def test_azure_sends_the_same_tools_body() -> None:
    azure = AzureOpenAIProvider()
    endpoint = Endpoint("gpt-4o", API_KEY, "https://r.openai.azure.com")
    tools = ToolSet((WEATHER,), "get_weather", False)
    body = body_of(azure.build(endpoint, ASK, {}, tools=tools))
    openai_body = body_of(OPENAI.build(ENDPOINT, ASK, {}, tools=tools))
    for key in ("tools", "tool_choice", "parallel_tool_calls"):
        assert body[key] == openai_body[key]


def test_perplexity_has_no_tool_calling_and_refuses_before_sending() -> None:
    by_kind = {p.kind: p for p in PRESETS}
    perplexity = by_kind[ProviderType.PERPLEXITY].provider()
    assert "tools" not in perplexity.capabilities
    assert "tools" in by_kind[ProviderType.GROQ].provider().capabilities
    endpoint = Endpoint("sonar", API_KEY, perplexity.default_base_url)
    with pytest.raises(UnsupportedFeatureError, match="no tool calling") as caught:
        perplexity.build(endpoint, ASK, {}, tools=ToolSet((WEATHER,)))
    assert caught.value.feature == "tools"
    perplexity.build(endpoint, ASK, {})  # text requests still go


# --- response -------------------------------------------------------------------------------


def test_parallel_calls_in_the_models_order_with_arguments_parsed() -> None:
    completion = OPENAI.parse(response("openai", "tool_calls_parallel.json"))
    assert completion.finish_reason == "tool_calls"
    assert completion.raw_finish_reason == "tool_calls"
    assert completion.content == ""
    assert completion.tool_calls == (
        ToolCall("call_oslo1", "get_weather", {"city": "Oslo"}),
        ToolCall("call_lima2", "get_weather", {"city": "Lima"}),
        ToolCall("call_cut3", "get_time", {}, raw_arguments='{"zone": "Europe/Os'),
    )


def test_the_recorded_example_answer() -> None:
    (call,) = OPENAI.parse(response("openai", "tool_calls.json")).tool_calls
    assert call == ToolCall("call_abc123", "get_current_weather", {"location": "Boston, MA"})


def test_a_call_without_an_id_gets_a_canonical_one_and_stop_means_tool_calls() -> None:
    message = {"content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    completion = COMPAT.parse(answer(message, finish="stop"))
    (call,) = completion.tool_calls
    assert call.id.startswith("call_") and len(call.id) == 29
    assert (completion.finish_reason, completion.raw_finish_reason) == ("tool_calls", "stop")


def test_arguments_sent_as_an_object_are_accepted() -> None:
    message = {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": [1]}}}]}
    (call,) = COMPAT.parse(answer(message)).tool_calls
    assert call.arguments == {"a": [1]} and call.raw_arguments is None


@pytest.mark.parametrize(
    ("tool_calls", "says"),
    [
        ({"id": "c"}, "message.tool_calls of the wrong type"),
        (["call"], "message.tool_calls[0] of the wrong type"),
        ([{"id": 7, "function": {"name": "f"}}], "tool_calls[0].id of the wrong type"),
        ([{"id": "c", "function": "f"}], "tool_calls[0].function of the wrong type"),
        ([{"id": "c", "function": {"name": ["f"]}}], "function.name of the wrong type"),
        ([{"id": "c", "function": {"arguments": "{}"}}], "without a name"),
        ([{"id": "c", "function": {"name": "f", "arguments": 5}}], "arguments of the wrong"),
        ([{"id": "c", "function": {"name": "f", "arguments": [1]}}], "arguments of the wrong"),
        ([{"id": "c", "function": {"name": "f", "arguments": "[" * 100_000}}], "too deeply"),
        ([{"id": "c", "function": {"name": "f", "arguments": "x" * ((4 << 20) + 1)}}], "over"),
        ([{"id": "c", "function": {"name": "f"}}] * 257, "more than 256"),
    ],
)
def test_hostile_tool_calls_are_malformed_responses(tool_calls: Any, says: str) -> None:
    with pytest.raises(MalformedResponseError, match=re.escape(says)):
        OPENAI.parse(answer({"content": None, "tool_calls": tool_calls}))


def test_honest_arguments_that_are_not_json_are_kept_raw() -> None:
    message = {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "Oslo"}}]}
    (call,) = OPENAI.parse(answer(message)).tool_calls
    assert (call.arguments, call.raw_arguments) == ({}, "Oslo")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            400,
            {
                "message": "Unsupported parameter: 'tools' is not supported with this model.",
                "type": "invalid_request_error",
                "param": "tools",
                "code": "unsupported_parameter",
            },
        ),
        (400, {"message": "registry.ollama.ai/library/gemma:2b does not support tools"}),
        (
            400,
            {
                "message": '"auto" tool choice requires --enable-auto-tool-choice and '
                "--tool-call-parser to be set",
                "type": "BadRequestError",
            },
        ),
    ],
)
def test_a_model_without_tools_is_an_unsupported_feature(
    status: int, error: dict[str, Any]
) -> None:
    failed = HttpResponse(status, {"x-request-id": "r9"}, json.dumps({"error": error}).encode())
    err = OPENAI.classify_error(failed)
    assert isinstance(err, UnsupportedFeatureError)
    assert (err.feature, err.status, err.request_id) == ("tools", 400, "r9")


def test_other_unsupported_parameters_stay_bad_requests() -> None:
    error = {
        "message": "Unsupported parameter: 'temperature' is not supported with this model.",
        "code": "unsupported_parameter",
    }
    failed = HttpResponse(400, {}, json.dumps({"error": error}).encode())
    assert type(OPENAI.classify_error(failed)) is BadRequestError


# --- streams --------------------------------------------------------------------------------

EXPECTED = (
    ToolCall("call_oslo1", "get_weather", {"city": "Oslo"}),
    ToolCall("call_lima2", "get_weather", {"city": "Lima"}),
)


def test_stream_text_then_calls_as_canonical_deltas() -> None:
    result = replay(OPENAI.stream_parser(), [fixture_bytes("openai", "stream_tool_calls.txt")])
    assert result.error is None and result.completion is not None
    assert result.text == "Let me check."
    deltas = result.tool_deltas
    assert [(d.index, d.id, d.name) for d in deltas if d.id] == [
        (0, "call_oslo1", "get_weather"),
        (1, "call_lima2", "get_weather"),
    ]
    assert [d.index for d in deltas] == [0, 0, 0, 0, 1, 1, 1]
    assert all(d.id is None and d.name is None for d in deltas if d.arguments_delta)
    assert "".join(d.arguments_delta for d in deltas if d.index == 0) == '{"city":"Oslo"}'
    assert result.completion.tool_calls == EXPECTED
    assert result.completion.content == "Let me check."
    assert result.completion.finish_reason == "tool_calls"
    assert result.completion.usage.total_tokens == 120


def test_every_split_point_gives_the_same_stream() -> None:
    data = fixture_bytes("openai", "stream_tool_calls.txt")
    whole = replay(OPENAI.stream_parser(), [data])
    assert whole.completion is not None
    for cut in range(1, len(data)):
        split = replay(OPENAI.stream_parser(), [data[:cut], data[cut:]])
        assert split.completion == whole.completion, cut
        assert split.tool_deltas == whole.tool_deltas, cut
    for reads in (one_byte(data), random_reads(data, seed=7)):
        assert replay(OPENAI.stream_parser(), reads).completion == whole.completion


def test_a_server_that_reuses_index_zero_for_each_call() -> None:
    result = replay(
        COMPAT.stream_parser(), [fixture_bytes("presets", "vllm_stream_reused_index.txt")]
    )
    assert result.completion is not None
    assert result.completion.tool_calls == (
        ToolCall("chatcmpl-tool-a", "get_weather", {"city": "Oslo"}),
        ToolCall("chatcmpl-tool-b", "get_weather", {"city": "Lima"}),
    )
    assert [(d.index, d.id) for d in result.tool_deltas] == [
        (0, "chatcmpl-tool-a"),
        (0, None),
        (1, "chatcmpl-tool-b"),
    ]


def chunk(tool_calls: Any) -> SseEvent:
    delta = {"tool_calls": tool_calls}
    return SseEvent(json.dumps({"choices": [{"index": 0, "delta": delta}]}))


@pytest.mark.parametrize(
    ("tool_calls", "says"),
    [
        ({"index": 0}, "delta.tool_calls of the wrong type"),
        ([3], r"delta.tool_calls\[0\] of the wrong type"),
        ([{"index": "0", "function": {"name": "f"}}], "index of the wrong type"),
        ([{"index": True, "function": {"name": "f"}}], "index of the wrong type"),
        ([{"index": 0, "function": {"arguments": "{}"}}], "starts without a name"),
        ([{"index": 0, "id": "c", "function": {"name": 1}}], "name of the wrong type"),
        ([{"index": 0, "id": "c", "function": {"name": "f", "arguments": 1}}], "arguments"),
        ([{"index": i, "function": {"name": "f"}} for i in range(257)], "more than 256"),
    ],
)
def test_hostile_stream_fragments(tool_calls: Any, says: str) -> None:
    parser = OPENAI.stream_parser()
    with pytest.raises(MalformedResponseError, match=says):
        parser.feed(chunk(tool_calls))


def test_stream_arguments_are_bounded() -> None:
    parser = OPENAI.stream_parser()
    parser.feed(chunk([{"index": 0, "id": "c", "function": {"name": "f"}}]))
    piece = [{"index": 0, "function": {"arguments": "x" * (1 << 20)}}]
    with pytest.raises(MalformedResponseError, match="over"):
        for _ in range(5):
            parser.feed(chunk(piece))


def test_stream_arguments_nested_too_deeply() -> None:
    parser = OPENAI.stream_parser()
    parser.feed(chunk([{"index": 0, "id": "c", "function": {"name": "f", "arguments": "["}}]))
    parser.feed(chunk([{"index": 0, "function": {"arguments": "[" * 100_000}}]))
    parser.feed(SseEvent("[DONE]"))
    with pytest.raises(MalformedResponseError, match="too deeply"):
        parser.finish()


def test_a_stream_cut_inside_a_call_is_interrupted_with_the_text_so_far() -> None:
    data = fixture_bytes("openai", "stream_tool_calls.txt")
    cut = data.index(b"data: ", data.index(b"Lima"))  # the last arguments, no finish
    result = replay(OPENAI.stream_parser(), [data[:cut]])
    assert result.error is not None and result.error.kind.value == "stream_interrupted"
    assert result.error.partial_content == "Let me check."
    assert len(result.tool_deltas) == 7


@pytest.mark.parametrize(
    ("version", "sent", "notes"),
    [
        ("2024-10-21", True, 0),
        ("v1", True, 0),
        ("2024-07-01-preview", True, 0),
        ("2024-06-01", False, 1),
        ("2023-12-01-preview", False, 1),
    ],
)
def test_azure_api_versions_and_the_parallel_switch(version: str, sent: bool, notes: int) -> None:
    endpoint = Endpoint("gpt-4o", API_KEY, "https://r.openai.azure.com", api_version=version)
    request = AzureOpenAIProvider().build(
        endpoint, ASK, {}, tools=ToolSet((WEATHER,), "auto", True)
    )
    assert ("parallel_tool_calls" in body_of(request)) is sent
    assert "tools" in body_of(request) and len(request.notes) == notes


def test_azure_api_versions_before_tools_are_refused() -> None:
    endpoint = Endpoint("gpt-4", API_KEY, "https://r.openai.azure.com", api_version="2023-05-15")
    with pytest.raises(UnsupportedFeatureError, match="2023-12-01-preview") as caught:
        AzureOpenAIProvider().build(endpoint, ASK, {}, tools=ToolSet((WEATHER,)))
    assert caught.value.feature == "tools"
    AzureOpenAIProvider().build(endpoint, ASK, {})


def test_an_empty_fragment_is_no_delta() -> None:
    parser = OPENAI.stream_parser()
    first = parser.feed(chunk([{"index": 0, "id": "c", "function": {"name": "f"}}]))
    assert isinstance(first, Delta) and first.tool_calls[0].id == "c"
    assert parser.feed(chunk([{"index": 0, "function": {"arguments": ""}}])) == ""
