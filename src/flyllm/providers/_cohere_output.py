"""Cohere v2's structured output and image parts (see docs/providers/structured-output.md and
docs/providers/images.md).

- ``response_format: {"type": "json_object"}`` asks for any JSON object; with ``json_schema``
  (the SDK's ``JsonObjectResponseFormatV2`` field) the answer follows that schema. Cohere's
  JSON Schema mode takes a subset: the root an object, every object at least one ``required``
  property; no ``allOf``/``oneOf``/``not``, numeric ranges, array or string lengths,
  ``uniqueItems``, formats other than date-time, uuid, date and time, or patterns with ``^``,
  ``$``, ``?=`` or ``?!``. ``output_schema`` rewrites a schema into that subset where the
  answer stays valid for the original (flyllm validates every answer against the original).
- Images are ``{"type": "image_url", "image_url": {"url", "detail"?}}`` blocks of a user
  turn: a base64 data URI or an http(s) URL; PNG, JPEG, WEBP and non-animated GIF; at most 20
  images and 20 MB of image data a request.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.params import OutputFormat
from flyllm.providers.chat_output import image_detail
from flyllm.types import Image, Message, sniff_media_type

__all__ = [
    "IMAGE_FORMATS",
    "MAX_IMAGES",
    "MAX_IMAGE_BYTES",
    "check_images",
    "output_schema",
    "response_format",
    "unsupported_feature",
    "user_content",
]

MAX_IMAGES = 20
"""Images a request may carry (Cohere's image-inputs limits)."""
MAX_IMAGE_BYTES = 20_000_000
"""Image data a request may carry, all images together (Cohere: 20 MB)."""
IMAGE_FORMATS = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
"""The formats Cohere documents (a GIF only when not animated)."""
URL_SCHEMES = frozenset({"http", "https"})

_DROPPED = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems",
            "maxItems", "minLength", "maxLength", "uniqueItems")  # fmt: skip
_FORMATS = frozenset({"date-time", "uuid", "date", "time"})
_PATTERN_BANNED = re.compile(r"\^|\$|\?=|\?!")
_CHILD_MAPS = ("properties", "$defs", "definitions")
_MAX_DEPTH = 64
_NO_IMAGES = re.compile(
    r"(?:does not|doesn't|cannot) (?:support|accept|take) (?:image|vision)"
    r"|images?(?: inputs?)? (?:is|are) not supported",
    re.IGNORECASE,
)
_NO_OUTPUT = re.compile(
    r"(?:response_format|json[_ ]schema|json[_ ]mode|structured outputs?)[^.]*not supported"
    r"|does not support (?:response_format|json|structured)",
    re.IGNORECASE,
)


def output_schema(schema: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """``schema`` rewritten for Cohere's JSON Schema mode (which always enforces it, so
    ``strict`` changes nothing): unsupported constraints move into the ``description`` (the
    model still reads them; flyllm checks them on the answer), ``oneOf`` becomes ``anyOf``, a
    one-part ``allOf`` is merged, anchored patterns lose their anchors, and an object with no
    required property gets its first property required. InvalidRequestError, saying where
    and what to do, for what cannot be rewritten (``not``, a many-part ``allOf``, an object
    without properties)."""
    del strict
    converted = _node(schema, "$", 0)
    assert isinstance(converted, dict)
    return converted


def _refuse(path: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"cohere's JSON Schema mode cannot take this schema: at {path[:200]}, {why}; "
        "simplify the schema, use response_format='json', or route to another provider"
    )


def _node(node: Any, path: str, depth: int) -> Any:
    """One subschema rewritten (values that are not objects, such as ``true``, unchanged)."""
    if not isinstance(node, Mapping):
        return node
    if depth > _MAX_DEPTH:
        raise _refuse(path, f"the schema is nested more than {_MAX_DEPTH} levels deep")
    out = dict(node)
    if "not" in out:
        raise _refuse(path, "'not' is not supported")
    if "allOf" in out:
        parts = out.pop("allOf")
        if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], Mapping):
            raise _refuse(path, "'allOf' is not supported (merge its parts into one schema)")
        out = {**parts[0], **out}
    if "oneOf" in out:
        out["anyOf"] = out.pop("oneOf")
    _move_constraints(out)
    for key in _CHILD_MAPS:
        children = out.get(key)
        if isinstance(children, Mapping):
            out[key] = {k: _node(v, f"{path}.{key}.{k}", depth + 1) for k, v in children.items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), Mapping):
            out[key] = _node(out[key], f"{path}.{key}", depth + 1)
    if isinstance(out.get("anyOf"), list):
        out["anyOf"] = [
            _node(v, f"{path}.anyOf[{n}]", depth + 1) for n, v in enumerate(out["anyOf"])
        ]
    if _is_object(out):
        _require_one(out, path)
    return out


