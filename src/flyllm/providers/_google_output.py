"""Gemini's structured output: a request's ``response_format`` as ``generationConfig``
(``responseMimeType: "application/json"`` and, with a schema, ``responseJsonSchema``).

``responseJsonSchema`` takes JSON Schema itself (the older ``responseSchema``, an OpenAPI
subset, rejects ``additionalProperties``, ``$ref`` and ``$defs``, so flyllm never sends it).
Google documents the keywords it applies (google-genai 3.6 ``GenerateContentConfig``
``response_json_schema``; ai.google.dev's GenerationConfig reference): ``$id``, ``$defs``,
``$ref``, ``$anchor``, ``type``, ``format``, ``title``, ``description``, ``enum`` (strings and
numbers), ``items``, ``prefixItems``, ``minItems``, ``maxItems``, ``minimum``, ``maximum``,
``anyOf``, ``oneOf`` (read as ``anyOf``), ``properties``, ``additionalProperties``,
``required`` and ``propertyOrdering``; a ``$ref`` may have only ``$`` keywords beside it, and a
cycle of references may only pass through properties that are not required.

:func:`output_schema` rewrites a user's schema into that subset: other keywords (``pattern``,
``minLength``, ``const``...) only narrow what is valid, so leaving them out widens what the
model may write but never what flyllm accepts (the engine validates every answer against the
original schema); ``const`` becomes a one-value ``enum``, ``definitions`` become ``$defs``, a
one-part ``allOf`` is merged. What cannot be rewritten is refused with InvalidRequestError:
``allOf`` with several parts, a ``$ref`` outside the schema, a reference cycle through required
properties, a schema nested too deeply. Gemini has no strict switch: a schema is always
enforced while generating, so ``strict`` changes nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.params import OutputFormat
from flyllm.providers._common import dumps
from flyllm.providers._google_tools import needs_signatures

__all__ = [
    "JSON_MIME_TYPE",
    "MAX_SCHEMA_DEPTH",
    "SUPPORTED_KEYWORDS",
    "json_with_tools",
    "output_config",
    "output_instruction",
    "output_schema",
]

JSON_MIME_TYPE = "application/json"
"""The ``responseMimeType`` that asks Gemini for JSON."""

SUPPORTED_KEYWORDS = frozenset(
    {
        "$id",
        "$defs",
        "$ref",
        "$anchor",
        "type",
        "format",
        "title",
        "description",
        "enum",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "anyOf",
        "oneOf",
        "properties",
        "additionalProperties",
        "required",
        "propertyOrdering",
    }
)
"""The JSON Schema keywords Google documents for ``responseJsonSchema``."""

MAX_SCHEMA_DEPTH = 64
"""Schemas nested deeper than this are refused (no provider takes them, and the walk is
bounded)."""

_MAPS = ("properties", "$defs")  # keywords whose value maps names to schemas
_LISTS = ("anyOf", "oneOf", "prefixItems")  # keywords whose value is a list of schemas


def output_config(output: OutputFormat) -> dict[str, Any]:
    """The ``generationConfig`` fields for ``output``: the JSON mime type alone for "json"
    (any JSON object), with the converted schema for a schema (its description, when the
    schema has none, set on the root so the model reads it)."""
    config: dict[str, Any] = {"responseMimeType": JSON_MIME_TYPE}
    if output.schema is not None:
        schema = output_schema(output.schema, output.strict)
        if output.description and "description" not in schema:
            schema["description"] = output.description
        config["responseJsonSchema"] = schema
    return config


def json_with_tools(model: str) -> bool:
    """True when ``model`` takes JSON mode beside function declarations (Gemini 3 and later;
    Gemini 1.x and 2.x answer 400 "Function calling with a response mime type:
    'application/json' is unsupported")."""
    return needs_signatures(model)


def output_instruction(output: OutputFormat) -> str:
    """The words that ask for the JSON when JSON mode cannot be sent (beside tools on older
    models): the answer is validated all the same."""
    what = "a JSON object"
    if output.schema is not None:
        schema = dumps(output.schema).decode()
        what = f"a JSON value that follows this JSON Schema: {schema}"
    return (
        "When you answer in text rather than with a function call, reply with only "
        f"{what} (no prose, no code fence)."
    )


def output_schema(schema: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """``schema`` rewritten for ``responseJsonSchema`` (see the module doc; ``strict`` is
    accepted for the common signature and changes nothing: Gemini always enforces a schema).
    InvalidRequestError saying why when it cannot be."""
    if not isinstance(schema, Mapping):
        raise _refused("the schema must be a JSON object")
    defs = schema.get("$defs")
    legacy = schema.get("definitions")
    merged: dict[str, Any] = {}
    for source in (legacy, defs):  # "definitions" (draft 7) join "$defs"
        if isinstance(source, Mapping):
            merged.update(source)
    root = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    out = _convert(root, "#", 0)
    if merged:
        out["$defs"] = {
            str(name): _convert(sub, f"#/$defs/{name}", 1) for name, sub in merged.items()
        }
    _check_cycles(out)
    return out


def _refused(why: str, where: str = "") -> InvalidRequestError:
    at = f" at {where}" if where and where != "#" else ""
    return InvalidRequestError(
        f"google: the response_format schema cannot be sent to Gemini{at}: {why}"
    )


def _convert(node: Any, where: str, depth: int) -> dict[str, Any]:
    """One sub-schema in Gemini's subset (a boolean schema becomes {} or an impossible enum)."""
    if depth > MAX_SCHEMA_DEPTH:
        raise _refused(f"it is nested more than {MAX_SCHEMA_DEPTH} levels deep", where)
    if node is True:
        return {}
    if not isinstance(node, Mapping):
        raise _refused(f"a schema must be an object, got {type(node).__name__}", where)
    node = _merge_all_of(node, where)
    ref = node.get("$ref")
    if ref is not None:
        return _reference(node, ref, where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _MAPS and key != "$defs":
            if not isinstance(value, Mapping):
                raise _refused(f"{key} must be an object", where)
            out[key] = {
                str(k): _convert(v, f"{where}/{key}/{k}", depth + 1) for k, v in value.items()
            }
        elif key in _LISTS:
            if not isinstance(value, list):
                raise _refused(f"{key} must be a list", where)
            out[key] = [_convert(v, f"{where}/{key}/{i}", depth + 1) for i, v in enumerate(value)]
        elif key in ("items", "additionalProperties") and not isinstance(value, bool):
            out[key] = _convert(value, f"{where}/{key}", depth + 1)
        elif key == "enum":
            if _plain_enum(value):
                out[key] = list(value)
        elif key == "const":
            if _plain_enum([value]) and "enum" not in node:
                out["enum"] = [value]
        elif key in SUPPORTED_KEYWORDS and key != "$defs":
            out[key] = value
    return out


def _merge_all_of(node: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """``node`` with a one-part ``allOf`` merged into it (pydantic v1 wrote ``allOf: [{$ref}]``
    to describe a reference); InvalidRequestError for several parts."""
    parts = node.get("allOf")
    if parts is None:
        return node
    if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], Mapping):
        raise _refused(
            "Gemini's responseJsonSchema does not take allOf with several parts; "
            "merge them into one schema",
            where,
        )
    rest = {k: v for k, v in node.items() if k != "allOf"}
    return {**rest, **parts[0]}


def _reference(node: Mapping[str, Any], ref: Any, where: str) -> dict[str, Any]:
    """A ``$ref`` with only its ``$`` siblings (Gemini's rule), pointed into ``$defs``."""
    if not isinstance(ref, str):
        raise _refused("$ref must be a string", where)
    if ref.startswith("#/definitions/"):
        ref = "#/$defs/" + ref[len("#/definitions/") :]
    if ref != "#" and not ref.startswith("#/$defs/"):
        raise _refused(
            f"$ref {ref[:80]!r} points outside the schema; Gemini follows only '#' and "
            "'#/$defs/...'",
            where,
        )
    out = {k: v for k, v in node.items() if k.startswith("$") and k not in ("$defs", "$ref")}
    out["$ref"] = ref
    return out


def _plain_enum(values: Any) -> bool:
    """True for a non-empty list of strings and numbers (what Gemini's ``enum`` takes)."""
    return (
        isinstance(values, list)
        and bool(values)
        and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values)
    )


def _check_cycles(schema: dict[str, Any]) -> None:
    """InvalidRequestError when a chain of ``$ref`` reached only through required
    properties (or non-empty arrays, or anyOf, which nullability does not break) leads back
    to where it started: Gemini unrolls cycles only through optional properties. One
    depth-first walk over the references (linear in their number)."""
    defs = schema.get("$defs") or {}
    targets = {"#": schema, **{f"#/$defs/{name}": sub for name, sub in defs.items()}}
    edges = {name: sorted(_forced_refs(sub) & targets.keys()) for name, sub in targets.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in edges:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(edges[root]))]
        while stack:
            name, pending = stack[-1]
            ref = next(pending, None)
            if ref is None:
                state[name] = 2
                stack.pop()
            elif state.get(ref) == 1:
                raise _refused(
                    f"{ref} refers back to itself through required properties; Gemini "
                    "takes recursive references only in properties that are not required",
                )
            elif ref not in state:
                state[ref] = 1
                stack.append((ref, iter(edges[ref])))


def _forced_refs(node: Any) -> set[str]:
    """The references a value of ``node`` cannot avoid following."""
    if not isinstance(node, dict):
        return set()
    ref = node.get("$ref")
    if isinstance(ref, str):
        return {ref}
    found: set[str] = set()
    required = node.get("required")
    names = set(required) if isinstance(required, list) else set()
    for name, sub in (node.get("properties") or {}).items():
        if name in names:
            found |= _forced_refs(sub)
    min_items = node.get("minItems")
    if isinstance(min_items, int) and min_items > 0:
        found |= _forced_refs(node.get("items"))
    for key in ("anyOf", "oneOf"):
        for sub in node.get(key) or []:
            found |= _forced_refs(sub)
    return found
