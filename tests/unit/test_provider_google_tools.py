"""Gemini tool calling: tools and toolConfig, function calls and responses in the
conversation, thought signatures both ways, calls read from answers and streams (split at
every byte), hostile call shapes, and the "function calling is not enabled" answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import InvalidRequestError, MalformedResponseError, UnsupportedFeatureError
from flyllm.params import ToolSet
from flyllm.providers._google_tools import DUMMY_SIGNATURE, MAX_ARGUMENT_DEPTH, needs_signatures
from flyllm.providers.base import NON_SSE_LINE, Delta, Endpoint, HttpResponse, SseEvent
from flyllm.providers.google import GOOGLE_BASE_URL, GoogleProvider
from flyllm.types import Message, Tool, ToolCall, ToolCallDelta, Usage
from tests.fixtures import API_KEY, chunks, fixture_bytes, replay, response

GOOGLE = GoogleProvider(clock=lambda: 0.0)
ENDPOINT = Endpoint("gemini-2.5-flash", API_KEY, GOOGLE_BASE_URL)
GEMINI3 = Endpoint("gemini-3-pro-preview", API_KEY, GOOGLE_BASE_URL)
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/unit"}},
    "required": ["city"],
    "additionalProperties": False,
    "$defs": {"unit": {"enum": ["celsius", "fahrenheit"]}},
}
WEATHER = Tool("get_weather", "Current weather for a city", SCHEMA)
CLOCK = Tool("get_time")
ASK = Message.user("Weather in Oslo and Lima?")


def body(
    messages: list[Message], tools: ToolSet | None = None, endpoint: Endpoint = ENDPOINT
) -> Any:
    return json.loads(GOOGLE.build(endpoint, messages, {}, tools=tools).body)


def signed_call(call_id: str, city: str, signature: str | None) -> ToolCall:
    data = {"google": {"thoughtSignature": signature}} if signature else {}
    return ToolCall(call_id, "get_weather", {"city": city}, provider_data=data)


# --- request: tools and toolConfig ----------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ("get_time", {"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
    ],
)
def test_tools_as_function_declarations_and_calling_config(
    choice: str, config: dict[str, Any]
) -> None:
    sent = body([ASK], ToolSet((WEATHER, CLOCK), choice))
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                # the full JSON Schema, $ref and additionalProperties included
                {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parametersJsonSchema": SCHEMA,
                },
                {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
            ]
        }
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": config}


@pytest.mark.parametrize("parallel", [True, False, None])
def test_parallel_switch_is_not_sent(parallel: bool | None) -> None:
    sent = body([ASK], ToolSet((WEATHER,), "auto", parallel))
    assert set(sent) == {"contents", "tools", "toolConfig"}
    assert "parallel" not in json.dumps(sent).lower()


def test_no_tools_no_tool_fields() -> None:
    assert set(body([ASK])) == {"contents"}


# --- request: the conversation ---------------------------------------------------------------


def test_gemini_calls_echoed_with_ids_and_signatures_results_in_one_user_turn() -> None:
    answer = Message(
        "assistant",
        "I will look both up.",
        tool_calls=(signed_call("qx3n8f2k", "Oslo", "CiwBsig"), signed_call("7hd0", "Lima", None)),
        provider_data={"google": {"thoughtSignature": "Ct0Btext"}},
    )
    results = [
        Message.tool_result("qx3n8f2k", "12 C"),
        Message.tool_result("7hd0", "no such city", is_error=True, name="get_weather"),
    ]
    sent = body([ASK, answer, *results], endpoint=GEMINI3)
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Oslo and Lima?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "I will look both up.", "thoughtSignature": "Ct0Btext"},
                {
                    "functionCall": {
                        "id": "qx3n8f2k",
                        "name": "get_weather",
                        "args": {"city": "Oslo"},
                    },
                    "thoughtSignature": "CiwBsig",
                },
                # only the first call of a step carries Gemini's signature: none is added
                {"functionCall": {"id": "7hd0", "name": "get_weather", "args": {"city": "Lima"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": "12 C"},
                        "id": "qx3n8f2k",
                    }
                },
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"error": "no such city"},
                        "id": "7hd0",
                    }
                },
            ],
        },
    ]


def openai_conversation() -> list[Message]:
    """A conversation as OpenAI left it: its ids, no provider_data, empty content on the
    assistant turn, arguments that were not JSON, another family's state."""
    calls = (
        ToolCall("call_Ab12Cd34", "get_weather", {"city": "Oslo"}),
        ToolCall("call_Ef56", "get_weather", {}, raw_arguments='{"city": "Li'),
    )
    other = {"anthropic": {"thoughtSignature": "not-for-gemini"}}
    return [
        Message.system("Be brief."),
        ASK,
        Message("assistant", "", tool_calls=calls, provider_data=other),
        Message.tool_result("call_Ab12Cd34", "12 C"),
        Message.tool_result("call_Ef56", "bad arguments", is_error=True),
    ]


