"""Gemini's structured output and image parts in the emulator, checked as the API checks them.

- ``generationConfig.responseMimeType`` (or ``response_mime_type``) is one of the mime types
  Gemini allows; ``responseJsonSchema`` (JSON Schema) and ``responseSchema`` (the OpenAPI
  subset, upper-case types) exclude each other and need a JSON (or enum) mime type;
  ``responseSchema`` rejects ``additionalProperties``, ``$ref`` and ``$defs`` as unknown
  fields, and a ``$ref`` in ``responseJsonSchema`` may have only ``$`` keywords beside it.
- ``inlineData {mimeType, data}`` parts carry base64 bytes (standard or URL-safe, as
  google-genai sends them); image types other than PNG, JPEG, WEBP, HEIC and HEIF are refused,
  as are requests whose inline data exceed the size limit. ``fileData {mimeType, fileUri}``
  parts take ``gs://`` and https URIs.
Camel or snake case, as google-genai may send either.

A model asked in its system instruction (not in JSON mode) for "only a JSON object" or "a
JSON value that follows this JSON Schema: {...}" answers as JSON mode would
(``instructed_output``): flyllm asks so beside tools on models before Gemini 3.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flyllm.emulator.dialects._google_tools import lower_types

__all__ = [
    "IMAGE_TYPES",
    "MAX_INLINE",
    "MIME_TYPES",
    "Output",
    "instructed_output",
    "read_images",
    "read_output",
]

MIME_TYPES = (
    "text/plain",
    "application/json",
    "application/xml",
    "application/yaml",
    "text/x.enum",
)
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
MAX_INLINE = 100 * 1000 * 1000
"""Inline data beyond this (decoded bytes) is refused, as Gemini's request size limit does."""
_OPENAPI_UNKNOWN = ("additionalProperties", "$ref", "$defs")
_MAX_DEPTH = 64


def _pick(data: Mapping[str, Any], camel: str, snake: str) -> Any:
    return data[camel] if camel in data else data.get(snake)


@dataclass(slots=True)
class Output:
    """What a request asks of the answer's form: JSON or not, and the schema to follow."""

    json: bool = False
    schema: Mapping[str, Any] | None = None


def read_output(config: Mapping[str, Any]) -> Output | str:
    """The requested output form, or the 400 message of the first check that fails."""
    where = "* GenerateContentRequest.generation_config"
    mime = _pick(config, "responseMimeType", "response_mime_type")
    if mime is not None and mime not in MIME_TYPES:
        allowed = ", ".join(f"`{m}`" for m in MIME_TYPES)
        return f"{where}.response_mime_type: allowed mimetypes are {allowed}.\n"
    json_schema = _pick(config, "responseJsonSchema", "response_json_schema")
    openapi = _pick(config, "responseSchema", "response_schema")
    if json_schema is not None and openapi is not None:
        return f"{where}: response_schema and response_json_schema are mutually exclusive.\n"
    schema = json_schema if json_schema is not None else openapi
    if schema is None:
        return Output(mime == "application/json")
    if mime not in ("application/json", "text/x.enum"):
        return (
            f"{where}.response_mime_type: a response schema needs response_mime_type "
            "`application/json` or `text/x.enum`.\n"
        )
    if not isinstance(schema, dict):
        return "Invalid value at 'generation_config.response_schema', expected a Schema object."
    if json_schema is None:
        problem = _unknown_field(schema, "generation_config.response_schema", 0)
        if problem:
            return problem
        schema = lower_types(schema, 0)
    else:
        problem = _ref_siblings(schema, 0)
        if problem:
            return f"{where}.response_json_schema: {problem}\n"
    return Output(mime == "application/json", schema if mime == "application/json" else None)


def instructed_output(system: str) -> Output | None:
    """The JSON a system instruction asks for in words (see the module doc); None when it
    asks for none."""
    if "only a JSON object" in system:
        return Output(True, None)
    _, found, rest = system.partition("follows this JSON Schema: ")
    if not found:
        return None
    try:
        schema, _ = json.JSONDecoder().raw_decode(rest)
    except ValueError:
        return None
    return Output(True, schema if isinstance(schema, dict) else None)