def _is_object(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return (
        kind == "object"
        or (isinstance(kind, list) and "object" in kind)
        or (kind is None and "properties" in node)
    )


def _require_one(node: dict[str, Any], path: str) -> None:
    """Cohere wants at least one required property in every object: the first property is
    made required when none is (an answer that has it is valid for the original too)."""
    properties = node.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        raise _refuse(
            path,
            "an object without properties (a free-form map) cannot be described: cohere "
            "needs at least one required property in every object",
        )
    required = node.get("required")
    if not isinstance(required, list) or not any(r in properties for r in required):
        node["required"] = [*(required or []), next(iter(properties))]


def _move_constraints(node: dict[str, Any]) -> None:
    """Take out the keywords Cohere rejects and say them in the description instead."""
    moved = [f"{key} {json.dumps(node.pop(key))}" for key in _DROPPED if key in node]
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt not in _FORMATS:
        moved.append(f"format {node.pop('format')}")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        core = pattern[1:] if pattern.startswith("^") else pattern
        core = core[:-1] if core.endswith("$") and not core.endswith("\\$") else core
        if _PATTERN_BANNED.search(core):
            moved.append(f"pattern {json.dumps(node.pop('pattern'))}")
        else:
            node["pattern"] = core
    if moved:
        said = node.get("description")
        note = "Constraints: " + ", ".join(moved) + "."
        node["description"] = f"{said} {note}" if isinstance(said, str) and said else note


def unsupported_feature(message: str) -> str | None:
    """The capability a 4xx message says the model lacks ("images", "structured_output"),
    None when it says neither. A refusal of ``response_format`` together with tools names no
    capability: the model may do both, only not at once."""
    if "with tools" in message.lower():
        return None
    if _NO_IMAGES.search(message):
        return "images"
    return "structured_output" if _NO_OUTPUT.search(message) else None


def response_format(output: OutputFormat) -> dict[str, Any]:
    """The ``response_format`` object: ``json_object``, with ``json_schema`` when the
    request gave a schema."""
    if output.schema is None:
        return {"type": "json_object"}
    return {"type": "json_object", "json_schema": output_schema(output.schema, output.strict)}


def user_content(message: Message) -> str | list[dict[str, Any]]:
    """A user turn's content: its text, or (with images) text and ``image_url`` blocks in
    the order given."""
    if not message.images:
        return message.content
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
        else:
            image_url: dict[str, Any] = {"url": _url(part)}
            if part.detail:
                image_url["detail"] = image_detail(part.detail, original=False)
            blocks.append({"type": "image_url", "image_url": image_url})
    return blocks


def check_images(messages: Sequence[Message]) -> None:
    """InvalidRequestError before sending when the conversation's images break Cohere's
    limits (count, total size, format, URL scheme)."""
    images = [image for m in messages for image in m.images]
    if len(images) > MAX_IMAGES:
        raise InvalidRequestError(
            f"cohere takes at most {MAX_IMAGES} images a request, this one has {len(images)}; "
            "send fewer images or split the request"
        )
    total = sum(len(i.data) for i in images if i.data is not None)
    if total > MAX_IMAGE_BYTES:
        raise InvalidRequestError(
            f"cohere takes at most 20 MB of image data a request, these images are {total:,} "
            "bytes; resize or compress them, or send fewer"
        )
    for image in images:
        _check_image(image)


def _check_image(image: Image) -> None:
    if image.data is None:
        scheme = (image.url or "").partition(":")[0].lower()
        if scheme not in URL_SCHEMES:
            raise InvalidRequestError(
                f"cohere takes images by http(s) URL or as bytes, not a {scheme}: URL; "
                "download it and pass Image.from_bytes(...)"
            )
        return
    media_type = image.media_type or sniff_media_type(image.data)
    if media_type not in IMAGE_FORMATS:
        raise InvalidRequestError(
            f"cohere takes PNG, JPEG, WEBP and non-animated GIF images, not {media_type}; "
            "convert the image first"
        )
    if media_type == "image/gif" and b"NETSCAPE2.0" in image.data:
        raise InvalidRequestError(
            "cohere takes only non-animated GIF images and this one is animated; "
            "send one frame as PNG instead"
        )


def _url(image: Image) -> str:
    if image.data is None:
        return image.url or ""
    media_type = image.media_type or sniff_media_type(image.data)
    return f"data:{media_type};base64,{base64.b64encode(image.data).decode('ascii')}"