def test_conversation_from_another_provider_on_gemini3_gets_the_dummy_signature() -> None:
    sent = body(openai_conversation(), ToolSet((WEATHER,)), GEMINI3)
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    model = sent["contents"][1]
    assert model == {
        "role": "model",
        "parts": [  # no empty text part
            {
                "functionCall": {
                    "id": "call_Ab12Cd34",
                    "name": "get_weather",
                    "args": {"city": "Oslo"},
                },
                "thoughtSignature": DUMMY_SIGNATURE,
            },
            # text that was not a JSON object still goes as an object (args is a Struct)
            {
                "functionCall": {
                    "id": "call_Ef56",
                    "name": "get_weather",
                    "args": {"raw": '{"city": "Li'},
                }
            },
        ],
    }
    assert "not-for-gemini" not in json.dumps(sent)
    responses = [p["functionResponse"] for p in sent["contents"][2]["parts"]]
    assert [(r["id"], r["name"]) for r in responses] == [
        ("call_Ab12Cd34", "get_weather"),  # names found from the calls in the conversation
        ("call_Ef56", "get_weather"),
    ]


def test_older_models_get_no_dummy_signature() -> None:
    sent = body(openai_conversation(), ToolSet((WEATHER,)), ENDPOINT)
    assert "thoughtSignature" not in json.dumps(sent)


@pytest.mark.parametrize(
    ("model", "needs"),
    [
        ("gemini-3-pro-preview", True),
        ("models/gemini-3-flash-preview", True),
        ("gemini-3.5-flash", True),
        ("gemini-flash-latest", True),
        ("gemini-2.5-flash", False),
        ("gemini-2.0-flash-001", False),
        ("gemini-1.5-pro", False),
        ("gemma-3-27b-it", False),
    ],
)
def test_which_models_check_signatures(model: str, needs: bool) -> None:
    assert needs_signatures(model) is needs


def test_tool_result_whose_tool_cannot_be_named_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="names no tool"):
        GOOGLE.build(ENDPOINT, [ASK, Message.tool_result("call_lost", "12 C")], {})


def test_user_turn_after_results_joins_the_same_user_content() -> None:
    call = signed_call("a1", "Oslo", None)
    messages = [ASK, Message.assistant("", [call]), Message.tool_result("a1", "12 C")]
    sent = body([*messages, Message.user("Thanks. And Bergen?")])
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["contents"][2]["parts"][1] == {"text": "Thanks. And Bergen?"}


# --- response -------------------------------------------------------------------------------


