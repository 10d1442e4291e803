"""The provider-neutral tool types and the checks every request with tools goes through."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from flyllm import GenerationRequest, LlmResponse, Message, Tool, ToolCall, ToolCallDelta
from flyllm.errors import InvalidRequestError
from flyllm.params import conversation, tool_set
from flyllm.providers._tools import (
    ToolCallAssembler,
    arguments_text,
    charset_id,
    new_call_id,
    parse_arguments,
    short_id,
    tool_names,
    unsupported_tools_message,
)

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def test_message_builders() -> None:
    call = ToolCall("call_1", "get_weather", {"city": "Oslo"})
    assert Message.user("hi") == Message("user", "hi")
    assert Message.system("be brief").role == "system"
    turn = Message.assistant("", [call])
    assert turn.tool_calls == (call,) and turn.role == "assistant"
    result = Message.tool_result("call_1", {"temp": 3, "sky": "grå"})
    assert result.role == "tool" and result.tool_call_id == "call_1" and not result.is_error
    assert json.loads(result.content) == {"temp": 3, "sky": "grå"}
    assert "grå" in result.content  # serialised once, readable
    assert Message.tool_result("c", "boom", is_error=True, name="f").is_error


def test_a_tool_result_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError, match="JSON"):
        Message.tool_result("c", {1, 2})
    with pytest.raises(TypeError, match="JSON"):
        Message.tool_result("c", float("nan"))


def test_the_response_is_an_assistant_turn_ready_to_append() -> None:
    call = ToolCall("c1", "f", {}, provider_data={"google": {"thoughtSignature": "sig"}})
    response = LlmResponse(
        "thinking", True, tool_calls=(call,), provider_data={"anthropic": {"x": 1}}
    )
    turn = response.message
    assert turn == Message("assistant", "thinking", tool_calls=(call,))
    assert turn.provider_data == {"anthropic": {"x": 1}}
    assert turn.tool_calls[0].provider_data["google"]["thoughtSignature"] == "sig"


def test_tool_set_defaults_and_checks() -> None:
    request = GenerationRequest("hi", tools=[WEATHER])
    tools = tool_set(request)
    assert tools is not None and tools.choice == "auto" and tools.parallel is None
    named = tool_set(GenerationRequest("hi", tools=[WEATHER], tool_choice="get_weather"))
    assert named is not None and named.choice == "get_weather"
    assert tool_set(GenerationRequest("hi")) is None
    assert tool_set(GenerationRequest("hi", tools=[], tool_choice="none")) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tools": [WEATHER], "tool_choice": "get_time"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": 3}, "tool_choice"),
        ({"tool_choice": "required"}, "need tools"),
        ({"parallel_tool_calls": False}, "need tools"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"tools": "get_weather"}, "sequence of Tool"),
        ({"tools": [{"name": "f"}]}, "must be a Tool"),
        ({"tools": [Tool("bad name!")]}, "letters, digits"),
        ({"tools": [Tool("x" * 65)]}, "letters, digits"),
        ({"tools": [WEATHER, WEATHER]}, "two tools are named"),
        ({"tools": [Tool("f", parameters={"type": "string"})]}, "JSON Schema of an object"),
        ({"tools": [Tool("f", parameters=[])]}, "JSON Schema of an object"),  # type: ignore[arg-type]
        ({"tools": [Tool("f", parameters={"type": "object", "x": {1}})]}, "cannot be sent"),
        ({"tools": [Tool("f", 3)]}, "description"),  # type: ignore[arg-type]
    ],
)
def test_bad_tools_are_refused_before_sending(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        tool_set(GenerationRequest("hi", **kwargs))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([Message("tool", "42")], "tool_call_id"),
        ([Message("user", "hi", tool_call_id="c")], "only a tool result"),
        ([Message("user", "hi", tool_calls=(ToolCall("c", "f"),))], "only an assistant"),
        ([Message("assistant", tool_calls=[ToolCall("c", "f")])], "tuple of ToolCall"),  # type: ignore[arg-type]
        ([Message("assistant", tool_calls=({"id": "c"},))], "not a ToolCall"),  # type: ignore[arg-type]
        ([Message("assistant", tool_calls=(ToolCall("", "f"),))], "without an id"),
        ([Message("assistant", tool_calls=(ToolCall("c", "f", {"x": {1}}),))], "as JSON"),
        ([Message("assistant", tool_calls=(ToolCall("c", "f", [1]),))], "not a mapping"),  # type: ignore[arg-type]
        ([Message("robot", "hi")], "valid roles"),  # type: ignore[arg-type]
    ],
)
def test_bad_tool_turns_are_refused(messages: list[Message], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        conversation(GenerationRequest(messages=[Message.user("go"), *messages]))


def test_a_whole_tool_conversation_passes() -> None:
    call = ToolCall("c1", "get_weather", {"city": "Oslo"})
    turns = [
        Message.user("Weather in Oslo?"),
        Message.assistant("", [call]),
        Message.tool_result("c1", "3 degrees", name="get_weather"),
    ]
    assert conversation(GenerationRequest(messages=turns)) == tuple(turns)


def test_canonical_ids() -> None:
    ids = {new_call_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids)


@pytest.mark.parametrize(
    "call_id", ["call_abc123", "toolu_01A09q90qw90lq917835lq9", "a.b:c/d", "é", "x" * 300, "-"]
)
def test_ids_are_rewritten_the_same_way_for_each_target(call_id: str) -> None:
    mistral = short_id(call_id)
    assert re.fullmatch(r"[A-Za-z0-9]{9}", mistral) and short_id(call_id) == mistral
    anthropic = charset_id(call_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", anthropic) and charset_id(call_id) == anthropic


def test_valid_ids_are_kept_and_rejected_characters_do_not_collide() -> None:
    assert short_id("abcDEF123") == "abcDEF123"
    assert charset_id("toolu_01-x") == "toolu_01-x"
    assert charset_id("a.b") != charset_id("a:b")
    assert short_id("call_1") != short_id("call_2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"city": "Oslo"}', ({"city": "Oslo"}, None)),
        ("", ({}, None)),
        ("  ", ({}, None)),
        ('{"city": "Os', ({}, '{"city": "Os')),
        ("[1, 2]", ({}, "[1, 2]")),
        ("Oslo", ({}, "Oslo")),
        ("[" * 100_000, ({}, "[" * 100_000)),
    ],
)
def test_arguments_are_parsed_without_losing_anything(
    text: str, expected: tuple[dict[str, Any], str | None]
) -> None:
    assert parse_arguments(text) == expected


def test_arguments_text_replays_what_the_model_wrote() -> None:
    assert arguments_text(ToolCall("c", "f", {"a": "ø"})) == '{"a":"ø"}'
    assert arguments_text(ToolCall("c", "f", {}, raw_arguments='{"a":')) == '{"a":'


def test_tool_names_by_call_id() -> None:
    turns = [Message.assistant("", [ToolCall("a", "f"), ToolCall("b", "g")]), Message.user("x")]
    assert tool_names(turns) == {"a": "f", "b": "g"}


@pytest.mark.parametrize(
    ("text", "unsupported"),
    [
        ("registry.ollama.ai/library/gemma:2b does not support tools", True),
        ('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser', True),
        ("Tool use is not supported for this model", True),
        ("This model does not support function calling", True),
        ("function calling is not enabled for this model", True),
        ("invalid value for tools[0].function.name", False),
        ("rate limit exceeded", False),
    ],
)
def test_unsupported_tools_messages(text: str, unsupported: bool) -> None:
    assert unsupported_tools_message(text) is unsupported


def test_the_assembler_numbers_calls_in_order_whatever_the_provider_keys() -> None:
    asm = ToolCallAssembler()
    assert not asm
    assert asm.start(3, "toolu_1", "f") == ToolCallDelta(0, "toolu_1", "f", "")
    assert asm.add(3, '{"a":') == ToolCallDelta(0, arguments_delta='{"a":')
    assert asm.add(3, "") is None
    assert asm.start(5, None, "g").index == 1
    assert asm.add(5, '{"b": 2}') == ToolCallDelta(1, arguments_delta='{"b": 2}')
    assert asm.add(3, "1}") == ToolCallDelta(0, arguments_delta="1}")
    whole = asm.whole(None, "h", {"c": [1]}, {"google": {"thoughtSignature": "s"}})
    assert whole.index == 2 and whole.arguments_delta == '{"c":[1]}'
    calls = asm.calls()
    assert [(c.name, dict(c.arguments)) for c in calls] == [
        ("f", {"a": 1}),
        ("g", {"b": 2}),
        ("h", {"c": [1]}),
    ]
    assert calls[1].id.startswith("call_") and calls[1].id == asm.calls()[1].id
    assert calls[2].provider_data == {"google": {"thoughtSignature": "s"}}
    with pytest.raises(KeyError):
        asm.add(99, "x")


def test_a_reused_key_starts_a_new_call() -> None:
    asm = ToolCallAssembler()
    asm.start(0, "a", "f", arguments="{}")
    assert asm.has(0) and not asm.has(1)
    assert asm.start(0, "b", "g").index == 1  # servers that send index 0 for every call
    asm.add(0, '{"x": 1}')
    assert [(c.id, dict(c.arguments)) for c in asm.calls()] == [("a", {}), ("b", {"x": 1})]


def test_truncated_streamed_arguments_keep_their_text() -> None:
    asm = ToolCallAssembler()
    asm.start("k", "a", "f")
    asm.add("k", '{"city": "Os')
    (call,) = asm.calls()
    assert call.arguments == {} and call.raw_arguments == '{"city": "Os'
