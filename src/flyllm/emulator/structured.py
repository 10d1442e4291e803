"""The emulator's structured output and image acknowledgement, shared by every dialect.

- A request that asks for JSON following a schema gets JSON generated from the schema,
  deterministically (the same schema and prompt always give the same value): every property
  (required or not), enums and consts honoured, numbers within their bounds, strings and arrays
  within their lengths, ``$ref`` to ``#/$defs`` or ``#/definitions`` followed, the first
  non-null branch of ``anyOf``/``oneOf``, ``allOf`` merged, ``format`` date, date-time, time,
  email, uri and uuid given plausible values. ``pattern`` is not honoured (a string may not
  match it): tests that need one should not rely on the emulator's value.
- A JSON-mode request without a schema gets a small JSON object.
- Under the ``bad_output`` fault the answer is JSON that breaks the schema (a JSON array where
  an object is asked for), or prose where JSON is asked for.
- Images in the conversation are acknowledged at the start of a text answer:
  ``[2 images: image/png, image/jpeg]``, so a test can tell they arrived.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.emulator.text import Reply, text_reply
from flyllm.emulator.tools import _subjects

__all__ = ["BAD_OUTPUT_TEXT", "image_note", "json_for", "output_reply"]

BAD_OUTPUT_TEXT = "Sure! Here is what you asked for, in prose rather than JSON."
_MAX_DEPTH = 12
_FORMATS = {
    "date": "2026-12-04",
    "date-time": "2026-12-04T12:00:00Z",
    "time": "12:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
}


def image_note(media_types: Sequence[str]) -> str:
    """The acknowledgement of the conversation's images, e.g. "[1 image: image/png]"."""
    n = len(media_types)
    return f"[{n} image{'s' if n != 1 else ''}: {', '.join(media_types)}]"


def output_reply(schema: Mapping[str, Any] | None, prompt: str, bad: bool) -> Reply:
    """The answer of a JSON-mode or schema request (all of it in one reply: JSON is never cut
    by max_tokens or a stop sequence here, so the tests of parsing see whole values)."""
    if bad:
        text = "[]" if schema is not None else BAD_OUTPUT_TEXT
    else:
        value = json_for(schema, prompt) if schema is not None else _default_object(prompt)
        text = json.dumps(value, ensure_ascii=False)
    reply = text_reply(text, None)
    return Reply(text, _json_chunks(text), reply.tokens, "end")


def _json_chunks(text: str) -> tuple[str, ...]:
    """The text in pieces of about eight characters, as a stream would bring it."""
    return tuple(text[i : i + 8] for i in range(0, len(text), 8)) or ("",)


def _default_object(prompt: str) -> dict[str, Any]:
    return {"answer": _subjects(prompt)[0], "ok": True}


def json_for(schema: Mapping[str, Any], prompt: str) -> Any:
    """A value that follows ``schema`` (see the module docstring for what is honoured)."""
    subject = _subjects(prompt)[0]
    return _value(schema, schema, subject, 0)


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    for prefix in ("#/$defs/", "#/definitions/"):
        defs = root.get(prefix[2:-1])
        if ref.startswith(prefix) and isinstance(defs, Mapping):
            target = defs.get(ref[len(prefix) :])
            if isinstance(target, Mapping):
                return target
    return {}


def _value(node: Any, root: Mapping[str, Any], subject: str, depth: int) -> Any:
    if not isinstance(node, Mapping) or depth > _MAX_DEPTH:
        return None
    node = _resolve(node, root)
    if "const" in node:
        return node["const"]
    enum = node.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            return _value((usable or options)[0], root, subject, depth + 1)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {}
        for part in all_of:
            if isinstance(part, Mapping):
                merged.update(_resolve(part, root))
        return _value(merged, root, subject, depth + 1)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in node):
        properties = node.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {k: _value(v, root, subject, depth + 1) for k, v in properties.items()}
    if kind == "array":
        count = max(_int(node.get("minItems"), 1), 1)
        count = min(count, _int(node.get("maxItems"), count), 5) if count else 0
        items = node.get("items", {})
        return [_value(items, root, subject, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(node, kind)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(node, subject)


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(node: Mapping[str, Any], kind: str) -> int | float:
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    value: float = 42
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low + (1 if "exclusiveMinimum" in node else 0))
    if isinstance(high, int | float) and not isinstance(high, bool):
        value = min(value, high - (1 if "exclusiveMaximum" in node else 0))
    return int(value) if kind == "integer" else float(value)


def _string(node: Mapping[str, Any], subject: str) -> str:
    fmt = node.get("format")
    text = _FORMATS.get(fmt, subject) if isinstance(fmt, str) else subject
    low, high = _int(node.get("minLength"), 0), _int(node.get("maxLength"), 10**6)
    if len(text) < low:
        text = (text * (low // max(len(text), 1) + 1))[:low] if text else "x" * low
    return text[:high]
