"""Tool calling on Mistral: "any" for required, nine-character ids for calls and results
alike, tool names on results, whole calls in streams, and "no tools" answers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from flyllm.errors import MalformedResponseError, UnsupportedFeatureError
from flyllm.providers.base import Endpoint, HttpResponse, SseEvent, ToolSet
from flyllm.providers.mistral import MISTRAL_BASE_URL, MistralProvider
from flyllm.types import Message, Tool, ToolCall
from tests.fixtures import API_KEY, fixture_bytes, one_byte, replay, response

MISTRAL = MistralProvider()
ENDPOINT = Endpoint("mistral-small-latest", API_KEY, MISTRAL_BASE_URL)
WEATHER = Tool(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
ASK = [Message.user("Weather in Oslo and Lima?")]


def body_of(tools: ToolSet | None = None, messages: list[Message] = ASK) -> dict[str, Any]:
    parsed = json.loads(MISTRAL.build(ENDPOINT, messages, {}, tools=tools).body)
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", None),
        ("none", "none"),
        ("required", "any"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tools_and_choice_in_mistrals_words(choice: str, wire: Any) -> None:
    body = body_of(ToolSet((WEATHER,), choice, False))
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": dict(WEATHER.parameters),
            },
        }
    ]
    assert body.get("tool_choice") == wire
    assert body["parallel_tool_calls"] is False


def test_an_openai_conversation_gets_nine_character_ids_the_same_for_call_and_result() -> None:
    calls = (
        ToolCall("call_Xq2Y8s0aB1c2D3e4F5g6H7i8", "get_weather", {"city": "Oslo"}),
        ToolCall("D681PevKs", "get_weather", {"city": "Lima"}),
    )
    turns = [
        *ASK,
        Message.assistant("", calls),
        Message.tool_result("call_Xq2Y8s0aB1c2D3e4F5g6H7i8", "3 degrees"),
        Message.tool_result("D681PevKs", "19 degrees", name="get_weather"),
    ]
    messages = body_of(messages=turns)["messages"]
    sent = [c["id"] for c in messages[1]["tool_calls"]]
    assert all(re.fullmatch(r"[A-Za-z0-9]{9}", i) for i in sent)
    assert sent[1] == "D681PevKs"  # already valid: unchanged
    assert [m["tool_call_id"] for m in messages[2:]] == sent
    assert [m["name"] for m in messages[2:]] == ["get_weather", "get_weather"]
    assert messages[1]["content"] is None


def test_tool_calls_in_an_answer() -> None:
    completion = MISTRAL.parse(response("mistral", "tool_calls.json"))
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls == (
        ToolCall("D681PevKs", "get_weather", {"city": "Oslo"}),
        ToolCall("x9YtR2mQa", "get_weather", {"city": "Lima"}),
    )


def test_whole_calls_in_a_stream_give_one_delta_each_at_every_split() -> None:
    data = fixture_bytes("mistral", "stream_tool_calls.txt")
    whole = replay(MISTRAL.stream_parser(), [data])
    assert whole.completion is not None
    assert whole.completion.tool_calls == (
        ToolCall("D681PevKs", "get_weather", {"city": "Oslo"}),
        ToolCall("x9YtR2mQa", "get_weather", {"city": "Lima"}),
    )
    assert [(d.index, d.id, d.name, d.arguments_delta) for d in whole.tool_deltas] == [
        (0, "D681PevKs", "get_weather", '{"city": "Oslo"}'),
        (1, "x9YtR2mQa", "get_weather", '{"city": "Lima"}'),
    ]
    assert whole.completion.usage.total_tokens == 120
    for cut in range(1, len(data), 7):
        split = replay(MISTRAL.stream_parser(), [data[:cut], data[cut:]])
        assert (split.completion, split.tool_deltas) == (whole.completion, whole.tool_deltas)
    assert replay(MISTRAL.stream_parser(), one_byte(data)).completion == whole.completion


def test_hostile_calls_are_malformed() -> None:
    body = {"choices": [{"message": {"tool_calls": [{"function": {"name": 3}}]}}]}
    with pytest.raises(MalformedResponseError, match="name of the wrong type"):
        MISTRAL.parse(HttpResponse(200, {}, json.dumps(body).encode()))
    parser = MISTRAL.stream_parser()
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": 1}]}}]}
    with pytest.raises(MalformedResponseError, match="function of the wrong type"):
        parser.feed(SseEvent(json.dumps(chunk)))


def test_a_model_without_function_calling_is_an_unsupported_feature() -> None:
    payload = {
        "object": "error",
        "message": "Function calling is not enabled for this model",
        "type": "invalid_request_error",
        "param": None,
        "code": "3051",
    }
    err = MISTRAL.classify_error(HttpResponse(400, {}, json.dumps(payload).encode()))
    assert isinstance(err, UnsupportedFeatureError) and err.feature == "tools"
    assert err.status == 400
