"""Structured output and images on the chat-completions family (OpenAI, Azure, the presets,
Mistral): ``response_format``, the strict-schema conversion, image parts and their limits,
refusals, and the "not supported" answers learned as capabilities."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings

from flyllm._schema import validate
from flyllm.emulator.dialects.chat_output import _strict_problem
from flyllm.emulator.structured import json_for
from flyllm.errors import ContentFilterError, InvalidRequestError, UnsupportedFeatureError
from flyllm.params import OutputFormat
from flyllm.providers import mistral
from flyllm.providers.azure import AzureOpenAIProvider
from flyllm.providers.base import Endpoint, HttpRequest
from flyllm.providers.chat_output import JSON_INSTRUCTION
from flyllm.providers.mistral import MistralProvider
from flyllm.providers.openai import OPENAI_BASE_URL, OpenAIProvider, output_schema
from flyllm.providers.presets import preset_for
from flyllm.types import Image, Message, ProviderType
from tests.fixtures import API_KEY, response
from tests.fixtures.schemas import object_schemas

OPENAI = OpenAIProvider()
MISTRAL = MistralProvider()
AZURE = AzureOpenAIProvider()
ENDPOINT = Endpoint("gpt-4o-mini", API_KEY, OPENAI_BASE_URL)
MISTRAL_AT = Endpoint("pixtral-12b", API_KEY, "https://api.mistral.ai")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 8
ASK = [Message.user("Extract the invoice fields from: total 42 EUR")]
INVOICE = {
    "type": "object",
    "properties": {
        "total": {"type": "number"},
        "currency": {"type": "string", "maxLength": 3},
        "note": {"oneOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["total"],
}


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


def azure_at(version: str) -> Endpoint:
    return Endpoint("gpt-4o", API_KEY, "https://r.openai.azure.com", api_version=version)


# --- response_format --------------------------------------------------------------------------


def test_a_strict_schema_is_sent_as_json_schema_made_strict() -> None:
    fmt = OutputFormat("invoice", INVOICE, True, "An invoice")
    body = body_of(OPENAI.build(ENDPOINT, ASK, {}, output=fmt))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "invoice",
            "description": "An invoice",
            "schema": {
                "type": "object",
                "properties": {
                    "total": {"type": "number"},
                    "currency": {"type": "string"},  # maxLength: flyllm checks the answer
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "required": ["total", "currency", "note"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    assert body["messages"] == [{"role": "user", "content": ASK[0].content}]
    assert INVOICE["required"] == ["total"]  # the caller's schema is never changed


def test_a_non_strict_schema_is_sent_unchanged() -> None:
    body = body_of(OPENAI.build(ENDPOINT, ASK, {}, output=OutputFormat("invoice", INVOICE)))
    assert body["response_format"]["json_schema"] == {
        "name": "invoice",
        "schema": INVOICE,
        "strict": False,
    }


def test_json_mode_adds_an_instruction_only_when_no_turn_says_json() -> None:
    fmt = OutputFormat("response", None)
    body = body_of(OPENAI.build(ENDPOINT, ASK, {}, output=fmt))
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": JSON_INSTRUCTION}
    said = [Message.system("Reply in json."), *ASK]
    body = body_of(OPENAI.build(ENDPOINT, said, {}, output=fmt))
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == "Reply in json."


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "object", "allOf": [{"type": "object"}]}, "'allOf' (at the root)"),
        (
            {
                "type": "object",
                "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}},
            },
            "/properties/m allows any extra property",
        ),
        ({"type": "object", "properties": {"x": {"not": {"type": "null"}}}}, "'not'"),
    ],
)
def test_what_strict_mode_cannot_express_is_refused_with_the_reason(
    schema: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidRequestError, match="strict=False") as caught:
        OPENAI.build(ENDPOINT, ASK, {}, output=OutputFormat("s", schema, True))
    assert words in str(caught.value)
    assert output_schema(schema, False) == schema  # non-strict sends it as it is


def test_a_hostile_deep_schema_is_refused_in_bounded_time() -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(5000):
        deep = {"type": "object", "properties": {"x": deep}}
    for convert in (output_schema, mistral.output_schema):
        with pytest.raises(InvalidRequestError, match="deeper than 64 levels"):
            convert(deep, True)


@settings(max_examples=40, deadline=None)
@given(object_schemas())
def test_every_drawn_schema_converts_for_openai_or_is_refused_clearly(
    schema: dict[str, Any],
) -> None:
    try:
        converted = output_schema(schema, True)
    except InvalidRequestError as exc:  # pragma: no cover - the subset always converts today
        assert "strict" in str(exc)
        return
    assert _strict_problem(converted, ()) is None  # the emulator's strict rules accept it
    assert validate(json_for(schema, "x"), converted) == []


@settings(max_examples=40, deadline=None)
@given(object_schemas())
def test_every_drawn_schema_converts_for_mistral(schema: dict[str, Any]) -> None:
    converted = mistral.output_schema(schema, True)
    assert converted["additionalProperties"] is False
    assert validate(json_for(schema, "x"), converted) == []


def test_mistral_sends_json_schema_closed_and_json_object() -> None:
    fmt = OutputFormat("invoice", INVOICE, True)
    body = body_of(MISTRAL.build(MISTRAL_AT, ASK, {}, output=fmt))
    spec = body["response_format"]["json_schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert spec["strict"] is True and spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["required"] == ["total"]  # Mistral keeps optional properties
    body = body_of(MISTRAL.build(MISTRAL_AT, ASK, {}, output=OutputFormat("response", None)))
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["content"] == JSON_INSTRUCTION


def test_a_structured_answer_is_the_completion_text() -> None:
    completion = OPENAI.parse(response("openai", "structured_answer.json"))
    assert json.loads(completion.content) == {"total": 42, "currency": "EUR"}


def test_a_refusal_of_a_structured_request_is_a_content_filter_error() -> None:
    with pytest.raises(ContentFilterError, match="the model refused: I'm sorry"):
        OPENAI.parse(response("openai", "structured_refusal.json"))


@pytest.mark.parametrize(
    ("name", "feature"),
    [
        ("error_json_schema_unsupported.json", "structured_output"),
        ("error_image_unsupported.json", "images"),
    ],
)
def test_not_supported_answers_are_learned_as_capabilities(name: str, feature: str) -> None:
    error = OPENAI.classify_error(response("openai", name, 400))
    assert isinstance(error, UnsupportedFeatureError) and error.feature == feature


def test_mistral_no_vision_answer_is_learned() -> None:
    error = MISTRAL.classify_error(response("mistral", "error_vision_unsupported.json", 400))
    assert isinstance(error, UnsupportedFeatureError) and error.feature == "images"


# --- Azure and the presets ----------------------------------------------------------------------


def test_azure_json_schema_needs_2024_08_01_or_later() -> None:
    fmt = OutputFormat("invoice", INVOICE, True)
    with pytest.raises(UnsupportedFeatureError, match="2024-08-01") as caught:
        AZURE.build(azure_at("2024-06-01"), ASK, {}, output=fmt)
    assert caught.value.feature == "structured_output"
    for version in ("2024-08-01-preview", "2024-10-21", "v1"):
        body = body_of(AZURE.build(azure_at(version), ASK, {}, output=fmt))
        assert body["response_format"]["type"] == "json_schema"
    json_mode = OutputFormat("response", None)
    body = body_of(AZURE.build(azure_at("2024-02-01"), ASK, {}, output=json_mode))
    assert body["response_format"] == {"type": "json_object"}
    with pytest.raises(UnsupportedFeatureError) as old:
        AZURE.build(azure_at("2023-05-15"), [Message.user(["see", Image.from_bytes(PNG)])], {})
    assert old.value.feature == "images"


def test_deepseek_asks_for_a_schema_in_words_and_takes_no_images() -> None:
    preset = preset_for(ProviderType.DEEPSEEK)
    assert preset is not None
    deepseek = preset.provider()
    at = Endpoint("deepseek-chat", API_KEY, preset.default_base_url)
    body = body_of(deepseek.build(at, ASK, {}, output=OutputFormat("invoice", INVOICE, True)))
    assert body["response_format"] == {"type": "json_object"}
    assert '"total"' in body["messages"][0]["content"]
    with pytest.raises(UnsupportedFeatureError) as caught:
        deepseek.build(at, [Message.user(["see", Image.from_bytes(PNG)])], {})
    assert caught.value.feature == "images"


# --- images ---------------------------------------------------------------------------------------


def test_images_are_parts_in_order_with_data_uris_and_detail() -> None:
    turn = Message.user(
        [
            "Compare",
            Image.from_bytes(PNG, detail="low"),
            "with",
            Image.from_url("https://example.com/cat.jpg"),
        ]
    )
    body = body_of(OPENAI.build(ENDPOINT, [turn], {}))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
            "detail": "low"}},
        {"type": "text", "text": "with"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]  # fmt: skip
    mistral_body = body_of(MISTRAL.build(MISTRAL_AT, [turn], {}))
    assert mistral_body["messages"][0]["content"] == body["messages"][0]["content"]


@pytest.mark.parametrize(
    ("image", "words"),
    [
        (Image(b"BM" + b"\x00" * 30, None, "image/bmp"), "image/bmp are not accepted"),
        (Image(GIF + b"\x21\xf9\x04" * 2), "animated GIF"),
        (Image(None, "ftp://example.com/a.png"), "scheme 'ftp'"),
        (Image(None, "gs://bucket/a.png"), "scheme 'gs'"),
    ],
)
def test_images_the_provider_refuses_fail_before_sending(image: Image, words: str) -> None:
    if image.data is not None and image.media_type is None:
        image = Image(image.data, None, "image/gif")
    for provider, at in ((OPENAI, ENDPOINT), (MISTRAL, MISTRAL_AT)):
        with pytest.raises(InvalidRequestError, match=words):
            provider.build(at, [Message.user(["look", image])], {})


def test_an_oversized_image_is_refused_naming_the_limit() -> None:
    big = Image(PNG + b"\x00" * (20 * 1024 * 1024), None, "image/png")
    with pytest.raises(InvalidRequestError, match="limit of 20 MB per image"):
        OPENAI.build(ENDPOINT, [Message.user(["look", big])], {})
    mid = Image(PNG + b"\x00" * (10 * 1024 * 1024), None, "image/png")
    with pytest.raises(InvalidRequestError, match="limit of 10 MB per image"):
        MISTRAL.build(MISTRAL_AT, [Message.user(["look", mid])], {})
    OPENAI.build(ENDPOINT, [Message.user(["look", mid])], {})  # within OpenAI's limit


def test_mistral_takes_at_most_eight_images() -> None:
    turn = Message.user(["look", *[Image.from_bytes(PNG)] * 9])
    with pytest.raises(InvalidRequestError, match="9 images in one request, over its limit of 8"):
        MISTRAL.build(MISTRAL_AT, [turn], {})


def test_the_json_instruction_joins_a_system_turn_as_on_every_provider() -> None:
    turns = [Message.system("Be brief."), *ASK]
    fmt = OutputFormat("response", None)
    for provider, at in ((OPENAI, ENDPOINT), (MISTRAL, MISTRAL_AT)):
        sent = body_of(provider.build(at, turns, {}, output=fmt))["messages"]
        assert sent[0] == {"role": "system", "content": f"Be brief.\n\n{JSON_INSTRUCTION}"}
        assert [m["role"] for m in sent] == ["system", "user"]