def test_parse_calls_in_order_ids_kept_signatures_on_their_calls() -> None:
    completion = GOOGLE.parse(response("google", "function_calls_gemini3.json"))
    assert completion.content == "I will look both up."
    assert (completion.finish_reason, completion.raw_finish_reason) == ("tool_calls", "STOP")
    assert completion.tool_calls == (
        ToolCall("qx3n8f2k", "get_weather", {"city": "Oslo", "unit": "celsius"}),
        ToolCall("7hd0m1zv", "get_weather", {"city": "Lima", "unit": "celsius"}),
    )
    first, second = completion.tool_calls
    assert first.provider_data == {"google": {"thoughtSignature": "CiwBAdHtim9callSig"}}
    assert second.provider_data == {}
    assert completion.provider_data == {"google": {"thoughtSignature": "Ct0BAdHtim9textSig"}}
    assert completion.usage == Usage(61, 150, 211, 0)


def test_parse_call_without_id_gets_a_canonical_one() -> None:
    completion = GOOGLE.parse(response("google", "function_call.json"))
    (call,) = completion.tool_calls
    assert call.id.startswith("call_") and len(call.id) == 29
    assert (call.name, call.arguments, call.raw_arguments) == (
        "weather",
        {"location": "San Francisco"},
        None,
    )
    assert call.provider_data == {"google": {"thoughtSignature": "CiwB0e2Kb9Sig"}}


def test_parse_answer_then_replay_round_trip() -> None:
    completion = GOOGLE.parse(response("google", "function_calls_gemini3.json"))
    turn = Message(
        "assistant",
        completion.content,
        tool_calls=completion.tool_calls,
        provider_data=completion.provider_data,
    )
    sent = body([ASK, turn], endpoint=GEMINI3)
    original = json.loads(fixture_bytes("google", "function_calls_gemini3.json"))
    assert sent["contents"][1]["parts"] == original["candidates"][0]["content"]["parts"]


def answer(parts: Any) -> HttpResponse:
    payload = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]
    }
    return HttpResponse(200, {}, json.dumps(payload).encode())


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


HOSTILE_PARTS = {
    "call not an object": [{"functionCall": ["get_weather"]}],
    "call null": [{"functionCall": None}],
    "name missing": [{"functionCall": {"args": {}}}],
    "name not a string": [{"functionCall": {"name": 7, "args": {}}}],
    "name empty": [{"functionCall": {"name": "", "args": {}}}],
    "args a list": [{"functionCall": {"name": "f", "args": [1, 2]}}],
    "args a string": [{"functionCall": {"name": "f", "args": '{"a": 1}'}}],
    "id a number": [{"functionCall": {"name": "f", "id": 12, "args": {}}}],
    "signature a number": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": 5}],
    "args nested too deeply": [
        {"functionCall": {"name": "f", "args": nested(MAX_ARGUMENT_DEPTH + 2)}}
    ],
    "args too big": [{"functionCall": {"name": "f", "args": {"a": "x" * (1 << 20)}}}],
    "too many calls": [{"functionCall": {"name": "f"}}] * 1001,
}


@pytest.mark.parametrize("parts", HOSTILE_PARTS.values(), ids=HOSTILE_PARTS.keys())
def test_hostile_calls_are_malformed(parts: Any) -> None:
    with pytest.raises(MalformedResponseError):
        GOOGLE.parse(answer(parts))


@pytest.mark.parametrize("parts", HOSTILE_PARTS.values(), ids=HOSTILE_PARTS.keys())
def test_hostile_calls_in_a_stream_are_malformed(parts: Any) -> None:
    event = json.dumps({"candidates": [{"content": {"role": "model", "parts": parts}}]})
    with pytest.raises(MalformedResponseError):
        GOOGLE.stream_parser().feed(SseEvent(event))


def test_deep_but_allowed_arguments_and_calls_without_args_are_kept() -> None:
    parts = [
        {"functionCall": {"name": "f", "args": nested(MAX_ARGUMENT_DEPTH - 1)}},
        {"functionCall": {"name": "g"}},
    ]
    completion = GOOGLE.parse(answer(parts))
    assert [c.name for c in completion.tool_calls] == ["f", "g"]
    assert completion.tool_calls[1].arguments == {}


# --- stream ---------------------------------------------------------------------------------


