"""Anthropic tool calling: tools and tool_choice, tool_use / tool_result turns (also of a
conversation that came from another provider), thinking blocks sent back, tool calls in
answers and streams (byte-split), hostile shapes, and "does not support tools"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import BadRequestError, MalformedResponseError, UnsupportedFeatureError
from flyllm.params import ToolSet
from flyllm.providers._tools import charset_id
from flyllm.providers.anthropic import ANTHROPIC_BASE_URL, AnthropicProvider
from flyllm.providers.base import Endpoint, HttpResponse
from flyllm.types import Message, Tool, ToolCall, ToolCallDelta
from tests.fixtures import API_KEY, fixture_bytes, one_byte, random_reads, replay, response

ANTHROPIC = AnthropicProvider(clock=lambda: 1_755_780_000.0)
ENDPOINT = Endpoint("claude-sonnet-4-5", API_KEY, ANTHROPIC_BASE_URL)
WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = Tool("now")  # no description, default schema
THINKING = [
    {"type": "thinking", "thinking": "Two cities.", "signature": "EuYBCkQYAiJAcP3p"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3p"},
]


def body(messages: list[Message], tools: ToolSet | None = None, **params: Any) -> Any:
    return json.loads(ANTHROPIC.build(ENDPOINT, messages, params, tools=tools).body)


def turns(messages: list[Message]) -> Any:
    return body(messages)["messages"]


# --- request: tools and tool_choice ---------------------------------------------------------


def test_tools_are_sent_with_input_schema_and_auto_choice() -> None:
    sent = body([Message.user("Weather in Oslo?")], ToolSet((WEATHER, CLOCK)))
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": dict(WEATHER.parameters),
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert sent["tool_choice"] == {"type": "auto"}


def test_schema_without_type_gets_object() -> None:
    tool = Tool("t", parameters={"properties": {"a": {"type": "integer"}}})
    sent = body([Message.user("x")], ToolSet((tool,)))
    assert sent["tools"][0]["input_schema"] == {
        "properties": {"a": {"type": "integer"}},
        "type": "object",
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "wire"),
    [
        ("auto", None, {"type": "auto"}),
        ("auto", True, {"type": "auto"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("get_weather", None, {"type": "tool", "name": "get_weather"}),
        (
            "get_weather",
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),  # ToolChoiceNone takes no parallel flag
    ],
)
def test_tool_choice_shapes(choice: str, parallel: bool | None, wire: dict[str, Any]) -> None:
    sent = body([Message.user("x")], ToolSet((WEATHER,), choice, parallel))
    assert sent["tool_choice"] == wire


def test_caller_params_cannot_replace_tools() -> None:
    request = ANTHROPIC.build(
        ENDPOINT,
        [Message.user("x")],
        {"tools": [], "tool_choice": {"type": "any"}},
        tools=ToolSet((WEATHER,)),
    )
    sent = json.loads(request.body)
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["tool_choice"] == {"type": "auto"}
    assert len(request.notes) == 2


def test_raw_tool_params_pass_through_without_request_tools() -> None:
    server_tool = [{"type": "web_search_20250305", "name": "web_search"}]
    request = ANTHROPIC.build(ENDPOINT, [Message.user("x")], {"tools": server_tool})
    assert json.loads(request.body)["tools"] == server_tool and request.notes == ()


def test_no_tools_no_tool_fields() -> None:
    sent = body([Message.user("x")])
    assert "tools" not in sent and "tool_choice" not in sent


# --- request: the conversation --------------------------------------------------------------

OSLO = ToolCall("toolu_01A", "get_weather", {"city": "Oslo"})
LIMA = ToolCall("toolu_01B", "get_weather", {"city": "Lima"})


def test_tool_turns_in_anthropic_shape() -> None:
    sent = turns(
        [
            Message.user("Weather in Oslo and Lima?"),
            Message.assistant("Checking.", [OSLO, LIMA]),
            Message.tool_result("toolu_01A", "12 C"),
            Message.tool_result("toolu_01B", "no data", is_error=True),
        ]
    )
    assert sent == [
        {"role": "user", "content": "Weather in Oslo and Lima?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": OSLO.arguments,
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "get_weather",
                    "input": LIMA.arguments,
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "12 C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": "no data",
                    "is_error": True,
                },
            ],
        },
    ]


def test_user_text_after_results_is_merged_after_them() -> None:
    sent = turns(
        [
            Message.user("q"),
            Message.assistant("", [OSLO, LIMA]),
            Message.tool_result("toolu_01A", "12 C"),
            Message.user("Also: be brief."),
            Message.tool_result("toolu_01B", "20 C"),  # late result still goes before the text
            Message.user("   "),  # blank text: no block at all
        ]
    )
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "12 C"},
            {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "20 C"},
            {"type": "text", "text": "Also: be brief."},
        ],
    }
    assert len(sent) == 3


def test_blank_assistant_turn_without_calls_is_left_out() -> None:
    messages = [Message.user("a"), Message.assistant(" "), Message.user("b")]
    request = ANTHROPIC.build(ENDPOINT, messages, {})
    assert json.loads(request.body)["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]
    assert request.notes == (
        "an empty assistant turn left out for anthropic (it rejects blank text)",
    )


def test_duplicate_result_is_left_out_with_a_note() -> None:
    messages = [
        Message.user("q"),
        Message.assistant("", [OSLO]),
        Message.tool_result("toolu_01A", "first"),
        Message.tool_result("toolu_01A", "second"),
    ]
    request = ANTHROPIC.build(ENDPOINT, messages, {})
    sent = json.loads(request.body)["messages"]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "first"}
    ]
    assert request.notes == ("a second tool result for call 'toolu_01A' left out for anthropic",)


def test_a_conversation_from_openai_is_accepted_shape() -> None:
    """ids of another format, no provider_data, content "" on the assistant turn with calls,
    raw_arguments set, a blank result."""
    odd = ToolCall("call_abc.def:1", "get_weather", {}, raw_arguments='{"city": "Os')
    plain = ToolCall("call_Z9", "get_weather", {"city": "Lima"})
    sent = turns(
        [
            Message.user("q"),
            Message.assistant("", [odd, plain]),
            Message.tool_result("call_abc.def:1", "bad arguments", is_error=True),
            Message.tool_result("call_Z9", " "),
        ]
    )
    rewritten = charset_id("call_abc.def:1")
    assert rewritten != "call_abc.def:1" and rewritten.replace("_", "").isalnum()
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": rewritten, "name": "get_weather", "input": {}},
            {"type": "tool_use", "id": "call_Z9", "name": "get_weather", "input": {"city": "Lima"}},
        ],
    }
    assert sent[2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": rewritten,
            "content": "bad arguments",
            "is_error": True,
        },
        {"type": "tool_result", "tool_use_id": "call_Z9"},
    ]


def test_thinking_blocks_go_back_first_and_only_from_anthropic_key() -> None:
    data: dict[str, Any] = {
        "anthropic": {"thinking_blocks": THINKING},
        "google": {"thought_signature": "x"},
    }
    turn = Message("assistant", "", tool_calls=(OSLO,), provider_data=data)
    sent = turns([Message.user("q"), turn, Message.tool_result("toolu_01A", "12 C")])
    assert sent[1]["content"] == [
        *THINKING,
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Oslo"}},
    ]


def test_other_families_state_and_odd_blocks_are_not_sent() -> None:
    junk: dict[str, Any] = {
        "google": {"thinking_blocks": THINKING},
        "anthropic": {"thinking_blocks": [{"type": "text", "text": "x"}, "nope", THINKING[1]]},
    }
    turn = Message("assistant", "Hi", provider_data=junk)
    assert turns([Message.user("q"), turn])[1]["content"] == [
        THINKING[1],
        {"type": "text", "text": "Hi"},
    ]
    only_google = Message("assistant", "Hi", provider_data={"google": junk["google"]})
    assert turns([Message.user("q"), only_google])[1] == {"role": "assistant", "content": "Hi"}


# --- response ---------------------------------------------------------------------------------


def test_parse_parallel_tool_use() -> None:
    completion = ANTHROPIC.parse(response("anthropic", "message_tool_use_parallel.json"))
    assert completion.content == "I'll check both cities."
    assert completion.finish_reason == "tool_calls" and completion.raw_finish_reason == "tool_use"
    assert completion.tool_calls == (
        ToolCall(
            "toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "Oslo", "unit": "celsius"}
        ),
        ToolCall(
            "toolu_01B7Ctm2o3oq0WkP8uEr3xZf", "get_weather", {"city": "Lima", "unit": "celsius"}
        ),
    )
    assert completion.provider_data == {}


def test_parse_keeps_thinking_blocks_as_provider_data() -> None:
    completion = ANTHROPIC.parse(response("anthropic", "message_thinking_tool.json"))
    assert completion.tool_calls == (
        ToolCall("toolu_01D7FLrfh4GYq7yT1ULFeyMV", "get_stock_price", {"ticker": "^GSPC"}),
    )
    blocks = completion.provider_data["anthropic"]["thinking_blocks"]
    assert [b["type"] for b in blocks] == ["thinking"]
    assert blocks[0]["signature"].startswith("EqQB")


def _answer(blocks: Any) -> HttpResponse:
    data = {"content": blocks, "stop_reason": "tool_use", "usage": {}}
    return HttpResponse(200, {}, json.dumps(data).encode())


def test_parse_tool_use_without_id_gets_a_canonical_one() -> None:
    completion = ANTHROPIC.parse(_answer([{"type": "tool_use", "name": "now", "input": {}}]))
    (call,) = completion.tool_calls
    assert call.id.startswith("call_") and len(call.id) == 29
    assert call.name == "now" and call.arguments == {}


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "block",
    [
        "tool_use",
        {"type": "tool_use", "id": 7, "name": "now", "input": {}},
        {"type": "tool_use", "id": "toolu_1", "name": None, "input": {}},
        {"type": "tool_use", "id": "toolu_1", "name": ["now"], "input": {}},
        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": "{}"},
        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": [1]},
        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": _deep(65)},
    ],
)
def test_parse_hostile_tool_use_is_malformed(block: Any) -> None:
    with pytest.raises(MalformedResponseError):
        ANTHROPIC.parse(_answer([block]))


def test_parse_arguments_nested_past_python_is_malformed() -> None:
    raw = b'{"content":[{"type":"tool_use","id":"t","name":"n","input":' + b'{"a":' * 5000
    raw += b"1" + b"}" * 5000 + b"}]}"
    with pytest.raises(MalformedResponseError):
        ANTHROPIC.parse(HttpResponse(200, {}, raw))


# --- streams ----------------------------------------------------------------------------------

STREAM = fixture_bytes("anthropic", "stream_tool_parallel_thinking.txt")
EXPECTED_DELTAS = [
    ToolCallDelta(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", ""),
    ToolCallDelta(0, arguments_delta='{"city": "Os'),
    ToolCallDelta(1, "toolu_01VmRkUe6M6z4vD2FQ8yK3bN", "get_weather", ""),
    ToolCallDelta(0, arguments_delta='lo"}'),
    ToolCallDelta(1, arguments_delta='{"city": '),
    ToolCallDelta(1, arguments_delta='"Lima", "note": "é ✓"}'),
]


def _check_parallel(result: Any) -> None:
    assert result.error is None, result.error
    assert result.text == "Checking Oslo and Lima."
    assert result.tool_deltas == EXPECTED_DELTAS
    completion = result.completion
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == (
        ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"city": "Oslo"}),
        ToolCall("toolu_01VmRkUe6M6z4vD2FQ8yK3bN", "get_weather", {"city": "Lima", "note": "é ✓"}),
    )
    blocks = completion.provider_data["anthropic"]["thinking_blocks"]
    assert blocks == [
        {
            "type": "thinking",
            "thinking": "Two cities: call the tool twice.",
            "signature": "EuYBCkQYAiJAcP3pS7Lq0k2X9vB1nR4tW8yZ6aD2fG5hJ3kL7mN9"
            "pQ1sT4uV6wX8zA0bC2dE4fG6hI8jK0lM2nO4pQ6rS8",
        },
        {
            "type": "redacted_thinking",
            "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
        },
    ]


def test_stream_parallel_calls_canonical_index_and_thinking() -> None:
    _check_parallel(replay(ANTHROPIC.stream_parser(), [STREAM]))


def test_stream_parallel_calls_at_every_split_point() -> None:
    for cut in range(1, len(STREAM)):
        _check_parallel(replay(ANTHROPIC.stream_parser(), [STREAM[:cut], STREAM[cut:]]))


def test_stream_parallel_calls_byte_by_byte_and_random_reads() -> None:
    _check_parallel(replay(ANTHROPIC.stream_parser(), one_byte(STREAM)))
    for seed in range(5):
        _check_parallel(replay(ANTHROPIC.stream_parser(), random_reads(STREAM, seed)))


def test_stream_recorded_text_then_tool_use() -> None:
    result = replay(ANTHROPIC.stream_parser(), [fixture_bytes("anthropic", "stream_tool_use.txt")])
    assert result.text == "Okay, let's check the weather for San Francisco, CA:"
    assert result.tool_deltas[0] == ToolCallDelta(
        0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"
    )
    assert result.completion is not None
    assert result.completion.tool_calls == (
        ToolCall(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA"}
        ),
    )


def _events(*events: tuple[str, Any]) -> bytes:
    out = [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]
    stop = 'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    return ("".join(out) + stop).encode()


def _start(index: Any, block: Any) -> tuple[str, Any]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _json(index: Any, piece: Any) -> tuple[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": piece}
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


TOOL = {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}


def test_stream_honest_invalid_arguments_stay_raw() -> None:
    result = replay(ANTHROPIC.stream_parser(), [_events(_start(0, TOOL), _json(0, '{"a": tru'))])
    assert result.completion is not None
    (call,) = result.completion.tool_calls
    assert call.arguments == {} and call.raw_arguments == '{"a": tru'


@pytest.mark.parametrize(
    "events",
    [
        [_start(0, "tool_use")],
        [_start("0", TOOL)],
        [_start(True, TOOL)],
        [_start(0, {**TOOL, "name": 3})],
        [_start(0, {**TOOL, "id": {"x": 1}})],
        [_start(0, {**TOOL, "input": "{}"})],
        [_start(0, TOOL), _json(0, {"a": 1})],
        [_start(0, TOOL), _json(1, "{}")],  # arguments for a block that is no tool_use
        [_start(0, TOOL), _json(0, '{"a":' * 3000 + "1" + "}" * 3000)],
        [_start(0, TOOL), _json(0, json.dumps(_deep(70)))],
    ],
)
def test_stream_hostile_shapes_are_malformed(events: list[tuple[str, Any]]) -> None:
    result = replay(ANTHROPIC.stream_parser(), [_events(*events)])
    assert isinstance(result.error, MalformedResponseError), result


def test_stream_tool_use_without_id_gets_one_and_whole_input_counts() -> None:
    block = {"type": "tool_use", "name": "now", "input": {"tz": "UTC"}}
    result = replay(ANTHROPIC.stream_parser(), [_events(_start(5, block))])
    assert result.completion is not None
    (call,) = result.completion.tool_calls
    assert call.id.startswith("call_") and call.arguments == {"tz": "UTC"}
    assert result.tool_deltas == [ToolCallDelta(0, call.id, "now", '{"tz":"UTC"}')]


# --- errors -----------------------------------------------------------------------------------


def test_does_not_support_tools_is_unsupported_feature() -> None:
    message = "tools: claude-notools does not support tool use"
    err_body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    err = ANTHROPIC.classify_error(
        HttpResponse(400, {"request-id": "req_1"}, json.dumps(err_body).encode())
    )
    assert isinstance(err, UnsupportedFeatureError)
    assert err.feature == "tools" and err.status == 400 and err.request_id == "req_1"
    assert message in str(err)


def test_other_tool_errors_stay_bad_requests() -> None:
    message = (
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: x"
    )
    err_body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    err = ANTHROPIC.classify_error(HttpResponse(400, {}, json.dumps(err_body).encode()))
    assert type(err) is BadRequestError
