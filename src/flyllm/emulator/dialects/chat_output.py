"""The structured-output and image side of the chat-completions dialects (OpenAI, Azure, the
compatible services, Mistral): reading ``response_format`` and the ``image_url`` parts of
``messages`` with the provider's rules, and filling the Conversation's ``output_json``,
``output_schema`` and ``images``.

OpenAI's rules: ``response_format.type`` is text, json_object or json_schema; json_object
needs the word "json" somewhere in the messages; json_schema needs a ``name`` (letters,
digits, "_" and "-", at most 64) and an object ``schema``; with ``strict: true`` every object
must say ``additionalProperties: false`` and require every property, and keywords strict mode
does not take (``allOf``, ``minLength``, ...) are refused. Images: parts ``{type:
"image_url", image_url: {url, detail?}}`` only in user turns; a ``data:`` URI must be PNG,
JPEG, GIF or WEBP (its bytes say which), at most 20 MB; ``detail`` auto, low, high or
original.
Mistral takes ``image_url`` as a string too, at most 10 MB an image and 8 a request.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flyllm.emulator.wire import Answer, Conversation, text_parts

__all__ = ["MISTRAL_LIMITS", "OPENAI_LIMITS", "ImageLimits", "read_images", "read_output"]

_MAX_CONTEXT = 120
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_JSON = re.compile(r"json", re.IGNORECASE)
_STRICT_REJECTED = ("allOf", "not", "if", "then", "else", "patternProperties", "minLength",
                    "maxLength", "minProperties", "maxProperties", "uniqueItems", "contains",
                    "propertyNames")  # fmt: skip
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
          (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))  # fmt: skip
_SUFFIX = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
           ".gif": "image/gif", ".webp": "image/webp"}  # fmt: skip

Invalid = Callable[[str, str], Answer]
"""How a dialect answers a bad request: ``invalid(message, param)``."""


@dataclass(slots=True, frozen=True)
class ImageLimits:
    """A provider's image limits: bytes per image, images per request, whether ``image_url``
    may be a bare string (Mistral)."""

    max_bytes: int
    max_images: int
    url_string: bool = False


OPENAI_LIMITS = ImageLimits(20 * 1024 * 1024, 500)
MISTRAL_LIMITS = ImageLimits(10 * 1024 * 1024, 8, url_string=True)


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in _MAGIC if data.startswith(magic)), None)


def _one_image(part: dict[str, Any], where: str, limits: ImageLimits, invalid: Invalid) -> Any:
    """The media type of one ``image_url`` part, or the 400."""
    inner = part.get("image_url")
    if isinstance(inner, str) and limits.url_string:
        inner = {"url": inner}
    url = inner.get("url") if isinstance(inner, dict) else None
    if not isinstance(url, str) or not url:
        return invalid(f"Missing required parameter: '{where}.image_url.url'.", where)
    detail = inner.get("detail") if isinstance(inner, dict) else None
    if detail is not None and detail not in ("auto", "low", "high", "original"):
        return invalid(
            f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', 'high', and "
            "'original'.",
            f"{where}.image_url.detail",
        )
    if not url.startswith("data:"):
        if not url.startswith(("http://", "https://")):
            return invalid(f"Invalid image URL: '{where}.image_url.url' must be a URL.", where)
        suffix = "." + url.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
        return _SUFFIX.get(suffix, "image/jpeg")
    head, _, payload = url.partition(",")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return invalid("Invalid base64 image_url.", where)
    media = _sniff(data)
    if media is None or not head.endswith(";base64"):
        return invalid(
            "You uploaded an unsupported image. Please make sure your image has of one the "
            "following formats: ['png', 'jpeg', 'gif', 'webp'].",
            where,
        )
    if len(data) > limits.max_bytes:
        mb = limits.max_bytes // (1024 * 1024)
        return invalid(f"Image is too large: the limit is {mb} MB per image.", where)
    return media


def read_images(messages: list[Any], limits: ImageLimits, invalid: Invalid) -> Any:
    """The media types of every image part of ``messages`` in order (a tuple), or the 400:
    images outside user turns, unknown part types, bad URLs, formats, sizes or counts."""
    found: list[str] = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            where = f"messages[{i}].content[{j}]"
            if kind == "text":
                continue
            if kind != "image_url" or not isinstance(part, dict):
                return invalid(
                    f"Invalid value: {kind!r}. Supported values are: 'text' and 'image_url'.",
                    f"{where}.type",
                )
            if message.get("role") != "user":
                return invalid(
                    "Image URLs are only allowed for messages with role 'user', but this "
                    f"message with role {message.get('role')!r} contains an image URL.",
                    f"messages[{i}]",
                )
            media = _one_image(part, where, limits, invalid)
            if isinstance(media, Answer):
                return media
            found.append(media)
    if len(found) > limits.max_images:
        return invalid(
            f"Too many images in request. Max is {limits.max_images}, got {len(found)}.",
            "messages",
        )
    return tuple(found)


def read_output(
    body: dict[str, Any], invalid: Invalid, *, need_json_word: bool = True, strict: bool = True
) -> Any:
    """``(output_json, output_schema)`` from ``response_format``, or the 400 (OpenAI's
    rules; ``need_json_word`` False and ``strict`` False relax what Mistral does not check)."""
    fmt = body.get("response_format")
    if fmt is None:
        return False, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema") or not isinstance(fmt, dict):
        return invalid(
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object', and "
            "'json_schema'.",
            "response_format.type",
        )
    if kind == "text":
        return False, None
    if kind == "json_object":
        texts = [text_parts(m.get("content")) for m in body["messages"] if isinstance(m, dict)]
        if need_json_word and not any(_JSON.search(t) for t in texts):
            return invalid(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                "messages",
            )
        return True, None
    spec = fmt.get("json_schema")
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(name, str) or not _NAME.fullmatch(name):
        return invalid(
            "Missing or invalid 'response_format.json_schema.name': a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$', at most 64 characters.",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return invalid(
            f"Invalid schema for response_format '{name}': schema must be a JSON Schema of "
            "'type: \"object\"'.",
            "response_format",
        )
    if strict and spec.get("strict") is True:
        problem = _strict_problem(schema, ())
        if problem is not None:
            return invalid(
                f"Invalid schema for response_format '{name}': {problem}", "response_format"
            )
    return True, schema


def _strict_problem(node: Any, context: tuple[str, ...]) -> str | None:
    """What makes ``node`` unfit for strict mode, in OpenAI's words, or None (bounded: a
    schema nested deeper than the API allows is refused before the walk goes further)."""
    if len(context) > _MAX_CONTEXT:
        return f"In context={context[:4]!r}..., the schema is nested too deeply."
    if isinstance(node, list):
        for i, item in enumerate(node):
            problem = _strict_problem(item, (*context, str(i)))
            if problem:
                return problem
        return None
    if not isinstance(node, Mapping):
        return None
    where = f"In context={context!r}"
    for key in _STRICT_REJECTED:
        if key in node:
            return f"{where}, '{key}' is not permitted."
    kind = node.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind):
        if node.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        properties = node.get("properties") or {}
        missing = [k for k in properties if k not in (node.get("required") or [])]
        if missing:
            return (
                f"{where}, 'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
    for key in ("properties", "$defs", "definitions"):
        children = node.get(key)
        if isinstance(children, Mapping):
            for name, child in children.items():
                problem = _strict_problem(child, (*context, key, name))
                if problem:
                    return problem
    for key in ("items", "anyOf", "oneOf"):
        if key in node:
            problem = _strict_problem(node[key], (*context, key))
            if problem:
                return problem
    return None


def fill_output(conv: Conversation, output: tuple[bool, Any], images: tuple[str, ...]) -> None:
    """``conv`` with what ``read_output`` and ``read_images`` found."""
    conv.output_json, conv.output_schema = output
    conv.images = images
