"""Cohere's structured output and images on the wire: ``response_format`` with the schema in
Cohere's subset (a property test over the accepted schemas), the JSON instruction, image
blocks and Cohere's limits, the answer's JSON text; all against wire fixtures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from flyllm._output import read_output
from flyllm._schema import validate
from flyllm.emulator.dialects._cohere_output import check_schema, image_types
from flyllm.emulator.structured import json_for
from flyllm.errors import InvalidRequestError, UnsupportedFeatureError
from flyllm.params import OutputFormat, ToolSet
from flyllm.providers._cohere_output import output_schema
from flyllm.providers._json_hint import JSON_HINT
from flyllm.providers.base import Endpoint
from flyllm.providers.cohere import COHERE_BASE_URL, TOOLS_WITH_OUTPUT, CohereProvider
from flyllm.types import Image, Message, Tool
from tests.fixtures import API_KEY, fixture_bytes, fixture_json, random_reads, replay, response
from tests.fixtures.schemas import object_schemas

COHERE = CohereProvider()
ENDPOINT = Endpoint("command-a-03-2025", API_KEY, COHERE_BASE_URL)
VISION = Endpoint("command-a-vision-07-2025", API_KEY, COHERE_BASE_URL)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "pattern": "^INV-[0-9]+$"},
        "total": {"type": "number", "minimum": 0},
        "currency": {"oneOf": [{"type": "string"}, {"type": "null"}]},
    },
}


def sent(messages: list[Message], output: OutputFormat | None = None, **kw: Any) -> Any:
    return json.loads(
        COHERE.build(kw.pop("endpoint", ENDPOINT), messages, {}, output=output, **kw).body
    )


def test_a_schema_is_sent_as_the_fixture_shows() -> None:
    turn = Message.user("Extract the invoice as JSON: INV-7, 12.50 EUR.")
    body = sent([turn], OutputFormat("invoice", INVOICE, True))
    assert body == fixture_json("cohere", "request_json_schema.json")


def test_images_are_sent_as_the_fixture_shows() -> None:
    turn = Message.user(
        [
            "What is this?",
            Image.from_bytes(PNG, detail="high"),
            Image.from_url("https://example.com/cat.jpg"),
        ]
    )
    assert sent([turn], endpoint=VISION) == fixture_json("cohere", "request_images.json")
    assert COHERE.image_url_schemes == frozenset({"http", "https"})
    assert {"structured_output", "images"} <= COHERE.capabilities


def test_json_mode_and_the_instruction() -> None:
    body = sent([Message.user("Describe Oslo.")], OutputFormat("response", None))
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": JSON_HINT}
    with_system = sent([Message.system("Be brief."), Message.user("Hi")], OutputFormat("r", None))
    assert with_system["messages"][0] == {"role": "system", "content": f"Be brief.\n\n{JSON_HINT}"}
    said = sent([Message.user("Reply in json please")], OutputFormat("r", None))
    assert [m["role"] for m in said["messages"]] == ["user"]
    assert "response_format" not in sent([Message.user("Hi")])


def test_the_answer_and_its_stream_carry_the_json_text() -> None:
    fmt = OutputFormat("invoice", INVOICE, True)
    completion = COHERE.parse(response("cohere", "chat_json.json"))
    assert read_output(completion.content, fmt) == (
        {"number": "INV-7", "total": 12.5, "currency": "EUR"},
        [],
    )
    streamed = replay(
        COHERE.stream_parser(), random_reads(fixture_bytes("cohere", "stream_json.txt"), 3)
    )
    assert streamed.completion is not None and streamed.completion.content == completion.content


def test_tools_with_a_response_format_are_refused_before_sending() -> None:
    tools = ToolSet((Tool("f", "", {"type": "object", "properties": {}}),))
    with pytest.raises(UnsupportedFeatureError) as caught:
        sent([Message.user("Hi")], OutputFormat("r", None), tools=tools)
    assert caught.value.feature == TOOLS_WITH_OUTPUT


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (  # a one-part allOf merged; the first property required
            {"type": "object",
             "properties": {"a": {"allOf": [{"type": "string"}], "description": "d"}}},
            {"type": "object", "properties": {"a": {"type": "string", "description": "d"}},
             "required": ["a"]},
        ),
        (  # required kept; an unsupported format and uniqueItems said in the description
            {"type": "object", "required": ["b"], "properties": {
                "a": {"type": "string", "format": "email"},
                "b": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}}},
            {"type": "object", "required": ["b"], "properties": {
                "a": {"type": "string", "description": "Constraints: format email."},
                "b": {"type": "array", "items": {"type": "integer"},
                      "description": "Constraints: uniqueItems true."}}},
        ),
        (  # a lookahead pattern moved; $defs rewritten too
            {"type": "object", "properties": {"r": {"$ref": "#/$defs/R"}}, "required": ["r"],
             "$defs": {"R": {"type": "object",
                             "properties": {"p": {"type": "string", "pattern": "(?=x)"}}}}},
            {"type": "object", "properties": {"r": {"$ref": "#/$defs/R"}}, "required": ["r"],
             "$defs": {"R": {"type": "object", "required": ["p"], "properties": {
                 "p": {"type": "string", "description": 'Constraints: pattern "(?=x)".'}}}}},
        ),
    ],
)  # fmt: skip
def test_output_schema_rewrites(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert output_schema(schema, True) == expected
    assert output_schema(schema, False) == expected  # Cohere always enforces the schema
    assert check_schema(expected, "json_schema", 0) is None


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not'"),
        ({"type": "object", "properties": {"a": {"allOf": [{}, {}]}}}, "'allOf'"),
        ({"type": "object", "properties": {"m": {"type": "object"}}}, r"\$.properties.m"),
    ],
)
def test_output_schema_refuses_what_it_cannot_rewrite(schema: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        output_schema(schema)


def test_a_schema_nested_too_deeply_is_refused() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(80):
        deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
    with pytest.raises(InvalidRequestError, match="nested"):
        output_schema(deep)


@settings(max_examples=100, deadline=None)
@given(object_schemas())
def test_every_accepted_schema_converts_or_is_refused_clearly(schema: dict[str, Any]) -> None:
    try:
        converted = output_schema(schema, True)
    except InvalidRequestError as exc:
        assert "cohere" in str(exc) and "at $" in str(exc)
        return
    assert check_schema(converted, "json_schema", 0) is None  # what the emulator's API takes
    assert validate(json_for(schema, "The invoice of Oslo"), converted) == []


@pytest.mark.parametrize(
    ("images", "said"),
    [
        ([Image.from_bytes(PNG + b"\x00" * 20_000_000)], "20 MB"),
        ([Image.from_bytes(PNG)] * 21, "at most 20 images"),
        ([Image.from_bytes(b"BM" + b"\x00" * 8)], "not image/bmp"),
        ([Image.from_bytes(b"GIF89a" + b"NETSCAPE2.0")], "animated"),
        ([Image.from_url("gs://bucket/cat.png")], "not a gs: URL"),
    ],
)
def test_images_cohere_refuses_are_refused_before_sending(images: list[Image], said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        sent([Message.user(["Look", *images])], endpoint=VISION)


def test_the_emulator_reads_the_fixture_images_and_refuses_bad_ones() -> None:
    messages = fixture_json("cohere", "request_images.json")["messages"]
    assert image_types(messages) == ("image/png", "image/jpeg")
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]
    assert isinstance(image_types(bad), str)


@pytest.mark.parametrize(
    ("name", "feature"),
    [
        ("error_no_images.json", "images"),
        ("error_no_json.json", "structured_output"),
        ("error_json_with_tools.json", None),  # both at once: no capability is lacking
    ],
)
def test_not_supported_answers_name_the_capability(name: str, feature: str | None) -> None:
    err = COHERE.classify_error(response("cohere", name, 400))
    if feature is None:
        assert not isinstance(err, UnsupportedFeatureError) and err.status == 400
    else:
        assert isinstance(err, UnsupportedFeatureError) and err.feature == feature