def _unknown_field(node: Any, where: str, depth: int) -> str | None:
    """The proto parser's 400 for a JSON Schema keyword the OpenAPI Schema has no field for."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(node, list):
        for i, item in enumerate(node):
            found = _unknown_field(item, f"{where}[{i}]", depth + 1)
            if found:
                return found
        return None
    if not isinstance(node, dict):
        return None
    for key in _OPENAPI_UNKNOWN:
        if key in node:
            return (
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                "Cannot find field."
            )
    for key, value in node.items():
        if key == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                found = _unknown_field(sub, f"{where}.properties[{name}].value", depth + 1)
                if found:
                    return found
        elif key in ("items", "anyOf", "any_of"):
            found = _unknown_field(value, f"{where}.{key}", depth + 1)
            if found:
                return found
    return None


def _ref_siblings(node: Any, depth: int) -> str | None:
    """Google's rule: a sub-schema with ``$ref`` has no other keyword but ``$`` ones."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(node, list):
        return next((p for p in (_ref_siblings(n, depth + 1) for n in node) if p), None)
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        extra = sorted(k for k in node if not str(k).startswith("$"))
        if extra:
            return (
                f"If $ref is set, no other properties except those starting with $ may be set "
                f"(found {', '.join(extra)})."
            )
    for key, value in node.items():
        if key in ("properties", "$defs") and isinstance(value, dict):
            found = _ref_siblings(list(value.values()), depth + 1)
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "prefixItems"):
            found = _ref_siblings(value, depth + 1)
        else:
            continue
        if found:
            return found
    return None


def read_images(contents: list[Any]) -> tuple[str, ...] | str:
    """The media types of the image parts in ``contents``, in order, or the 400 message of
    the first part Gemini would refuse."""
    found: list[str] = []
    total = 0
    for i, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        for j, part in enumerate(parts if isinstance(parts, list) else []):
            if not isinstance(part, dict):
                continue
            where = f"contents[{i}].parts[{j}]"
            inline = _pick(part, "inlineData", "inline_data")
            file = _pick(part, "fileData", "file_data")
            if inline is not None:
                checked = _inline(inline, where)
                if isinstance(checked, str):
                    return checked
                mime, size = checked
                total += size
                if total > MAX_INLINE:
                    return f"Request payload size exceeds the limit: {MAX_INLINE} bytes."
            elif file is not None:
                mime = _file(file, where)
                if mime.startswith("*"):
                    return mime[1:]
            else:
                continue
            if mime.startswith("image/"):
                found.append(mime)
    return tuple(found)


def _inline(blob: Any, where: str) -> tuple[str, int] | str:
    if not isinstance(blob, dict):
        return f"Invalid value at '{where}.inline_data', expected a Blob object."
    mime = _pick(blob, "mimeType", "mime_type")
    data = blob.get("data")
    if not isinstance(mime, str) or not mime:
        return f"* GenerateContentRequest.{where}.inline_data.mime_type: mime_type is required.\n"
    if not isinstance(data, str):
        return f"* GenerateContentRequest.{where}.inline_data.data: data is required.\n"
    if len(data) * 3 // 4 > MAX_INLINE:
        return f"Request payload size exceeds the limit: {MAX_INLINE} bytes."
    try:
        raw = base64.b64decode(data.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed."
    if mime.startswith("image/") and mime not in IMAGE_TYPES:
        return f"Unsupported MIME type: {mime}"
    return mime, len(raw)


def _file(data: Any, where: str) -> str:
    """The part's mime type, or "*" and the 400 message."""
    if not isinstance(data, dict):
        return f"*Invalid value at '{where}.file_data', expected a FileData object."
    uri = _pick(data, "fileUri", "file_uri")
    mime = _pick(data, "mimeType", "mime_type")
    if not isinstance(uri, str) or not uri.startswith(("gs://", "https://")):
        return f"*Invalid or unsupported file uri: {str(uri)[:200]}"
    if not isinstance(mime, str) or not mime:
        return f"** GenerateContentRequest.{where}.file_data.mime_type: mime_type is required.\n"
    if mime.startswith("image/") and mime not in IMAGE_TYPES:
        return f"*Unsupported MIME type: {mime}"
    return mime
