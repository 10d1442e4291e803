"""Structured output and image parts of the chat-completions format (OpenAI, Azure, the
OpenAI-compatible presets, Mistral): ``response_format`` from a request's OutputFormat (and the
conversation with flyllm's JSON instruction where it needs one), the schema conversion each
provider's strict mode needs, and a user turn's image parts.

On the wire: ``response_format: {type: "json_schema", json_schema: {name, schema, strict,
description?}}`` for a schema, ``{type: "json_object"}`` for "json" (with a system
instruction that says "JSON" when no turn does: OpenAI refuses json_object otherwise); image
parts ``{type: "image_url", image_url: {url, detail?}}`` with a ``data:`` URI for bytes.
Every limit is checked before sending, as InvalidRequestError naming it.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flyllm.errors import InvalidRequestError
from flyllm.params import OutputFormat
from flyllm.providers._json_hint import JSON_HINT, with_json_hint
from flyllm.types import Image, Message

__all__ = [
    "JSON_INSTRUCTION",
    "ImageRules",
    "check_image_count",
    "image_detail",
    "image_part",
    "json_turns",
    "mistral_output_schema",
    "openai_output_schema",
    "response_format",
    "unsupported_feature",
    "user_content",
    "write_output",
]

MB = 1024 * 1024

JSON_INSTRUCTION = JSON_HINT
"""The system sentence added to a "json" request whose conversation never says "JSON" (the
one every provider adds: ``providers._json_hint``)."""

# Keywords OpenAI's strict mode cannot take and that have no safe rewrite: refused, named.
_STRICT_REFUSED = ("allOf", "not", "if", "then", "else", "patternProperties",
                   "dependentRequired", "dependentSchemas", "unevaluatedProperties")  # fmt: skip
# Keywords strict mode rejects but flyllm enforces itself when it validates the answer: left
# out of what is sent (the answer is still checked against the caller's schema).
_STRICT_DROPPED = ("minLength", "maxLength", "minProperties", "maxProperties", "uniqueItems",
                   "contains", "minContains", "maxContains", "propertyNames")  # fmt: skip
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
MAX_SCHEMA_DEPTH = 64
"""The deepest schema nesting the conversions walk (providers' own limits are far lower)."""


@dataclass(slots=True, frozen=True)
class ImageRules:
    """What one provider takes as images: ``media_types``, ``max_bytes`` per image,
    ``max_images`` per request, whether ``detail`` exists (and its "original", OpenAI's
    alone: sent as "high" elsewhere), and whether an animated GIF is refused (OpenAI and
    Mistral take only still GIFs)."""

    provider: str
    media_types: frozenset[str]
    max_bytes: int
    max_images: int
    detail: bool = True
    still_gif: bool = True
    url_schemes: frozenset[str] = frozenset({"http", "https"})
    original_detail: bool = False


def _refuse(provider: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{provider}: {message}")


def _animated(data: bytes) -> bool:
    """True when GIF bytes hold more than one frame (two graphic control extensions, or the
    NETSCAPE looping block)."""
    return data.count(b"\x21\xf9\x04") > 1 or b"NETSCAPE2.0" in data


def image_part(image: Image, rules: ImageRules) -> dict[str, Any]:
    """One image as ``{type: "image_url", image_url: {url, detail?}}``: bytes as a base64
    ``data:`` URI after the format and size checks, a URL as it is when its scheme is one
    the provider fetches. InvalidRequestError naming the limit otherwise."""
    name = rules.provider
    if image.data is None:
        url = image.url or ""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in rules.url_schemes:
            raise _refuse(
                name,
                f"an image URL with scheme {scheme or '(none)'!r} cannot be sent "
                f"(it takes {', '.join(sorted(rules.url_schemes))} URLs); pass the bytes "
                "with Image.from_bytes or Image.from_path",
            )
    else:
        media_type = (image.media_type or "").lower()
        if media_type not in rules.media_types:
            raise _refuse(
                name,
                f"images of type {media_type or 'unknown'} are not accepted (it takes "
                f"{', '.join(sorted(rules.media_types))}); convert the image first",
            )
        if rules.still_gif and media_type == "image/gif" and _animated(image.data):
            raise _refuse(name, "an animated GIF is not accepted (only still GIFs)")
        if len(image.data) > rules.max_bytes:
            raise _refuse(
                name,
                f"an image of {len(image.data)} bytes is over the limit of "
                f"{rules.max_bytes // MB} MB per image; resize or compress it",
            )
        url = f"data:{media_type};base64,{base64.b64encode(image.data).decode('ascii')}"
    inner: dict[str, Any] = {"url": url}
    if rules.detail and image.detail is not None:
        inner["detail"] = image_detail(image.detail, rules.original_detail)
    return {"type": "image_url", "image_url": inner}


def image_detail(detail: str, original: bool) -> str:
    """``detail`` as a provider takes it: "original" (OpenAI's "do not downscale") becomes
    "high", the nearest, where the provider lacks it (``original`` False)."""
    return "high" if detail == "original" and not original else detail


def user_content(message: Message, rules: ImageRules | None) -> str | list[dict[str, Any]]:
    """A user turn's ``content``: its text, or its parts in order (text parts and image
    parts) when it has images; InvalidRequestError when the provider takes no images."""
    images = message.images if message.parts else ()
    if not images:
        return message.content
    if rules is None:
        raise InvalidRequestError("this provider takes no images; send them elsewhere")
    return [
        {"type": "text", "text": part} if isinstance(part, str) else image_part(part, rules)
        for part in message.parts
    ]


def check_image_count(messages: Sequence[Message], rules: ImageRules) -> None:
    """InvalidRequestError when the conversation holds more images than one request may."""
    count = sum(len(m.images) for m in messages if m.parts)
    if count > rules.max_images:
        raise _refuse(
            rules.provider,
            f"{count} images in one request, over its limit of {rules.max_images}",
        )


def json_turns(
    messages: Sequence[Message], output: OutputFormat | None, *, json_schema: bool = True
) -> Sequence[Message]:
    """The conversation as sent for ``output``: with the JSON instruction for "json" when no
    turn says "JSON" (OpenAI answers 400 to a json_object request otherwise), and with the
    schema stated in words where the service takes only ``json_object`` (``json_schema``
    False); ``messages`` itself otherwise."""
    if output is None or (output.schema is not None and json_schema):
        return messages
    return with_json_hint(messages, output.schema)


def response_format(
    output: OutputFormat, convert: Callable[[Mapping[str, Any], bool], dict[str, Any]]
) -> dict[str, Any]:
    """The ``response_format`` object: ``json_object`` for "json", else ``json_schema`` with
    the schema ``convert``-ed for the provider."""
    if output.schema is None:
        return {"type": "json_object"}
    spec: dict[str, Any] = {"name": output.name}
    if output.description:
        spec["description"] = output.description
    spec["schema"] = convert(output.schema, output.strict)
    spec["strict"] = output.strict
    return {"type": "json_schema", "json_schema": spec}


def openai_output_schema(schema: Mapping[str, Any], strict: bool) -> dict[str, Any]:
    """``schema`` as OpenAI's structured output takes it. Non-strict: unchanged. Strict:
    every object closed (``additionalProperties: false``) with every property required
    (optional ones stay non-nullable, as the openai SDK's own helper does: flyllm validates
    answers against the caller's schema, where a null for an optional property would fail),
    ``oneOf`` read as ``anyOf``, and the keywords strict mode rejects but flyllm checks on the
    answer left out. InvalidRequestError for what strict mode cannot express (``allOf``,
    ``not``, conditionals, ``patternProperties``, an ``additionalProperties`` schema)."""
    if not strict:
        return _copy(schema)
    out: dict[str, Any] = _strict(schema, "")
    return out


def _copy(schema: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return copy.deepcopy(dict(schema))
    except RecursionError:
        raise _too_deep("the root") from None


def _too_deep(where: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels (at {where[:200]}); flatten it"
    )


def _strict(node: Any, where: str, depth: int = 0) -> Any:
    if depth > MAX_SCHEMA_DEPTH:
        raise _too_deep(where)
    depth += 1
    if isinstance(node, list):
        return [_strict(item, f"{where}[{i}]", depth) for i, item in enumerate(node)]
    if not isinstance(node, Mapping):
        return copy.deepcopy(node)
    at = where or "the root"
    for key in _STRICT_REFUSED:
        if key in node:
            raise InvalidRequestError(
                f"strict structured output cannot express {key!r} (at {at}); rewrite the "
                "schema without it or use JsonSchema(..., strict=False)"
            )
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and extra:
        raise InvalidRequestError(
            f"strict structured output needs closed objects, but {at} allows any extra "
            "property of a schema (a map); list the properties or use strict=False"
        )
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _STRICT_DROPPED:
            continue
        if key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: _strict(v, f"{where}/{key}/{k}", depth) for k, v in value.items()}
        elif key in ("items", "anyOf", "oneOf", "prefixItems"):
            out["anyOf" if key == "oneOf" else key] = _strict(value, f"{where}/{key}", depth)
        else:
            out[key] = copy.deepcopy(value)
    if _is_object(node):
        properties = out.get("properties")
        out["properties"] = properties if isinstance(properties, dict) else {}
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _is_object(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


def mistral_output_schema(schema: Mapping[str, Any], strict: bool) -> dict[str, Any]:
    """``schema`` as Mistral's structured output takes it: strict closes every object
    (``additionalProperties: false``, as the mistralai SDK's helper does; an object that
    allows a schema of extra properties is refused), ``required`` kept as it is."""
    if strict:
        _close(dict(schema), "", mutate=False)  # checks depth and maps before copying
    out = _copy(schema)
    if strict:
        _close(out, "")
    return out


def _close(node: Any, where: str, depth: int = 0, *, mutate: bool = True) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise _too_deep(where)
    depth += 1
    if isinstance(node, list):
        for i, item in enumerate(node):
            _close(item, f"{where}[{i}]", depth, mutate=mutate)
        return
    if not isinstance(node, dict):
        return
    if _is_object(node):
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            raise InvalidRequestError(
                f"strict structured output needs closed objects, but {where or 'the root'} "
                "allows extra properties of a schema; use JsonSchema(..., strict=False)"
            )
        if mutate:
            node["additionalProperties"] = False
    for key, value in node.items():
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, child in value.items():
                _close(child, f"{where}/{key}/{name}", depth, mutate=mutate)
        elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems"):
            _close(value, f"{where}/{key}", depth, mutate=mutate)


def write_output(
    body: dict[str, Any],
    output: OutputFormat | None,
    convert: Callable[[Mapping[str, Any], bool], dict[str, Any]],
    *,
    json_schema: bool = True,
) -> None:
    """Write ``response_format`` into ``body`` (the conversation went through ``json_turns``).
    ``json_schema`` False is for services that take only ``json_object``: the schema was
    asked for in words (flyllm validates the answer against it either way)."""
    if output is None:
        return
    if output.schema is not None and not json_schema:
        body["response_format"] = {"type": "json_object"}
        return
    body["response_format"] = response_format(output, convert)


_NO_OUTPUT = re.compile(
    r"response_format.{0,80}(?:not supported|unsupported|unavailable|not available)"
    r"|(?:json_schema|structured outputs?|json mode).{0,40}(?:not supported|unsupported)",
    re.IGNORECASE | re.DOTALL,
)
_NO_IMAGES = re.compile(
    r"image_url is only supported|does not support (?:images?|vision|image input)"
    r"|not a multimodal model|image inputs? (?:is|are) not supported|vision is not supported",
    re.IGNORECASE,
)


def unsupported_feature(message: str) -> str | None:
    """The capability an error message says the model or service lacks: "structured_output"
    (OpenAI's "'response_format' of type 'json_schema' is not supported with this model",
    DeepSeek's "This response_format type is unavailable now") or "images" (OpenAI's
    "image_url is only supported by certain models", vLLM's "not a multimodal model");
    None for any other error."""
    if _NO_OUTPUT.search(message):
        return "structured_output"
    if _NO_IMAGES.search(message):
        return "images"
    return None
