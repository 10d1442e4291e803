"""Ollama's structured output and images (see docs/providers/structured-output.md and
docs/providers/images.md).

- ``format: "json"`` asks for any JSON; ``format: <JSON Schema object>`` for JSON following
  it. The server compiles the schema into a grammar (llama.cpp's JSON-Schema-to-grammar):
  it resolves only local ``$ref`` (``#/...``), takes a ``pattern`` only when anchored with
  ``^...$``, and ignores keywords it does not know. ``output_schema`` keeps the schema and
  moves the patterns it would reject into the description; flyllm validates every answer
  against the original schema.
- Images are ``message.images``: base64 strings without a data: prefix, PNG or JPEG (the
  formats the server decodes); Ollama takes no URLs, so flyllm downloads them first.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.params import OutputFormat
from flyllm.types import Image, Message, sniff_media_type

__all__ = [
    "IMAGE_FORMATS",
    "check_images",
    "image_data",
    "output_format",
    "output_schema",
    "unsupported_images",
]

IMAGE_FORMATS = frozenset({"image/png", "image/jpeg"})
"""The image formats Ollama's server decodes."""

_MAX_DEPTH = 64
_LOOKAROUND = re.compile(r"\(\?[=!<]")
_NO_IMAGES = re.compile(
    r"(?:does not|doesn't) support (?:image|vision)|not a (?:multi-?modal|vision) model",
    re.IGNORECASE,
)
_VALUES = frozenset({"enum", "const", "default", "examples"})
"""Keywords whose values are data, not schemas: copied as they are."""


def output_schema(schema: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """``schema`` as Ollama's ``format`` (always enforced by the grammar, so ``strict``
    changes nothing): a pattern without ``^...$`` anchors, or with lookarounds, moves into
    the description. InvalidRequestError for a ``$ref`` outside the schema (the server
    cannot fetch it) or a schema nested too deeply."""
    del strict
    converted = _node(schema, "$", 0)
    assert isinstance(converted, dict)
    return converted


def _node(node: Any, path: str, depth: int) -> Any:
    if isinstance(node, list):
        return [_node(v, f"{path}[{n}]", depth + 1) for n, v in enumerate(node)]
    if not isinstance(node, Mapping):
        return node
    if depth > _MAX_DEPTH:
        raise _refuse(path, f"the schema is nested more than {_MAX_DEPTH} levels deep")
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise _refuse(path, f"$ref {ref!r} points outside the schema (only '#/...' resolves)")
    out = {k: v if k in _VALUES else _node(v, f"{path}.{k}", depth + 1) for k, v in node.items()}
    pattern = out.get("pattern")
    if isinstance(pattern, str) and (
        not (pattern.startswith("^") and pattern.endswith("$")) or _LOOKAROUND.search(pattern)
    ):
        note = f"Constraints: pattern {json.dumps(out.pop('pattern'))}."
        said = out.get("description")
        out["description"] = f"{said} {note}" if isinstance(said, str) and said else note
    return out


def _refuse(path: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"ollama cannot take this schema as its format: at {path}, {why}; inline the "
        "definitions or use response_format='json'"
    )


def unsupported_images(message: str) -> bool:
    """True when an error says the model takes no images ("this model does not support image
    input", "... does not support images")."""
    return _NO_IMAGES.search(message) is not None


def output_format(output: OutputFormat) -> str | dict[str, Any]:
    """The ``format`` value: "json", or the schema."""
    return "json" if output.schema is None else output_schema(output.schema, output.strict)


def check_images(messages: Sequence[Message]) -> None:
    """InvalidRequestError before sending for an image Ollama cannot take: a URL (the engine
    downloads those first; one that reaches the build is refused) or a format other than PNG
    and JPEG."""
    for image in (image for m in messages for image in m.images):
        if image.data is None:
            raise InvalidRequestError(
                "ollama takes images only as bytes, not by URL; pass Image.from_bytes(...) or "
                "Image.from_path(...) (flyllm downloads http(s) URLs before sending)"
            )
        media_type = image.media_type or sniff_media_type(image.data)
        if media_type not in IMAGE_FORMATS:
            raise InvalidRequestError(
                f"ollama takes PNG and JPEG images, not {media_type}; convert the image first"
            )


def image_data(images: Sequence[Image]) -> list[str]:
    """The ``images`` list: each image's bytes in base64 (no data: prefix)."""
    return [base64.b64encode(i.data or b"").decode("ascii") for i in images]
