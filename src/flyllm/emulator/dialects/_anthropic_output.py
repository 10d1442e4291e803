"""Structured output and images in the emulator's Anthropic dialect, checked as the Messages API
checks them (texts marked "(emulator's wording)" are plausible stand-ins where no public text
was found).

- ``output_config.format``: ``{type: "json_schema", schema}``; the schema must close every
  object (``additionalProperties: false``), and may not use what the API cannot enforce
  (numeric bounds, string lengths, ``maxItems``, ``minItems`` above 1, unknown string formats,
  external or recursive ``$ref``). Models of the Claude 3 generation do not take it.
- Image blocks: ``source`` ``{type: "base64", media_type, data}`` (JPEG, PNG, GIF or WEBP, the
  bytes matching the media type, at most 5 MB of base64) or ``{type: "url", url}`` (http or
  https); at most 100 images per request.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from flyllm.emulator.dialects._anthropic_tools import Problem

__all__ = ["MAX_IMAGES", "MAX_IMAGE_BASE64", "read_images", "read_output"]

MAX_IMAGE_BASE64 = 5 * 1024 * 1024
MAX_IMAGES = 100
_OURS = " (emulator's wording)"
_MEDIA = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
)
_REJECTED = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "patternProperties",
]
_FORMATS = frozenset(
    ["date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"]
)
_MAX_DEPTH = 32


def read_output(body: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    """The schema ``output_config.format`` asks the answer to follow (None without one);
    Problem for what the API rejects."""
    config = body.get("output_config")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise Problem("output_config: Input should be a valid dictionary")
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise Problem("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise Problem("output_config.format.schema: Field required")
    if "claude-3" in model:
        raise Problem(f"output_config.format: structured outputs are not supported for {model}")
    defs = {f"#/{k}/{n}" for k in ("$defs", "definitions") for n in schema.get(k) or {}}
    _check(schema, "output_config.format.schema", defs, 0)
    _check_cycles(schema)
    return schema


def _check(node: Any, where: str, defs: set[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise Problem(f"{where}: schema is nested too deeply{_OURS}")
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check(item, f"{where}.{i}", defs, depth + 1)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if ref is not None and ref not in defs:
        raise Problem(f"{where}: $ref {ref!r} must point into the schema's $defs{_OURS}")
    for key in _REJECTED:
        if key in node:
            raise Problem(f"{where}: '{key}' is not supported in structured outputs{_OURS}")
    if "minItems" in node and node["minItems"] not in (0, 1):
        raise Problem(f"{where}: minItems values other than 0 or 1 are not supported{_OURS}")
    fmt = node.get("format")
    if node.get("type") == "string" and fmt is not None and fmt not in _FORMATS:
        raise Problem(f"{where}: string format {fmt!r} is not supported{_OURS}")
    if node.get("type") == "object" and node.get("additionalProperties") is not False:
        raise Problem(
            f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
        )
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                _check(sub, f"{where}.{key}.{name}", defs, depth + 1)
        elif key in ("items", "anyOf", "allOf", "oneOf"):
            _check(value, f"{where}.{key}", defs, depth + 1)


def _check_cycles(schema: Mapping[str, Any]) -> None:
    """Problem when a definition reaches itself through ``$ref`` (recursive schemas)."""
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            defs[f"#/{key}/{name}"] = sub

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for start, sub in defs.items():
        seen: set[str] = set()
        todo = refs(sub)
        while todo:
            ref = todo.pop()
            if ref == start:
                raise Problem(
                    f"output_config.format.schema: recursive schemas are not supported{_OURS}"
                )
            if ref not in seen and ref in defs:
                seen.add(ref)
                todo.extend(refs(defs[ref]))


def read_images(messages: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The media types of the conversation's image blocks, in order (a URL image's from its
    name, "image/*" when that says nothing); Problem for what the API refuses."""
    found: list[str] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "image":
                found.append(_image(block.get("source"), f"messages.{i}.content.{j}.image"))
    if len(found) > MAX_IMAGES:
        raise Problem(f"Too much media: 0 document pages + {len(found)} images > {MAX_IMAGES}")
    return tuple(found)


def _image(source: Any, where: str) -> str:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        assert isinstance(source, dict)
        url = source.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise Problem(f"{where}.source.url: Input should be a valid URL{_OURS}")
        return mimetypes.guess_type(urlsplit(url).path)[0] or "image/*"
    if kind != "base64":
        raise Problem(
            f"{where}.source: Input tag found using 'type' does not match any of the expected "
            "tags: 'base64', 'url'"
        )
    assert isinstance(source, dict)
    media, data = source.get("media_type"), source.get("data")
    if media not in _MEDIA:
        raise Problem(
            f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
            "'image/gif' or 'image/webp'"
        )
    if not isinstance(data, str):
        raise Problem(f"{where}.source.base64.data: Field required")
    if len(data) > MAX_IMAGE_BASE64:
        raise Problem(
            f"{where}.source.base64: image exceeds 5 MB maximum: {len(data)} bytes > "
            f"{MAX_IMAGE_BASE64} bytes"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(f"{where}.source.base64.data: invalid base64 data{_OURS}") from None
    if _sniff(raw) != media:
        raise Problem(f"{where}.source.base64.data: Image does not match the provided media type")
    return str(media)


def _sniff(raw: bytes) -> str | None:
    for magic, media in _MAGIC:
        if raw.startswith(magic):
            return media
    return "image/webp" if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP" else None
