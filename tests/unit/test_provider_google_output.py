"""Gemini structured output and images on the wire: ``responseMimeType`` and
``responseJsonSchema``, the schema conversion (property-tested over ``object_schemas()``),
``inlineData``/``fileData`` parts, the format and inline-size limits, and the 400s that say a
model lacks JSON mode or image input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from flyllm._schema import validate
from flyllm.emulator.structured import json_for
from flyllm.errors import InvalidRequestError, UnsupportedFeatureError
from flyllm.params import OutputFormat, ToolSet
from flyllm.providers._google_media import MAX_INLINE_BYTES, accepts_image_url
from flyllm.providers._google_output import SUPPORTED_KEYWORDS, output_schema
from flyllm.providers.base import Endpoint, HttpRequest, SseEvent
from flyllm.providers.google import GOOGLE_BASE_URL, GoogleProvider
from flyllm.types import Image, Message, Tool
from tests.fixtures import API_KEY, fixture_bytes, response
from tests.fixtures.schemas import object_schemas

GOOGLE = GoogleProvider()
ENDPOINT = Endpoint("gemini-2.5-flash", API_KEY, GOOGLE_BASE_URL)
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB")
GIF = b"GIF89a" + b"\0" * 20
INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "minLength": 1},
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "maxItems": 50},
    },
    "required": ["number", "total"],
    "additionalProperties": False,
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["text"],
        }
    },
}
ASK = [Message.user("Extract the invoice: INV-7, 12.50 EUR")]


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


def fixture(name: str) -> Any:
    return json.loads(fixture_bytes("google", name))


# --- structured output: the request -----------------------------------------------------------


def test_schema_is_response_json_schema_with_the_json_mime_type() -> None:
    output = OutputFormat("invoice", INVOICE, True, "An invoice")
    request = GOOGLE.build(ENDPOINT, ASK, {"max_tokens": 200}, output=output)
    assert body_of(request) == fixture("request_structured.json")


def test_json_is_the_mime_type_alone_whatever_the_prompt() -> None:
    request = GOOGLE.build(ENDPOINT, [Message.user("Hi")], {}, output=OutputFormat("r", None))
    assert body_of(request)["generationConfig"] == {"responseMimeType": "application/json"}


def test_output_merges_with_a_generation_config_given_as_a_parameter() -> None:
    params = {"temperature": 0.5, "generationConfig": {"candidateCount": 1}}
    request = GOOGLE.build(ENDPOINT, ASK, params, output=OutputFormat("r", None))
    assert body_of(request)["generationConfig"] == {
        "temperature": 0.5,
        "candidateCount": 1,
        "responseMimeType": "application/json",
    }


def test_streamed_request_carries_the_schema_too() -> None:
    output = OutputFormat("invoice", INVOICE)
    request = GOOGLE.build(ENDPOINT, ASK, {}, stream=True, output=output)
    assert request.url.endswith(":streamGenerateContent?alt=sse")
    assert "responseJsonSchema" in body_of(request)["generationConfig"]


WEATHER = ToolSet((Tool("get_weather", "Weather", {"type": "object", "properties": {}}),))


def test_beside_tools_before_gemini_3_the_schema_is_asked_in_words() -> None:
    output = OutputFormat("invoice", INVOICE)
    messages = [Message.system("Be exact."), *ASK]
    sent = body_of(GOOGLE.build(ENDPOINT, messages, {}, tools=WEATHER, output=output))
    assert "generationConfig" not in sent  # JSON mode beside tools is a 400 there
    first, instruction = sent["systemInstruction"]["parts"]
    assert first == {"text": "Be exact."}
    assert instruction["text"].startswith("When you answer in text rather than with a function")
    assert json.dumps(INVOICE, separators=(",", ":")) in instruction["text"]
    any_json = body_of(
        GOOGLE.build(ENDPOINT, ASK, {}, tools=WEATHER, output=OutputFormat("r", None))
    )
    assert "only a JSON object" in any_json["systemInstruction"]["parts"][0]["text"]


def test_gemini_3_takes_json_mode_beside_tools() -> None:
    endpoint = Endpoint("gemini-3-flash-preview", API_KEY, GOOGLE_BASE_URL)
    output = OutputFormat("invoice", INVOICE)
    sent = body_of(GOOGLE.build(endpoint, ASK, {}, tools=WEATHER, output=output))
    assert sent["generationConfig"]["responseMimeType"] == "application/json"
    assert "systemInstruction" not in sent and sent["tools"]


def test_a_json_answer_is_the_completions_text() -> None:
    completion = GOOGLE.parse(response("google", "generate_content_json.json"))
    assert json.loads(completion.content) == {"number": "INV-7", "total": 12.5}
    assert completion.finish_reason == "stop"


# --- structured output: the schema conversion -------------------------------------------------


def test_unsupported_keywords_are_left_out_and_supported_ones_kept() -> None:
    schema = {
        "type": "object",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 8, "title": "Code"},
            "n": {"type": "integer", "exclusiveMinimum": 0, "multipleOf": 2, "maximum": 9},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "kind": {"const": "invoice"},
            "flag": {"enum": [True, False]},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1},
            "either": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        },
        "propertyOrdering": ["code", "n"],
        "default": {},
    }
    assert output_schema(schema, True) == {
        "type": "object",
        "properties": {
            "code": {"type": "string", "title": "Code"},
            "n": {"type": "integer", "maximum": 9},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["invoice"]},
            "flag": {},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1},
            "either": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        },
        "propertyOrdering": ["code", "n"],
    }


def test_ref_keeps_only_dollar_siblings_and_definitions_become_defs() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/definitions/A", "description": "the a", "$comment": "kept"},
            "b": {"allOf": [{"$ref": "#/$defs/B"}], "description": "pydantic v1 style"},
        },
        "definitions": {"A": {"type": "string"}},
        "$defs": {"B": {"type": "integer"}},
    }
    assert output_schema(schema) == {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/A", "$comment": "kept"},
            "b": {"$ref": "#/$defs/B"},
        },
        "$defs": {"A": {"type": "string"}, "B": {"type": "integer"}},
    }


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        (
            {"type": "object", "allOf": [{"type": "object"}, {"required": ["a"]}]},
            "allOf with several parts",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://x.test/a.json"}}},
            "points outside the schema",
        ),
        (
            {
                "type": "object",
                "properties": {"next": {"$ref": "#"}},
                "required": ["next"],
            },
            "refers back to itself through required properties",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"$ref": "#/$defs/A"}},
                "$defs": {
                    "A": {
                        "type": "object",
                        "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/A"}}},
                        "required": ["kids"],
                        "minItems": 1,
                    }
                },
            },
            None,  # an empty array ends the recursion: accepted
        ),
        ({"type": "object", "properties": {"a": 3}}, "a schema must be an object"),
        ({"type": "object", "properties": {"a": {"anyOf": {"type": "string"}}}}, "must be a list"),
    ],
)
def test_what_cannot_be_converted_is_refused_saying_why(
    schema: dict[str, Any], why: str | None
) -> None:
    if why is None:
        assert output_schema(schema)["$defs"]["A"]["required"] == ["kids"]
        return
    with pytest.raises(InvalidRequestError, match=why) as caught:
        output_schema(schema)
    assert str(caught.value).startswith("google: the response_format schema cannot be sent")


def test_optional_recursion_is_accepted() -> None:
    schema = {"type": "object", "properties": {"next": {"$ref": "#"}, "v": {"type": "integer"}}}
    assert output_schema(schema)["properties"]["next"] == {"$ref": "#"}


def _chain(n: int, closed: bool) -> dict[str, Any]:
    """A root requiring d0, each d{i} requiring d{i+1}, the last requiring d0 when closed."""
    defs = {
        f"d{i}": {
            "type": "object",
            "properties": {"next": {"$ref": f"#/$defs/d{i + 1}"}},
            "required": ["next"],
        }
        for i in range(n - 1)
    }
    last: dict[str, Any] = {"type": "object", "properties": {"next": {"$ref": "#/$defs/d0"}}}
    if closed:
        last["required"] = ["next"]
    defs[f"d{n - 1}"] = last
    return {
        "type": "object",
        "properties": {"d": {"$ref": "#/$defs/d0"}},
        "required": ["d"],
        "$defs": defs,
    }


def test_a_required_cycle_across_definitions_is_found_in_linear_time() -> None:
    assert len(output_schema(_chain(5000, closed=False))["$defs"]) == 5000
    with pytest.raises(InvalidRequestError, match="refers back to itself"):
        output_schema(_chain(5000, closed=True))


def test_a_schema_nested_too_deeply_is_refused() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(70):
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(InvalidRequestError, match="nested more than 64"):
        output_schema(schema)


def test_a_refused_schema_is_refused_before_sending() -> None:
    bad = OutputFormat("x", {"type": "object", "allOf": [{}, {}]})
    with pytest.raises(InvalidRequestError, match="allOf"):
        GOOGLE.build(ENDPOINT, ASK, {}, output=bad)


def _keywords(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_keywords(n) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for key, value in node.items():
        if key in ("properties", "$defs") and isinstance(value, dict):
            found |= _keywords(list(value.values()))
        elif isinstance(value, dict | list) and key not in ("enum", "required"):
            found |= _keywords(value)
    return found


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(object_schemas())
def test_every_drawn_schema_converts_into_geminis_subset_or_is_refused(
    schema: dict[str, Any],
) -> None:
    try:
        converted = output_schema(schema, True)
    except InvalidRequestError as exc:
        assert str(exc).startswith("google: the response_format schema cannot be sent")
        return
    assert _keywords(converted) <= SUPPORTED_KEYWORDS | {"propertyOrdering"}
    value = json_for(schema, "Extract Acme")
    assert validate(value, schema) == []  # the emulator's JSON for the original...
    assert validate(value, converted) == []  # ...is accepted by what Gemini is sent


# --- images -----------------------------------------------------------------------------------


def test_bytes_gs_and_file_api_images_in_order() -> None:
    turn = Message.user(
        [
            "Compare these:",
            Image.from_bytes(PNG),
            Image.from_url("gs://bucket/cat.jpg"),
            Image.from_url(
                "https://generativelanguage.googleapis.com/v1beta/files/abc-123",
                media_type="image/webp",
                detail="high",  # OpenAI's hint: Gemini has none, left out
            ),
            "",
            "Which is bigger?",
        ]
    )
    assert body_of(GOOGLE.build(ENDPOINT, [turn], {})) == fixture("request_images.json")


def test_a_plain_https_url_is_refused_naming_it_without_its_query() -> None:
    turn = Message.user(["What?", Image.from_url("https://example.com/cat.png?sig=SECRET")])
    with pytest.raises(InvalidRequestError, match="gs:// and Gemini File API") as caught:
        GOOGLE.build(ENDPOINT, [turn], {})
    assert "https://example.com/cat.png" in str(caught.value)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    "image",
    [Image.from_bytes(GIF), Image.from_url("gs://bucket/anim.gif")],
    ids=["gif-bytes", "gif-url"],
)
def test_gif_is_refused_naming_the_formats_gemini_takes(image: Image) -> None:
    with pytest.raises(InvalidRequestError, match=r"image/gif.*PNG, JPEG, WEBP, HEIC and HEIF"):
        GOOGLE.build(ENDPOINT, [Message.user(["Look", image])], {})


def test_image_jpg_is_sent_as_image_jpeg() -> None:
    turn = Message.user(["Look", Image.from_url("gs://b/x", media_type="image/jpg")])
    part = body_of(GOOGLE.build(ENDPOINT, [turn], {}))["contents"][0]["parts"][1]
    assert part == {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://b/x"}}


def test_consecutive_user_turns_with_images_merge_into_one_content() -> None:
    turns = [Message.user("First"), Message.user([Image.from_bytes(PNG)]), Message.user("Why?")]
    (content,) = body_of(GOOGLE.build(ENDPOINT, turns, {}))["contents"]
    assert [next(iter(p)) for p in content["parts"]] == ["text", "inlineData", "text"]


def test_a_url_of_unknown_type_needs_a_media_type() -> None:
    turn = Message.user(["Look", Image.from_url("gs://bucket/object")])
    with pytest.raises(InvalidRequestError, match="media_type="):
        GOOGLE.build(ENDPOINT, [turn], {})


def test_inline_images_over_the_request_limit_are_refused_before_encoding() -> None:
    big = Image.from_bytes(PNG + bytes(MAX_INLINE_BYTES * 3 // 4 - len(PNG) + 3))
    with pytest.raises(InvalidRequestError, match="over Gemini's 100 MB per request"):
        GOOGLE.build(ENDPOINT, [Message.user(["Look", big])], {})


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        ("gs://bucket/a.png", True),
        ("https://generativelanguage.googleapis.com/v1beta/files/abc", True),
        ("https://generativelanguage.googleapis.com/v1/files/abc", True),
        ("https://generativelanguage.googleapis.com/v1beta/files/abc/x", False),
        ("https://generativelanguage.googleapis.com.evil.test/v1beta/files/abc", False),
        ("http://generativelanguage.googleapis.com/v1beta/files/abc", False),
        ("https://example.com/v1beta/files/abc", False),
        ("gs:///no-bucket", False),
        ("https://[::1", False),
    ],
)
def test_accepts_image_url_tells_file_api_uris_from_other_https(url: str, taken: bool) -> None:
    assert GOOGLE.accepts_image_url(url) is taken
    assert accepts_image_url(url) is taken


def test_capabilities_and_schemes() -> None:
    assert {"structured_output", "images", "tools"} <= GOOGLE.capabilities
    assert GOOGLE.image_url_schemes == frozenset({"gs"})


# --- the 400s of models that lack the feature -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "feature"),
    [
        ("error_json_mode_unsupported.json", "structured_output"),
        ("error_images_unsupported.json", "images"),
        ("error_tools_unsupported.json", "tools"),
    ],
)
def test_feature_not_enabled_is_unsupported_feature(name: str, feature: str) -> None:
    err = GOOGLE.classify_error(response("google", name, 400))
    assert isinstance(err, UnsupportedFeatureError)
    assert (err.feature, err.status, err.provider) == (feature, 400, "google")
    with pytest.raises(UnsupportedFeatureError) as caught:
        GOOGLE.stream_parser().feed(SseEvent(json.dumps(fixture(name))))
    assert caught.value.feature == feature
