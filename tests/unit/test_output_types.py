"""Structured output and image parts: the request checks, the answer reading, the emulator's
generated JSON."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from flyllm import GenerationRequest, Image, JsonSchema, Message
from flyllm._output import read_output
from flyllm._schema import validate
from flyllm.emulator.structured import image_note, json_for, output_reply
from flyllm.errors import InvalidRequestError
from flyllm.params import OutputFormat, conversation, output_format
from flyllm.types import sniff_media_type
from tests.fixtures.schemas import object_schemas

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16
HEIC = b"\x00\x00\x00\x18ftypheic" + b"\x00" * 16
INVOICE = {
    "type": "object",
    "properties": {
        "number": {"type": "string", "minLength": 3},
        "total": {"type": "number", "minimum": 100},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}, "minItems": 2},
        "currency": {"enum": ["EUR", "USD"]},
        "due": {"type": "string", "format": "date"},
        "paid": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
    },
    "required": ["number", "total", "lines", "currency"],
    "additionalProperties": False,
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "maximum": 9}},
            "required": ["sku", "qty"],
        }
    },
}


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (b"GIF89a" + b"\0" * 8, "image/gif"),
     (WEBP, "image/webp"), (HEIC, "image/heic"), (b"BM" + b"\0" * 8, "image/bmp"),
     (b"RIFF\0\0\0\0WAVE", None), (b"hello", None), (b"", None)],
)  # fmt: skip
def test_media_types_come_from_the_bytes(data: bytes, media_type: str | None) -> None:
    assert sniff_media_type(data) == media_type


def test_images_from_bytes_paths_and_urls(tmp_path: Path) -> None:
    path = tmp_path / "cat.jpg"  # the name lies: the bytes say PNG
    path.write_bytes(PNG)
    assert Image.from_path(path).media_type == "image/png"
    assert Image.from_bytes(JPEG, detail="low") == Image(JPEG, None, "image/jpeg", "low")
    assert Image.from_bytes(b"\0\0\0", "image/x-raw").media_type == "image/x-raw"
    with pytest.raises(ValueError, match="not an image"):
        Image.from_bytes(b"hello")
    with pytest.raises(ValueError, match="but the bytes are image/png"):
        Image.from_bytes(PNG, "image/jpeg")
    with pytest.raises(TypeError):
        Image.from_bytes("text")  # type: ignore[arg-type]
    url = Image.from_url("https://example.com/cat.png", detail="high")
    assert url.url == "https://example.com/cat.png" and url.data is None
    encoded = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert Image.from_url(encoded).data == PNG
    with pytest.raises(ValueError, match="base64"):
        Image.from_url("data:image/png;base64,@@@")
    with pytest.raises(ValueError, match="base64"):
        Image.from_url("data:text/plain,hello")
    assert "bytes" in repr(Image.from_bytes(PNG)) and "\\x89" not in repr(Image.from_bytes(PNG))


def test_a_user_turn_of_parts() -> None:
    cat = Image.from_bytes(PNG)
    turn = Message.user(["What is in this picture?", cat, "And this one?", cat])
    assert turn.content == "What is in this picture?\nAnd this one?"
    assert turn.parts[1] is cat and turn.images == (cat, cat)
    assert conversation(GenerationRequest(messages=[turn])) == (turn,)
    assert Message.user("plain").parts == ()


@pytest.mark.parametrize(
    ("turn", "message"),
    [
        (Message("assistant", "x", parts=("x", Image(PNG, None, "image/png"))), "only a user"),
        (Message("user", "x", parts=("x", 3)), "a part is text or an Image"),  # type: ignore[arg-type]
        (Message("user", "", parts=(Image(),)), "either data or a url"),
        (Message("user", "", parts=(Image(PNG, "https://x/y.png"),)), "either data or a url"),
        (Message("user", "", parts=(Image("abc"),)), "must be bytes"),  # type: ignore[arg-type]
        (Message("user", "", parts=(Image(None, 3),)), "url must be a string"),  # type: ignore[arg-type]
        (Message("user", "", parts=(Image(PNG, detail="max"),)), "detail"),
        (Message("user", "", parts=["x"]), "only a user"),  # type: ignore[arg-type]
    ],
)
def test_bad_parts_are_refused(turn: Message, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        conversation(GenerationRequest(messages=[turn]))


def test_output_formats() -> None:
    assert output_format(GenerationRequest("x")) is None
    assert output_format(GenerationRequest("x", response_format="json")) == OutputFormat(
        "response", None
    )
    fmt = output_format(GenerationRequest("x", response_format=JsonSchema("invoice", INVOICE)))
    assert fmt == OutputFormat("invoice", INVOICE, True)


class FakeModel:
    """An invoice (stands in for a pydantic model: the same two class methods)."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return {"type": "object", "properties": {"number": {"type": "string"}}}

    @classmethod
    def model_validate(cls, value: Any) -> FakeModel:
        if value.get("number") == "bad":
            raise ValueError("1 validation error\nnumber\n  not a real invoice number")
        return cls(**value)


