"""Cohere v2's ``response_format`` and image blocks, validated as the API documents them.

- ``response_format``: ``{"type": "text"}`` or ``{"type": "json_object"}``, the latter with an
  optional schema under ``json_schema`` (the SDK's field; the docs' examples write ``schema``,
  taken too). Not with ``tools`` (documented as unsupported together). The schema's root must
  be an object, every object needs at least one ``required`` property, and the documented
  unsupported keywords are refused: ``allOf``, ``oneOf``, ``not``, numeric ranges, array and
  string lengths, ``uniqueItems``, formats other than date-time, uuid, date and time, and
  patterns with ``^``, ``$``, ``?=`` or ``?!``.
- Images: ``{"type": "image_url", "image_url": {"url", "detail"?}}`` blocks in user turns;
  a base64 data URI (PNG, JPEG, WEBP, non-animated GIF) or an http(s) URL; ``detail`` auto,
  low or high; at most 20 images and 20 MB of image data a request.
- Models named with "novision" refuse images, with "nojson" ``response_format`` (the
  emulator's stand-ins for Cohere's text-only and older models).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["check_schema", "image_types", "media_type", "model_lacks", "read_format"]

MAX_IMAGES = 20
MAX_IMAGE_BYTES = 20_000_000
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
DETAILS = frozenset({"auto", "low", "high"})
_BANNED = ("allOf", "oneOf", "not", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
           "minItems", "maxItems", "minLength", "maxLength", "uniqueItems")  # fmt: skip
_FORMATS = frozenset({"date-time", "uuid", "date", "time"})
_PATTERN = re.compile(r"\^|\$|\?=|\?!")
_MAX_DEPTH = 64


def read_format(body: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any] | None] | str:
    """(JSON asked for, the schema) from ``response_format``, or the problem."""
    fmt = body.get("response_format")
    if fmt is None:
        return False, None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object"):
        return "response_format.type must be one of text, json_object"
    unknown = set(fmt) - {"type", "json_schema", "schema"}
    if unknown:
        return f"unknown field: parameter response_format.{sorted(unknown)[0]} is not valid"
    if fmt["type"] == "text":
        return False, None
    if body.get("tools"):
        return "response_format is not supported with tools or documents"
    schema = fmt.get("json_schema", fmt.get("schema"))
    if schema is None:
        return True, None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return "response_format.json_schema: the top level type must be object"
    problem = check_schema(schema, "json_schema", 0)
    return (True, schema) if problem is None else f"response_format.{problem}"


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))  # fmt: skip


def media_type(data: bytes) -> str | None:
    """The image type the bytes' magic numbers say (PNG, JPEG, GIF, WEBP, BMP), None for
    others: the emulator's own reading, as a server would sniff what it receives."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def model_lacks(model: str, json_asked: bool, images: bool) -> str | None:
    """The 400 text when the model cannot do what the request asks: the emulator's models
    named with "novision" take no images, those with "nojson" no ``response_format``."""
    name = model.lower()
    if images and "novision" in name:
        return f"model '{model}' does not support image inputs"
    if json_asked and "nojson" in name:
        return f"response_format is not supported for model '{model}'"
    return None


def check_schema(node: Any, path: str, depth: int) -> str | None:
    """The first documented limit the schema ``node`` breaks, None when it breaks none."""
    if not isinstance(node, dict):
        return None
    if depth > _MAX_DEPTH:
        return f"{path}: the schema is nested too deeply"
    for key in _BANNED:
        if key in node:
            return f"{path}: {key} is not supported"
    fmt, pattern = node.get("format"), node.get("pattern")
    if isinstance(fmt, str) and fmt not in _FORMATS:
        return f"{path}: format {fmt} is not supported"
    if isinstance(pattern, str) and _PATTERN.search(pattern):
        return f"{path}: pattern {pattern!r} uses unsupported regular expression features"
    if node.get("type") == "object" and not node.get("required"):
        return f"{path}: every object must have at least one required field"
    for key, child in _children(node):
        problem = check_schema(child, f"{path}.{key}", depth + 1)
        if problem:
            return problem
    return None


def _children(node: dict[str, Any]) -> list[tuple[str, Any]]:
    """The subschemas of ``node``, named by their path step."""
    out: list[tuple[str, Any]] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            out.extend((f"{key}.{name}", child) for name, child in node[key].items())
    for key in ("items", "additionalProperties"):
        if key in node:
            out.append((key, node[key]))
    if isinstance(node.get("anyOf"), list):
        out.extend((f"anyOf[{n}]", child) for n, child in enumerate(node["anyOf"]))
    return out


def image_types(messages: list[Any]) -> tuple[str, ...] | str:
    """The media types of the conversation's images, in order, or the problem."""
    found: list[str] = []
    size = 0
    for n, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "image_url":
                continue
            if message.get("role") != "user":
                return f"invalid message: messages[{n}]: images are only allowed in user messages"
            read = _image(block.get("image_url"))
            if isinstance(read, str):
                return f"invalid message: messages[{n}]: {read}"
            found.append(read[0])
            size += read[1]
    if len(found) > MAX_IMAGES:
        return f"too many images: a maximum of {MAX_IMAGES} images is supported per request"
    if size > MAX_IMAGE_BYTES:
        return "images too large: a maximum of 20MB of image data is supported per request"
    return tuple(found)


def _image(value: Any) -> tuple[str, int] | str:
    """(media type, bytes) of one ``image_url``, or the problem."""
    if not isinstance(value, dict) or not isinstance(value.get("url"), str):
        return "image_url.url must be a string"
    if value.get("detail") is not None and value["detail"] not in DETAILS:
        return "image_url.detail must be one of auto, low, high"
    url: str = value["url"]
    if url.startswith(("http://", "https://")):
        return mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/unknown", 0
    head, sep, payload = url.partition(",")
    if not url.startswith("data:") or not sep or not head.endswith(";base64"):
        return "image_url.url must be a base64 data URL or an http(s) URL"
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "image_url.url has invalid base64 data"
    kind = media_type(data)
    if kind not in IMAGE_TYPES or (kind == "image/gif" and b"NETSCAPE2.0" in data):
        return (
            "unsupported image format: supported formats are PNG, JPEG, WEBP and non-animated GIF"
        )
    return kind, len(data)
