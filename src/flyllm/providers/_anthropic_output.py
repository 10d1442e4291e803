"""Structured output and images for :mod:`flyllm.providers.anthropic`.

Structured output, two mechanisms chosen per instance (``options={"structured_output": ...}``):

- ``"native"`` (the default): ``output_config: {format: {type: "json_schema", schema}}``, GA on
  the Messages API without a beta header (anthropic 2.17.0 ``OutputConfigParam``). The schema
  is converted by :func:`output_schema`: every object closed (``additionalProperties: false``,
  which the API requires), ``oneOf`` as ``anyOf``, type lists as ``anyOf``; the keywords the API
  does not enforce (bounds, lengths, patterns, ``minItems`` above 1...) move into the
  description, where the model reads them, and flyllm validates the answer against the
  original schema anyway. What it cannot express (recursive ``$ref``, external ``$ref``, maps,
  untyped values) is refused with InvalidRequestError.
- ``"tool"``: a forced tool whose ``input_schema`` is the user's schema unchanged, for models and
  gateways without ``output_config``. Its name is :data:`OUTPUT_TOOL_PREFIX` + the schema's name
  (user tools may not start with that prefix), its input comes back as the answer's JSON text.
  With user tools offered and a non-forcing choice, ``tool_choice`` becomes ``any`` (a user
  tool or the answer); a request that forces another tool is refused.

``"json"`` (any JSON object) always uses the forced tool with an open ``{"type": "object"}``
input: ``output_config`` needs every object closed, so it cannot ask for "any object".

Images: ``{type: "image", source: {type: "base64", media_type, data}}`` or ``source: {type:
"url", url}`` (http and https only); JPEG, PNG, GIF and WEBP; at most 5 MB of base64 per image
and 100 images per request (the API's "Too much media ... > 100").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from flyllm.errors import ConfigurationError, InvalidRequestError
from flyllm.params import OutputFormat
from flyllm.providers.base import ToolSet
from flyllm.types import Image, Message, ToolCall, sniff_media_type

__all__ = [
    "IMAGE_MEDIA_TYPES",
    "IMAGE_URL_SCHEMES",
    "MAX_IMAGES",
    "MAX_IMAGE_BASE64",
    "OUTPUT_OPTION",
    "OUTPUT_TOOL_PREFIX",
    "check_images",
    "is_output_tool",
    "output_mode",
    "output_schema",
    "split_output",
    "user_blocks",
    "wire_output",
]

OUTPUT_OPTION = "structured_output"
"""The instance option that picks the mechanism: "native" (default) or "tool"."""

OUTPUT_TOOL_PREFIX = "flyllm_output_"
"""The forced answer tool's name starts with this (then the schema's name); reserved."""

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
IMAGE_URL_SCHEMES = frozenset({"http", "https"})
MAX_IMAGE_BASE64 = 5 * 1024 * 1024
"""The API's per-image limit applies to the base64 text (about 3.75 MB of image bytes)."""
MAX_IMAGES = 100

_MODES = ("native", "tool")
_KEPT = frozenset(
    {"type", "description", "title", "enum", "const", "properties", "required", "items"}
)
_SKIPPED = frozenset(
    {"$defs", "definitions", "additionalProperties", "oneOf", "anyOf", "allOf", "$schema", "$id"}
)
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
_MAX_DEPTH = 64


# --- structured output ----------------------------------------------------------------------


def output_mode(options: Mapping[str, Any]) -> str:
    """The instance's mechanism; ConfigurationError for a value that is none of them."""
    mode = options.get(OUTPUT_OPTION, "native")
    if mode not in _MODES:
        raise ConfigurationError(
            f"anthropic option {OUTPUT_OPTION}={mode!r}: use 'native' (output_config) or "
            "'tool' (a forced tool)"
        )
    return str(mode)