def check_stream_result(data: bytes, reads: Any) -> tuple[str, list[ToolCallDelta]]:
    result = replay(GOOGLE.stream_parser(), reads)
    assert result.error is None, result.error
    completion = result.completion
    assert completion is not None
    assert result.text == completion.content == "Checking both."
    assert completion.finish_reason == "tool_calls"
    assert completion.usage == Usage(61, 20, 81, 0)
    first, second = completion.tool_calls
    assert first == ToolCall("c1x9", "get_weather", {"city": "Oslo"})
    assert first.provider_data == {"google": {"thoughtSignature": "CiwBAdHtim9streamSig"}}
    assert second.id.startswith("call_")  # Gemini sent no id: a canonical one
    assert (second.name, second.arguments) == (
        "get_time",
        {"zone": "América/Lima", "hours": [1, 2]},
    )
    assert second.provider_data == {}
    # the empty-text part that carried the last signature
    assert completion.provider_data == {"google": {"thoughtSignature": "EtoFtailSig"}}
    # one whole delta per call, canonical indexes, the same id as the final call
    assert result.tool_deltas == [
        ToolCallDelta(0, "c1x9", "get_weather", '{"city":"Oslo"}'),
        ToolCallDelta(1, second.id, "get_time", '{"zone":"América/Lima","hours":[1,2]}'),
    ]
    return second.id, result.tool_deltas


def test_stream_calls_whole_one_delta_each() -> None:
    data = fixture_bytes("google", "stream_function_calls.txt")
    check_stream_result(data, [data])


def test_stream_calls_split_at_every_byte() -> None:
    data = fixture_bytes("google", "stream_function_calls.txt")
    for cut in range(1, len(data)):
        check_stream_result(data, chunks(data, [cut]))


def test_stream_text_only_events_stay_plain_strings() -> None:
    parser = GOOGLE.stream_parser()
    event = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}
    out = parser.feed(SseEvent(json.dumps(event)))
    assert out == "Hi" and not isinstance(out, Delta)


def test_stream_call_and_text_in_one_event_is_one_delta() -> None:
    parser = GOOGLE.stream_parser()
    parts = [{"text": "Sure."}, {"functionCall": {"id": "z", "name": "f", "args": {"a": 1}}}]
    out = parser.feed(SseEvent(json.dumps({"candidates": [{"content": {"parts": parts}}]})))
    assert out == Delta("Sure.", (ToolCallDelta(0, "z", "f", '{"a":1}'),))


# --- errors ---------------------------------------------------------------------------------


def test_function_calling_not_enabled_is_unsupported_tools() -> None:
    err = GOOGLE.classify_error(response("google", "error_tools_unsupported.json", 400))
    assert isinstance(err, UnsupportedFeatureError)
    assert err.feature == "tools"
    assert err.status == 400 and err.provider == "google"
    assert "Function calling is not enabled" in str(err)


def test_function_calling_not_enabled_inside_a_stream_is_unsupported_tools() -> None:
    error = json.loads(fixture_bytes("google", "error_tools_unsupported.json"))
    with pytest.raises(UnsupportedFeatureError):
        GOOGLE.stream_parser().feed(SseEvent(json.dumps(error)))


def test_other_bad_requests_stay_bad_requests() -> None:
    err = GOOGLE.classify_error(response("google", "error_invalid_argument.json", 400))
    assert not isinstance(err, UnsupportedFeatureError)


def test_bare_json_array_with_calls_is_one_delta() -> None:
    chunk = {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "id": "q"}}]}}]}
    text = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}
    out = GOOGLE.stream_parser().feed(SseEvent(json.dumps([text, chunk]), NON_SSE_LINE))
    assert out == Delta("Hi", (ToolCallDelta(0, "q", "f", "{}"),))
    plain = GOOGLE.stream_parser().feed(SseEvent(json.dumps([text, text]), NON_SSE_LINE))
    assert plain == "HiHi"
