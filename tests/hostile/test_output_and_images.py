"""Structured output and images against hostile input from a careless caller or a server:
schemas that are deep, huge, cyclic, point nowhere, hold booleans or non-string keys, through
every provider's converter and the validator, bounded in time and memory; image URLs with
credentials never shown; an image whose media type lies; the ``detail`` values."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from flyllm import GenerationRequest, Image, InvalidRequestError, JsonSchema, Message, Tool
from flyllm._schema import validate
from flyllm.params import conversation, output_format, tool_set
from flyllm.providers import (
    _anthropic_output,
    _cohere_output,
    _google_output,
    _ollama_output,
    get_provider,
)
from flyllm.providers.base import Endpoint
from flyllm.providers.chat_output import mistral_output_schema, openai_output_schema
from tests.hostile.conftest import budget

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SECRET = "-".join(["pass", "word", "value"])
TOKEN = "-".join(["sig", "nature"])
CREDENTIALED = f"https://bob:{SECRET}@img.example/cat.png?sig={TOKEN}#frag"


def deep(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def defs(entries: Mapping[str, Any], root: str = "d0") -> dict[str, Any]:
    return {"type": "object", "properties": {"a": {"$ref": f"#/$defs/{root}"}}, "$defs": entries}


CHAIN = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(500)}
FANOUT = {f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(40)}
HOSTILE: dict[str, dict[str, Any]] = {
    "deep": deep(70),
    "wide": {
        "type": "object",
        "properties": {f"p{i}": {"enum": [str(j) for j in range(20)]} for i in range(5000)},
    },
    "cyclic": defs({"d0": {"type": "object", "properties": {"n": {"$ref": "#/$defs/d0"}}}}),
    "ref-loop": defs({"d0": {"$ref": "#/$defs/d1"}, "d1": {"$ref": "#/$defs/d0"}}),
    "ref-chain": defs({**CHAIN, "d500": {"type": "string"}}),
    "ref-fanout": defs({**FANOUT, "d40": {"type": "string"}}),
    "absent-def": defs({}),
    "root-ref": {"type": "object", "properties": {"a": {"$ref": "#"}}},
    "booleans": {"type": "object", "properties": {"a": True, "b": False}},
    "odd-types": {"type": "object", "properties": True, "required": "a", "$defs": [1]},
}
CONVERTERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "openai-strict": lambda s: openai_output_schema(s, True),
    "mistral-strict": lambda s: mistral_output_schema(s, True),
    "anthropic": _anthropic_output.output_schema,
    "google": _google_output.output_schema,
    "cohere": _cohere_output.output_schema,
    "ollama": _ollama_output.output_schema,
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_schemas_convert_or_are_refused_within_bounds(name: str) -> None:
    schema = HOSTILE[name]
    answer = {"a": {"n": {"n": {}}}, "b": 1}
    # A guard against blow-ups (2^40 paths in ref-fanout, 500 links in ref-chain), not a speed
    # target: "wide" takes 0.2-0.5 s alone and over 2 s on a loaded 2-core machine.
    with budget(seconds=10.0, megabytes=40):
        for convert in CONVERTERS.values():
            try:
                json.dumps(convert(schema))
            except InvalidRequestError as exc:
                assert len(str(exc)) < 1000
        errors = validate(answer, schema)
    assert len(errors) <= 20 and all(len(e) < 400 for e in errors)


def test_a_schema_with_keys_that_are_not_strings_is_refused() -> None:
    # json.dumps would send {"1": ...} while the answer is validated against {1: ...}
    schema = {"type": "object", "properties": {1: {"type": "string"}}}
    with pytest.raises(InvalidRequestError, match=r"keys must be strings, got 1"):
        output_format(GenerationRequest("x", response_format=JsonSchema("t", schema)))
    tool = Tool("f", "", {"type": "object", "properties": {"a": {"enum": [{None: 1}]}}})
    with pytest.raises(InvalidRequestError, match=r"keys must be strings, got None"):
        tool_set(GenerationRequest("x", tools=[tool]))


def test_an_image_url_s_secrets_never_show_in_reprs() -> None:
    image = Image.from_url(CREDENTIALED)
    request = GenerationRequest(messages=[Message.user(["look", image])])
    for shown in (repr(image), repr(request.messages), repr(request), str(request)):
        assert SECRET not in shown and TOKEN not in shown and "img.example" in shown


def test_gemini_refusing_a_url_never_names_its_credentials() -> None:
    google = get_provider("google")
    turn = Message.user(["look", Image.from_url(CREDENTIALED.replace("https", "ftp"))])
    with pytest.raises(InvalidRequestError) as caught:
        google.build(Endpoint("gemini-2.5-flash", "k", ""), [turn], {})
    assert SECRET not in str(caught.value) and "img.example" in str(caught.value)


def test_an_image_whose_media_type_lies_is_refused_before_sending() -> None:
    turn = Message.user(["look", Image(PNG, None, "image/jpeg")])
    with pytest.raises(InvalidRequestError, match="image/jpeg but the bytes are image/png"):
        conversation(GenerationRequest(messages=[turn]))


@pytest.mark.parametrize(
    ("provider", "sent"), [("openai", "original"), ("mistral", "high"), ("cohere", "high")]
)
def test_detail_original_goes_where_it_exists_and_as_high_elsewhere(
    provider: str, sent: str
) -> None:
    turn = Message.user(["look", Image.from_bytes(PNG, detail="original")])
    (checked,) = conversation(GenerationRequest(messages=[turn]))
    built = get_provider(provider).build(Endpoint("m", "k", ""), [checked], {})
    content = json.loads(built.body)["messages"][-1]["content"]
    assert content[1]["image_url"]["detail"] == sent


def test_image_bytes_are_not_copied_when_wrapped() -> None:
    data = PNG + b"\x00" * 1000
    assert Image.from_bytes(data).data is data


@pytest.mark.parametrize("provider", ["anthropic", "openai", "mistral", "cohere"])
def test_an_oversized_image_is_refused_before_it_is_encoded(provider: str) -> None:
    huge = Image.from_bytes(PNG + b"\x00" * (30 << 20))
    turn = Message.user(["look", huge])
    with budget(seconds=2.0, megabytes=8), pytest.raises(InvalidRequestError, match="MB"):
        get_provider(provider).build(Endpoint("m", "k", ""), [turn], {})
