"""Anthropic structured output and images: output_config.format with the converted schema, the
forced-tool mechanism (request, answer, stream), "json", the schema conversion (property test
against the emulator's own checks), image blocks and their limits."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from flyllm._schema import validate
from flyllm.emulator.dialects._anthropic_output import read_output
from flyllm.emulator.structured import json_for
from flyllm.errors import ConfigurationError, InvalidRequestError, UnsupportedFeatureError
from flyllm.params import OutputFormat, ToolSet
from flyllm.providers._anthropic_output import MAX_IMAGE_BASE64, output_schema
from flyllm.providers.anthropic import ANTHROPIC_BASE_URL, AnthropicProvider
from flyllm.providers.base import Endpoint
from flyllm.types import Image, Message, Tool, ToolCall
from tests.fixtures import API_KEY, fixture_bytes, one_byte, random_reads, replay, response
from tests.fixtures.schemas import object_schemas

ANTHROPIC = AnthropicProvider(clock=lambda: 1_755_780_000.0)
NATIVE = Endpoint("claude-sonnet-4-5", API_KEY, ANTHROPIC_BASE_URL)
TOOL = Endpoint(
    "claude-3-5-haiku", API_KEY, ANTHROPIC_BASE_URL, options={"structured_output": "tool"}
)
INVOICE_SCHEMA = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "pattern": "^INV-"},
        "total": {"type": "number", "minimum": 0},
        "paid": {"type": "boolean"},
    },
    "required": ["number", "total"],
}
INVOICE = OutputFormat("invoice", INVOICE_SCHEMA, True, "An invoice's fields")
ANY_JSON = OutputFormat("response", None)
WEATHER = Tool("get_weather", "Weather", {"type": "object", "properties": {"city": {}}})
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 10
ANSWER = {"number": "INV-0042", "total": 118.5, "paid": False}


def body(
    messages: list[Message],
    output: OutputFormat | None = None,
    endpoint: Endpoint = NATIVE,
    tools: ToolSet | None = None,
) -> Any:
    built = ANTHROPIC.build(endpoint, messages, {}, tools=tools, output=output)
    return json.loads(built.body)


# --- structured output: request -------------------------------------------------------------


def test_native_output_config_carries_the_closed_schema() -> None:
    sent = body([Message.user("Extract: ...")], INVOICE)
    schema = sent["output_config"]["format"]["schema"]
    assert sent["output_config"]["format"]["type"] == "json_schema"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["number", "total"]
    assert schema["properties"]["paid"] == {"type": "boolean"}
    assert "tools" not in sent and "tool_choice" not in sent


def test_output_config_from_params_is_merged_not_replaced() -> None:
    built = ANTHROPIC.build(
        NATIVE, [Message.user("x")], {"output_config": {"effort": "low"}}, output=INVOICE
    )
    config = json.loads(built.body)["output_config"]
    assert config["effort"] == "low" and config["format"]["type"] == "json_schema"


def test_conversion_closes_every_object_and_describes_what_the_api_does_not_enforce() -> None:
    schema = {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3},
            "some": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            "when": {"type": "string", "format": "date-time"},
            "code": {"type": "string", "format": "iso-3166", "description": "Country"},
            "maybe": {"type": ["string", "null"]},
            "either": {"oneOf": [{"type": "integer", "maximum": 9}, {"type": "null"}]},
            "inner": {"type": "object", "properties": {"a": {"$ref": "#/$defs/leaf"}}},
        },
        "$defs": {"leaf": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    out = output_schema(schema, True)
    props = out["properties"]
    assert out["additionalProperties"] is False
    assert props["inner"]["additionalProperties"] is False
    assert out["$defs"]["leaf"]["additionalProperties"] is False
    assert props["inner"]["properties"]["a"] == {"$ref": "#/$defs/leaf"}
    assert "minItems" not in props["tags"] and "minItems=3" in props["tags"]["description"]
    assert props["some"]["minItems"] == 1
    assert props["when"]["format"] == "date-time"
    assert "format" not in props["code"]
    assert props["code"]["description"].startswith("Country\n\nConstraints: format=")
    assert props["maybe"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["either"]["anyOf"][0]["description"] == "Constraints: maximum=9"
    assert "oneOf" not in props["either"]


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        (
            {
                "type": "object",
                "properties": {"node": {"$ref": "#/$defs/node"}},
                "$defs": {
                    "node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}
                },
            },
            "recursive",
        ),
        ({"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}}, "only #/"),
        (
            {"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {}}}},
            "map",
        ),
        ({"type": "object", "properties": {"x": {"description": "anything"}}}, "without a type"),
    ],
)
def test_what_output_config_cannot_express_is_refused_before_sending(
    schema: dict[str, Any], why: str
) -> None:
    with pytest.raises(InvalidRequestError, match=why) as info:
        body([Message.user("x")], OutputFormat("s", schema))
    assert "'structured_output': 'tool'" in str(info.value)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(object_schemas())
def test_every_accepted_schema_converts_for_the_api_and_still_takes_the_answer(
    schema: dict[str, Any],
) -> None:
    try:
        converted = output_schema(schema, True)
    except InvalidRequestError as exc:
        assert "cannot express" in str(exc)
        return
    # The emulator checks as the API does; the emulator's answer for the original schema
    # follows the converted one too (closing objects and moving bounds lose no valid answer).
    read_output({"output_config": {"format": {"type": "json_schema", "schema": converted}}}, "m")
    assert validate(json_for(schema, "Invoice for Oslo"), converted) == []


def test_json_mode_forces_an_answer_tool_with_an_open_object() -> None:
    sent = body([Message.user("Tell me about Oslo")], ANY_JSON)
    assert sent["tools"] == [
        {
            "name": "flyllm_output_response",
            "description": "Give your final answer by calling this tool.",
            "input_schema": {"type": "object"},
        }
    ]
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "flyllm_output_response",
        "disable_parallel_tool_use": True,
    }
    assert "output_config" not in sent


def test_tool_mode_forces_a_tool_named_after_the_schema_with_the_schema_unchanged() -> None:
    sent = body([Message.user("Extract")], INVOICE, TOOL)
    assert sent["tools"] == [
        {
            "name": "flyllm_output_invoice",
            "description": "An invoice's fields",
            "input_schema": INVOICE_SCHEMA,
        }
    ]
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "flyllm_output_invoice",
        "disable_parallel_tool_use": True,
    }
    assert "output_config" not in sent


def test_tool_mode_with_user_tools_lets_the_model_call_one_or_answer() -> None:
    sent = body([Message.user("x")], INVOICE, TOOL, ToolSet((WEATHER,), "auto", False))
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "flyllm_output_invoice"]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    sent = body([Message.user("x")], INVOICE, TOOL, ToolSet((WEATHER,), "none"))
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "flyllm_output_invoice",
        "disable_parallel_tool_use": True,
    }


def test_tool_mode_refuses_a_request_that_forces_another_tool() -> None:
    with pytest.raises(InvalidRequestError, match="forces a tool"):
        body([Message.user("x")], INVOICE, TOOL, ToolSet((WEATHER,), "get_weather"))


def test_a_user_tool_with_the_reserved_prefix_is_refused() -> None:
    clash = Tool("flyllm_output_invoice", "mine")
    with pytest.raises(InvalidRequestError, match="reserved"):
        body([Message.user("x")], INVOICE, TOOL, ToolSet((clash,)))


@pytest.mark.parametrize(("output", "endpoint"), [(ANY_JSON, NATIVE), (INVOICE, TOOL)])
def test_the_answer_tool_is_not_forced_with_extended_thinking(
    output: OutputFormat, endpoint: Endpoint
) -> None:
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    with pytest.raises(InvalidRequestError, match="extended thinking"):
        ANTHROPIC.build(endpoint, [Message.user("x")], thinking, output=output)
    built = ANTHROPIC.build(NATIVE, [Message.user("x")], thinking, output=INVOICE)
    assert json.loads(built.body)["thinking"]["type"] == "enabled"


def test_an_unknown_mechanism_is_a_configuration_error() -> None:
    bad = Endpoint("m", API_KEY, ANTHROPIC_BASE_URL, options={"structured_output": "grammar"})
    with pytest.raises(ConfigurationError, match=r"'native'.*'tool'"):
        body([Message.user("x")], INVOICE, bad)


# --- structured output: answers --------------------------------------------------------------


def test_native_answer_text_is_the_json() -> None:
    completion = ANTHROPIC.parse(response("anthropic", "message_output_json.json"))
    assert json.loads(completion.content) == ANSWER
    assert completion.finish_reason == "stop"


def test_forced_tool_answer_becomes_the_content_not_a_call() -> None:
    completion = ANTHROPIC.parse(response("anthropic", "message_output_tool.json"))
    assert json.loads(completion.content) == ANSWER
    assert completion.tool_calls == ()
    assert completion.finish_reason == "stop"
    assert completion.raw_finish_reason == "tool_use"


def test_forced_tool_answer_streams_as_text_whatever_the_reads() -> None:
    data = fixture_bytes("anthropic", "stream_output_tool.txt")
    for reads in ([data], one_byte(data), random_reads(data, 7)):
        result = replay(ANTHROPIC.stream_parser(), reads)
        assert result.completion is not None, result.error
        assert json.loads("".join(result.deltas)) == ANSWER
        assert json.loads(result.completion.content) == ANSWER
        assert result.completion.tool_calls == ()
        assert result.completion.finish_reason == "stop"


def test_structured_output_not_supported_is_learned_as_that_feature() -> None:
    err = ANTHROPIC.classify_error(response("anthropic", "error_output_unsupported.json", 400))
    assert isinstance(err, UnsupportedFeatureError)
    assert err.feature == "structured_output"


# --- images ---------------------------------------------------------------------------------


def test_capabilities_and_url_schemes() -> None:
    assert {"structured_output", "images", "tools"} <= ANTHROPIC.capabilities
    assert ANTHROPIC.image_url_schemes == frozenset({"http", "https"})


def test_image_parts_become_ordered_blocks() -> None:
    turn = Message.user(
        [
            "Compare",
            Image.from_bytes(PNG),
            "  ",
            Image.from_url("https://example.com/cat.gif"),
            Image.from_bytes(GIF),
        ]
    )
    assert body([turn])["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/png",
                        "data": base64.b64encode(PNG).decode(),
                    },
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.gif"}},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/gif",
                        "data": base64.b64encode(GIF).decode(),
                    },
                },
            ],
        }
    ]


def test_images_after_tool_results_join_the_results_turn() -> None:
    call = ToolCall("toolu_1", "get_weather", {"city": "Oslo"})
    sent = body(
        [
            Message.user("Weather?"),
            Message.assistant("", tool_calls=(call,)),
            Message.tool_result("toolu_1", "sunny"),
            Message.user(["And this?", Image.from_bytes(PNG)]),
        ]
    )["messages"]
    assert [b["type"] for b in sent[-1]["content"]] == ["tool_result", "text", "image"]


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (Image.from_url("gs://bucket/cat.png"), "http or https only"),
        (Image.from_url("ftp://example.com/cat.png"), "http or https only"),
        (Image.from_bytes(b"BM" + b"\x00" * 20), "not 'image/bmp'"),
        (Image(b"\x00\x01", None, None), "not 'unknown'"),
    ],
)
def test_images_anthropic_refuses_are_refused_before_sending(image: Image, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        body([Message.user(["x", image])])


def test_the_5_mb_limit_is_on_the_base64_text() -> None:
    largest = PNG + b"\x00" * (MAX_IMAGE_BASE64 // 4 * 3 - len(PNG))
    sent = body([Message.user(["x", Image.from_bytes(largest)])])
    assert len(sent["messages"][0]["content"][1]["source"]["data"]) == MAX_IMAGE_BASE64
    with pytest.raises(InvalidRequestError, match="5 MB") as info:
        body([Message.user(["x", Image.from_bytes(largest + b"\x00")])])
    assert "3,932,161 bytes" in str(info.value)


def test_at_most_100_images_per_request() -> None:
    hundred = [Image.from_bytes(PNG)] * 100
    assert len(body([Message.user(["x", *hundred])])["messages"][0]["content"]) == 101
    with pytest.raises(InvalidRequestError, match=r"at most 100 images.*has 101"):
        body([Message.user(["x", *hundred]), Message.user([Image.from_bytes(PNG)])])


def test_a_second_call_of_the_answer_tool_is_dropped_never_shown_as_a_call() -> None:
    from flyllm.providers._anthropic_output import split_output
    from flyllm.types import ToolCall

    first = ToolCall("a", "flyllm_output_response", {"x": 1})
    again = ToolCall("b", "flyllm_output_response", {})
    mine = ToolCall("c", "get_weather", {"city": "Oslo"})
    assert split_output([first, mine, again]) == ('{"x": 1}', (mine,))
    assert split_output([mine]) == (None, (mine,))