def test_a_model_class_as_output_format() -> None:
    fmt = output_format(GenerationRequest("x", response_format=FakeModel))
    assert fmt is not None and fmt.name == "FakeModel" and fmt.model is FakeModel
    assert fmt.strict and fmt.description == FakeModel.__doc__
    value, errors = read_output('{"number": "A-1"}', fmt)
    assert isinstance(value, FakeModel) and value.fields == {"number": "A-1"} and not errors
    value, errors = read_output('{"number": "bad"}', fmt)
    assert value is None and errors == [
        "1 validation error",
        "number",
        "  not a real invoice number",
    ]


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("yaml", "JsonSchema, 'json' or a pydantic"),
        (JsonSchema("bad name", INVOICE), "letters, digits"),
        (JsonSchema("list", {"type": "array"}), "object at the root"),
        (JsonSchema("s", {"type": "object", "x": {1}}), "cannot be sent as JSON"),
        (JsonSchema("s", INVOICE, strict="yes"), "strict"),  # type: ignore[arg-type]
        (dict, "JsonSchema, 'json' or a pydantic"),
    ],
)
def test_bad_output_formats_are_refused(fmt: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        output_format(GenerationRequest("x", response_format=fmt))


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('{"a": 1}', True),
        ('```json\n{"a": 1}\n```', True),
        ('```\n{"a": 1}```', True),
        ("[1, 2]", False),
        ("Sure! {", False),
        ("[" * 100_000, False),
    ],
)
def test_json_mode_answers(text: str, ok: bool) -> None:
    value, errors = read_output(text, OutputFormat("response", None))
    assert (value == {"a": 1}) is ok and bool(errors) is not ok


def test_schema_answers_are_validated() -> None:
    fmt = OutputFormat("invoice", INVOICE, True)
    value, errors = read_output('{"number": "A-17", "total": 120}', fmt)
    assert value is None and any("lines" in e for e in errors)
    good = json_for(INVOICE, "Invoice for Oslo please")
    assert read_output(json.dumps(good), fmt) == (good, [])


@pytest.mark.parametrize(
    "schema",
    [
        INVOICE,
        {"type": "object", "properties": {"tags": {"type": "array", "maxItems": 0}}},
        {"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 50}}},
        {"type": "object", "properties": {"s": {"type": "string", "maxLength": 2}}},
        {"type": "object", "properties": {"s": {"type": "string", "minLength": 30}}},
        {"type": "object", "properties": {"c": {"const": 7}, "x": {"type": ["null", "string"]}}},
        {"type": "object", "properties": {"a": {"allOf": [{"type": "object"}, {}]}}},
        {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}},
    ],
)  # fmt: skip
def test_the_emulators_json_follows_the_schema(schema: dict[str, Any]) -> None:
    value = json_for(schema, "Weather in Oslo?")
    assert validate(value, schema) == []
    assert json_for(schema, "Weather in Oslo?") == value  # deterministic


def test_the_emulators_output_replies() -> None:
    good = output_reply(INVOICE, "Invoice for Oslo", bad=False)
    assert "".join(good.chunks) == good.text and good.finish == "end"
    assert output_reply(INVOICE, "x", bad=True).text == "[]"
    assert "{" not in output_reply(None, "x", bad=True).text
    assert (
        output_reply(None, "Invoice for Oslo", bad=False).text == '{"answer": "Oslo", "ok": true}'
    )
    assert image_note(["image/png"]) == "[1 image: image/png]"
    assert image_note(["image/png", "image/gif"]) == "[2 images: image/png, image/gif]"


@settings(max_examples=200, deadline=None)
@given(object_schemas())
def test_the_emulators_json_follows_any_accepted_schema(schema: dict[str, Any]) -> None:
    assert validate(json_for(schema, "Invoice for Oslo"), schema) == []
