"""Ollama's structured output and images on the wire: ``format`` ("json" or the schema, a
property test over the accepted schemas), the JSON instruction, ``images`` in base64 and the
formats Ollama decodes, the answer's JSON text; all against wire fixtures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from flyllm._output import read_output
from flyllm._schema import validate
from flyllm.emulator.structured import json_for
from flyllm.errors import InvalidRequestError, UnsupportedFeatureError
from flyllm.params import OutputFormat
from flyllm.providers._json_hint import JSON_HINT
from flyllm.providers._ollama_output import output_schema
from flyllm.providers.base import Endpoint
from flyllm.providers.ollama import OLLAMA_BASE_URL, OllamaProvider
from flyllm.types import Image, Message
from tests.fixtures import fixture_bytes, fixture_json, random_reads, replay, response
from tests.fixtures.schemas import object_schemas

OLLAMA = OllamaProvider()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
AGE = {
    "type": "object",
    "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
    "required": ["age", "available"],
}
ASKED = (
    "Ollama is 22 years old and is busy saving the world. Return a JSON object with the age "
    "and availability."
)


def sent(model: str, messages: list[Message], output: OutputFormat | None = None) -> Any:
    endpoint = Endpoint(model, "", OLLAMA_BASE_URL)
    return json.loads(OLLAMA.build(endpoint, messages, {}, output=output).body)


def test_a_schema_and_images_are_sent_as_the_fixtures_show() -> None:
    body = sent("llama3.2", [Message.user(ASKED)], OutputFormat("age", AGE, True))
    assert body == fixture_json("ollama", "request_format_schema.json")
    turn = Message.user(["What is in this picture?", Image.from_bytes(PNG)])
    assert sent("llava", [turn]) == fixture_json("ollama", "request_images.json")
    assert OLLAMA.image_url_schemes == frozenset()
    assert {"structured_output", "images"} <= OLLAMA.capabilities


def test_json_mode_with_and_without_the_instruction() -> None:
    body = sent("llama3.2", [Message.user("Describe Oslo.")], OutputFormat("response", None))
    assert body["format"] == "json"
    assert body["messages"][0] == {"role": "system", "content": JSON_HINT}
    said = sent("llama3.2", [Message.user(ASKED)], OutputFormat("response", None))
    assert [m["role"] for m in said["messages"]] == ["user"]
    assert "format" not in sent("llama3.2", [Message.user("Hi")])


def test_the_answer_and_its_stream_carry_the_json_text() -> None:
    fmt = OutputFormat("age", AGE, True)
    completion = OLLAMA.parse(response("ollama", "chat_json.json"))
    assert read_output(completion.content, fmt) == ({"age": 22, "available": False}, [])
    data = fixture_bytes("ollama", "stream_json.ndjson")
    streamed = replay(OLLAMA.stream_parser(), random_reads(data, 5), "ndjson")
    assert streamed.completion is not None and streamed.completion.content == completion.content


def test_output_schema_moves_patterns_the_grammar_rejects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "pattern": "^[a-z]+$"},
            "b": {"type": "string", "pattern": "[a-z]+", "description": "letters"},
            "c": {"type": "string", "pattern": "^(?!x).*$"},
            "d": {"enum": [{"pattern": "data, not a schema"}]},
        },
    }
    converted = output_schema(schema, False)
    props = converted["properties"]
    assert props["a"] == schema["properties"]["a"]  # type: ignore[index]
    assert props["b"] == {"type": "string", "description": 'letters Constraints: pattern "[a-z]+".'}
    assert "pattern" not in props["c"] and props["d"] == schema["properties"]["d"]  # type: ignore[index]


def test_output_schema_refuses_a_remote_ref() -> None:
    with pytest.raises(InvalidRequestError, match="outside the schema"):
        output_schema({"type": "object", "properties": {"a": {"$ref": "https://x.test/a.json"}}})


@settings(max_examples=60, deadline=None)
@given(object_schemas())
def test_every_accepted_schema_converts(schema: dict[str, Any]) -> None:
    converted = output_schema(schema, True)
    assert validate(json_for(schema, "Ollama in Oslo"), converted) == []


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (Image.from_bytes(b"GIF89a" + b"\x00" * 8), "PNG and JPEG images, not image/gif"),
        (Image.from_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 "), "not image/webp"),
        (Image.from_url("https://x.test/a.png"), "not by URL"),
    ],
)
def test_images_ollama_cannot_take_are_refused_before_sending(image: Image, said: str) -> None:
    with pytest.raises(InvalidRequestError, match=said):
        sent("llava", [Message.user(["Look", image])])


def test_a_model_without_vision_is_an_unsupported_feature() -> None:
    err = OLLAMA.classify_error(response("ollama", "error_no_images.json", 400))
    assert isinstance(err, UnsupportedFeatureError) and err.feature == "images"