def output_schema(schema: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """``schema`` as ``output_config.format.schema`` takes it (see the module doc). The API
    always constrains decoding, so ``strict`` changes nothing here. InvalidRequestError names
    the part it cannot express."""
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    _check_refs(schema, defs)
    out = _convert(schema, "schema", 0)
    for key in ("$defs", "definitions"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            out[key] = {n: _convert(v, f"{key}.{n}", 1) for n, v in found.items()}
    return out


def _refuse(path: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"anthropic structured output cannot express {path}: {why}; use an instance with "
        f"options={{'{OUTPUT_OPTION}': 'tool'}} (a forced tool takes any JSON Schema)"
    )


def _check_refs(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> None:
    """InvalidRequestError for a $ref outside the schema's definitions, or one that leads
    back to itself (the API takes no recursive schema)."""

    def refs(node: Any, depth: int) -> set[str]:
        if depth > _MAX_DEPTH:
            raise _refuse("the schema", "it is nested too deeply")
        found: set[str] = set()
        if isinstance(node, Mapping):
            ref = node.get("$ref")
            if ref is not None:
                if ref not in defs:
                    raise _refuse(f"$ref {ref!r}", "only #/$defs/... and #/definitions/...")
                found.add(ref)
            for key, value in node.items():
                if key not in ("$defs", "definitions"):
                    found |= refs(value, depth + 1)
        elif isinstance(node, list):
            for item in node:
                found |= refs(item, depth + 1)
        return found

    edges = {name: refs(value, 0) for name, value in defs.items()}
    refs(schema, 0)
    for start in edges:
        seen, todo = set(), list(edges[start])
        while todo:
            ref = todo.pop()
            if ref == start:
                raise _refuse(f"$ref {start!r}", "it refers to itself (a recursive schema)")
            if ref not in seen:
                seen.add(ref)
                todo.extend(edges.get(ref, ()))


def _convert(node: Any, path: str, depth: int) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise _refuse(path, "a schema must be an object")
    if depth > _MAX_DEPTH:
        raise _refuse(path, "it is nested too deeply")
    if "$ref" in node:
        out: dict[str, Any] = {"$ref": node["$ref"]}
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        return out
    kind = node.get("type")
    if isinstance(kind, list):
        typed = [{**node, "type": k} for k in kind]
        rest = {k: v for k, v in node.items() if k in ("description", "title")}
        return {**rest, "anyOf": [_convert(b, path, depth + 1) for b in typed]}
    out = {}
    described: list[str] = []
    for key, value in node.items():
        if key in _SKIPPED:
            continue
        if (
            (key == "format" and kind == "string" and value in _FORMATS)
            or (key == "minItems" and value in (0, 1))
            or key in _KEPT
        ):
            out[key] = value
        else:
            described.append(f"{key}={json.dumps(value, ensure_ascii=False)}")
    for key in ("anyOf", "oneOf", "allOf"):
        options = node.get(key)
        if isinstance(options, list):
            target = "allOf" if key == "allOf" else "anyOf"
            out[target] = [_convert(b, f"{path}.{key}", depth + 1) for b in options]
    if not ({"type", "anyOf", "allOf", "enum", "const"} & out.keys()):
        raise _refuse(path, "a value without a type (give it a type, anyOf, enum or const)")
    if kind == "object":
        _close(node, out, path, depth)
    elif kind == "array" and "items" in node:
        out["items"] = _convert(node["items"], f"{path}.items", depth + 1)
    if described:
        note = "Constraints: " + ", ".join(described)
        out["description"] = f"{out['description']}\n\n{note}" if "description" in out else note
    return out


def _close(node: Mapping[str, Any], out: dict[str, Any], path: str, depth: int) -> None:
    """An object's properties converted and the object closed (a closed object's answers
    still follow the open original)."""
    extra = node.get("additionalProperties")
    properties = node.get("properties")
    if isinstance(extra, Mapping) or (extra is True and not properties):
        raise _refuse(path, "an object of arbitrary keys (a map)")
    if properties is not None and not isinstance(properties, Mapping):
        raise _refuse(f"{path}.properties", "it must be an object")
    out["properties"] = {
        name: _convert(sub, f"{path}.properties.{name}", depth + 1)
        for name, sub in (properties or {}).items()
    }
    out["additionalProperties"] = False


def output_tool_name(fmt: OutputFormat) -> str:
    """The forced answer tool's name (at most 64 characters)."""
    return (OUTPUT_TOOL_PREFIX + fmt.name)[:64]


def is_output_tool(name: str) -> bool:
    """True for the name of flyllm's forced answer tool."""
    return name.startswith(OUTPUT_TOOL_PREFIX)


def wire_output(
    body: dict[str, Any], fmt: OutputFormat, tools: ToolSet | None, mode: str, thinking: Any
) -> None:
    """Adds the output format to ``body`` (after the user's tools, when any, are in it);
    ``thinking`` is the request's extended-thinking parameter, if any."""
    if mode == "native" and fmt.schema is not None:
        schema = output_schema(fmt.schema, fmt.strict)
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        return
    if isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive"):
        # The API answers 400 "Thinking may not be enabled when tool_choice forces tool use."
        what = "response_format='json'" if fmt.schema is None else "this instance's tool mode"
        raise InvalidRequestError(
            f"{what} forces flyllm's answer tool, which anthropic refuses with extended "
            "thinking on: switch thinking off, or use a JsonSchema on a native instance"
        )
    if tools is not None and tools.choice not in ("auto", "required", "none"):
        raise InvalidRequestError(
            f"tool_choice {tools.choice!r} forces a tool, but response_format needs the "
            "answer tool forced on this anthropic instance: ask for one or the other"
        )
    name = output_tool_name(fmt)
    description = fmt.description or "Give your final answer by calling this tool."
    schema = dict(fmt.schema) if fmt.schema is not None else {"type": "object"}
    entry = {"name": name, "description": description, "input_schema": schema}
    body["tools"] = [*body.get("tools", []), entry]
    # The answer is one call: alone, the answer tool is forced and called once.
    choice: dict[str, Any] = {"type": "tool", "name": name, "disable_parallel_tool_use": True}
    if tools is not None and tools.choice in ("auto", "required"):
        choice = {"type": "any"}
        if tools.parallel is False:
            choice["disable_parallel_tool_use"] = True
    body["tool_choice"] = choice


def check_tool_names(tools: ToolSet) -> None:
    """InvalidRequestError for a user tool whose name would be read as the answer tool."""
    for tool in tools.tools:
        if is_output_tool(tool.name):
            raise InvalidRequestError(
                f"tool {tool.name!r}: names starting with {OUTPUT_TOOL_PREFIX!r} are reserved "
                "by flyllm on anthropic (its structured output tool); rename the tool"
            )


def split_output(calls: Sequence[ToolCall]) -> tuple[str | None, tuple[ToolCall, ...]]:
    """(the answer tool's input as JSON text, or None; the user's calls). A second call of
    the answer tool (a model calling it in parallel) is dropped: the first is the answer, and
    flyllm's own tool is never shown as a call."""
    text: str | None = None
    rest = []
    for call in calls:
        if not is_output_tool(call.name):
            rest.append(call)
        elif text is None:
            text = call.raw_arguments or json.dumps(call.arguments, ensure_ascii=False)
    return text, tuple(rest)


# --- images ---------------------------------------------------------------------------------


def check_images(messages: Sequence[Message]) -> None:
    """InvalidRequestError when the conversation has more images than the API takes."""
    total = sum(len(m.images) for m in messages if m.parts)
    if total > MAX_IMAGES:
        raise InvalidRequestError(
            f"anthropic takes at most {MAX_IMAGES} images per request; this one has {total}"
        )


def user_blocks(m: Message) -> list[dict[str, Any]]:
    """A user turn's parts as text and image blocks, in order (blank text left out: the API
    rejects it)."""
    blocks: list[dict[str, Any]] = []
    for part in m.parts:
        if isinstance(part, Image):
            blocks.append({"type": "image", "source": _source(part)})
        elif part.strip():
            blocks.append({"type": "text", "text": part})
    return blocks


def _source(image: Image) -> dict[str, Any]:
    if image.url is not None:
        scheme = urlsplit(image.url).scheme.lower()
        if scheme not in IMAGE_URL_SCHEMES:
            raise InvalidRequestError(
                f"anthropic takes image URLs over http or https only, not {scheme or 'none'!r}: "
                "pass the image's bytes (Image.from_bytes / from_path)"
            )
        return {"type": "url", "url": image.url}
    data = image.data or b""
    media_type = (image.media_type or sniff_media_type(data) or "").lower()
    if media_type not in IMAGE_MEDIA_TYPES:
        raise InvalidRequestError(
            f"anthropic takes JPEG, PNG, GIF and WEBP images, not {media_type or 'unknown'!r}: "
            "convert the image first"
        )
    encoded_size = 4 * -(-len(data) // 3)  # base64's length, known before encoding
    if encoded_size > MAX_IMAGE_BASE64:
        raise InvalidRequestError(
            f"an image of {len(data):,} bytes is {encoded_size:,} bytes as base64, over "
            f"anthropic's 5 MB ({MAX_IMAGE_BASE64:,} bytes) per image: resize or compress it"
        )
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "base64", "media_type": media_type, "data": encoded}
