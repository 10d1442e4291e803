"""The emulator's tool-calling "model": deterministic calls from the schema and the prompt."""

from __future__ import annotations

from typing import Any

import pytest

from flyllm.emulator.tools import (
    OfferedTool,
    PlannedCall,
    ToolResult,
    arguments_for,
    plan_calls,
    supports_tools,
    tool_reply,
)

CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = OfferedTool("get_weather", CITY)
TIME = OfferedTool("get_time", {"type": "object", "properties": {"zone": {"type": "string"}}})


def test_parallel_calls_one_per_subject() -> None:
    calls = plan_calls([WEATHER], "auto", True, "Weather in Oslo and Lima?", "user")
    assert calls == [
        PlannedCall("get_weather", {"city": "Oslo"}),
        PlannedCall("get_weather", {"city": "Lima"}),
    ]
    assert calls[0].arguments_json == '{"city":"Oslo"}'


def test_one_call_when_parallel_calls_are_off() -> None:
    calls = plan_calls([WEATHER], "auto", False, "Weather in Oslo and Lima?", "user")
    assert calls == [PlannedCall("get_weather", {"city": "Oslo"})]


def test_tools_named_in_the_prompt_are_called_else_the_first() -> None:
    both = plan_calls([WEATHER, TIME], "auto", True, "What weather and time in Oslo?", "user")
    assert [c.name for c in both] == ["get_weather", "get_time"]
    first = plan_calls([TIME, WEATHER], "required", True, "hello there", "user")
    assert [c.name for c in first] == ["get_time"]
    assert first[0].arguments == {"zone": "there"}


def test_choice_rules() -> None:
    assert plan_calls([WEATHER], "none", True, "Weather in Oslo?", "user") == []
    assert plan_calls([WEATHER], "auto", True, "Weather in Oslo?", "tool") == []
    assert plan_calls([WEATHER, TIME], "get_time", True, "Weather in Oslo?", "tool")[0].name == (
        "get_time"
    )
    assert plan_calls([WEATHER], "required", True, "Weather in Oslo?", "tool") != []
    assert plan_calls([], "auto", True, "Weather in Oslo?", "user") == []


def test_at_most_three_parallel_calls() -> None:
    prompt = "Compare Oslo, Lima, Quito, Bern and Rome."
    assert len(plan_calls([WEATHER], "auto", True, prompt, "user")) == 3


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string"}, "Oslo"),
        ({"type": "integer"}, 42),
        ({"type": "number"}, 42.0),
        ({"type": "boolean"}, True),
        ({"type": "null"}, None),
        ({"type": ["string", "null"]}, "Oslo"),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, 42),
        ({"enum": ["celsius", "fahrenheit"]}, "fahrenheit"),
        ({"type": "array", "items": {"type": "string"}}, ["Oslo"]),
        (
            {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}},
            {"a": 42, "b": "Oslo"},
        ),
        ({"type": "object", "properties": {"a": {}, "b": {}}, "required": ["b"]}, {"b": "Oslo"}),
        ({"type": "object"}, {}),
        ("not a schema", "Oslo"),
    ],
)
def test_arguments_follow_the_schema(schema: Any, value: Any) -> None:
    assert arguments_for(schema, "Oslo", "42 degrees in fahrenheit please") == value


def test_a_self_nesting_schema_ends() -> None:
    deep: dict[str, Any] = {"type": "array"}
    deep["items"] = deep
    value = arguments_for(deep, "x", "")
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert depth <= 10


def test_results_are_quoted_and_calls_counted() -> None:
    results = [ToolResult("get_weather", '{"temp": 3}'), ToolResult("get_time", "boom", True)]
    reply = tool_reply([WEATHER], "auto", True, "Weather in Oslo?", "tool", results, None, ())
    assert reply is not None and reply.calls == ()
    assert 'get_weather returned {"temp": 3}' in reply.text
    assert "get_time failed with boom" in reply.text
    assert "".join(reply.chunks) == reply.text and reply.finish == "end"
    cut = tool_reply([WEATHER], "auto", True, "x", "tool", results, 2, ())
    assert cut is not None and cut.text == "Tool results:" and cut.finish == "length"
    calls = tool_reply([WEATHER], "auto", True, "Weather in Oslo?", "user", (), None, ())
    assert calls is not None and calls.finish == "tool_calls" and calls.tokens >= 1
    assert calls.text == "" and calls.calls[0].arguments == {"city": "Oslo"}
    assert tool_reply([], "auto", True, "hi", "user", (), None, ()) is None


def test_notools_models() -> None:
    assert not supports_tools("llama-notools") and supports_tools("gpt-4o")


def test_a_tool_with_an_empty_schema_is_called_with_an_empty_object() -> None:
    # {} takes any value, but a call's arguments are an object on every wire (Gemini's args
    # is a Struct): the emulator once sent the subject string and failed building the answer.
    anything = OfferedTool("f", {})
    for parallel in (False, True):
        calls = plan_calls([anything], "required", parallel, "Weather in Oslo?", "user")
        assert calls and all(c.arguments == {} for c in calls)
