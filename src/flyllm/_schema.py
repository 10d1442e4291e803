"""JSON Schemas from Python signatures, and a small validator for the schemas providers take.

``function_schema(fn)`` reads a function's type hints (``from __future__ import annotations``
included) and docstring: the name, description and parameters of a tool. ``validate(value,
schema)`` checks a value (a model's tool arguments, a structured answer) against the JSON
Schema subset providers accept, with readable error paths, bounded in depth, work and errors
whatever the schema or value. ``call_arguments`` turns validated JSON arguments back into the
annotated Python values (dataclasses, enums, tuples) before a function is called.

The bottom layer: imports nothing from flyllm.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["call_arguments", "function_schema", "validate"]

MAX_DEPTH = 64
"""The deepest nesting of types, schemas or values walked (deeper: an error, not a crash)."""

MAX_ERRORS = 20
"""The most errors ``validate`` reports: enough to fix a call, bounded for hostile input."""

MAX_STEPS = 50_000
"""The most schema checks one ``validate`` call makes (anyOf over anyOf... is exponential)."""

_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_NONE = (None, type(None))
_UNION_TYPES: tuple[Any, ...] = (typing.Union, types.UnionType)
_SEQUENCES: tuple[Any, ...] = (list, Sequence, typing.Sequence)
_QUALIFIERS = frozenset({"Required", "NotRequired", "ReadOnly"})
"""TypedDict key markers (typing's or typing_extensions'): the key's type is inside."""
_MAPPINGS: tuple[Any, ...] = (dict, Mapping, typing.Mapping)
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?|"
    r"Attributes|See Also|Warnings?)\s*:?\s*$"
)
_RULE = re.compile(r"^\s*-{3,}\s*$")
_SPHINX = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_GOOGLE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY = re.compile(r"^(\w+)\s*(?::.*)?$")


# -- function_schema ---------------------------------------------------------------------------


def function_schema(fn: Callable[..., Any]) -> tuple[str, str, dict[str, Any]]:
    """``(name, description, parameters)`` of a plain or async function or a method: the
    parameters as a JSON Schema object built from the type hints (str, int, float, bool,
    None, list/tuple/Sequence, dict[str, ...], Literal, unions and Optional, TypedDict,
    dataclasses, Enum, Annotated[..., "description"]); parameters with a default are not
    required (the default is in the schema when JSON can carry it). The description is the
    docstring's first paragraph; per-parameter descriptions come from a Google, NumPy or
    Sphinx style section. Raises TypeError naming the parameter for ``*args``/``**kwargs``,
    a missing annotation or a type JSON Schema cannot express."""
    name = getattr(fn, "__name__", None)
    if not callable(fn) or not isinstance(name, str):
        raise TypeError(f"expected a function or a method, got {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (AttributeError, NameError, TypeError, ValueError) as exc:
        raise TypeError(f"{name}: cannot read its type hints: {exc}") from None
    doc = inspect.getdoc(fn) or ""
    notes = _param_docs(doc)
    builder = _Builder(name)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in signature.parameters.values():
        where = f"{name}: parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise TypeError(f"{where}: {star}{param.name} cannot be described to a model")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"{where} is positional-only; tools are called with keywords")
        if param.name not in hints:
            raise TypeError(f"{where} has no type annotation")
        schema = builder.schema(hints[param.name], where)
        if param.name in notes and "description" not in schema:
            schema["description"] = notes[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            _add_default(schema, param.default)
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    parameters["additionalProperties"] = False
    if builder.defs:
        parameters["$defs"] = builder.defs
    return name, _summary(doc), parameters


class _Builder:
    """Type hints to JSON Schema; a recursive dataclass or TypedDict becomes a ``$defs`` entry
    referred to by ``$ref`` (inline otherwise, what every provider takes)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.defs: dict[str, Any] = {}
        self._open: list[Any] = []  # the classes being expanded now
        self._recursive: set[Any] = set()

    def schema(self, hint: Any, where: str, depth: int = 0) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise TypeError(f"{where}: the type is nested too deeply")
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if getattr(origin, "_name", None) in _QUALIFIERS:
            return self.schema(args[0], where, depth + 1)
        if origin is typing.Annotated:
            schema = self.schema(args[0], where, depth + 1)
            notes = [a for a in args[1:] if isinstance(a, str)]
            if notes:
                schema["description"] = " ".join(notes)
            return schema
        if isinstance(hint, type) and hint in _PRIMITIVES:
            return {"type": _PRIMITIVES[hint]}
        if hint in _NONE:
            return {"type": "null"}
        if origin in _UNION_TYPES:
            return _union([self.schema(a, where, depth + 1) for a in args])
        if origin is typing.Literal:
            return _enum(list(args), where)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return _enum([m.value for m in hint], where)
        if hint in (list, tuple) or origin in (*_SEQUENCES, tuple):
            return self._array(hint, origin, args, where, depth)
        if hint is dict or origin in _MAPPINGS:
            return self._mapping(args, where, depth)
        if typing.is_typeddict(hint) or dataclasses.is_dataclass(hint):
            return self._record(hint, where, depth)
        raise TypeError(f"{where}: type {_type_name(hint)} cannot be described as JSON Schema")

    def _array(
        self, hint: Any, origin: Any, args: tuple[Any, ...], where: str, depth: int
    ) -> dict[str, Any]:
        if not args:
            return {"type": "array"}
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            items = [self.schema(a, where, depth + 1) for a in args if a != ()]
            n = len(items)
            return {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}
        return {"type": "array", "items": self.schema(args[0], where, depth + 1)}

    def _mapping(self, args: tuple[Any, ...], where: str, depth: int) -> dict[str, Any]:
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise TypeError(f"{where}: JSON object keys are strings, not {_type_name(args[0])}")
        return {"type": "object", "additionalProperties": self.schema(args[1], where, depth + 1)}

    def _record(self, cls: Any, where: str, depth: int) -> dict[str, Any]:
        ref = {"$ref": f"#/$defs/{cls.__name__}"}
        if cls in self._open:
            self._recursive.add(cls)
            return ref
        self._open.append(cls)
        try:
            schema = self._fields(cls, f"{where} ({cls.__name__})", depth)
        finally:
            self._open.pop()
        if cls in self._recursive:
            self.defs[cls.__name__] = schema
            return ref
        return schema

    def _fields(self, cls: Any, where: str, depth: int) -> dict[str, Any]:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except (NameError, TypeError) as exc:
            raise TypeError(f"{where}: cannot read its type hints: {exc}") from None
        properties: dict[str, Any] = {}
        required: list[str] = []
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if not f.init:
                    continue
                field = properties[f.name] = self.schema(
                    hints.get(f.name, f.type), f"{where} field {f.name!r}", depth + 1
                )
                if f.default is not dataclasses.MISSING:
                    _add_default(field, f.default)
                elif f.default_factory is dataclasses.MISSING:
                    required.append(f.name)
        else:
            for key, hint in hints.items():
                properties[key] = self.schema(hint, f"{where} key {key!r}", depth + 1)
            required = [k for k, hint in hints.items() if _required_key(cls, k, hint)]
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        return schema


def _required_key(cls: Any, key: str, hint: Any) -> bool:
    """Whether a TypedDict key is required: its Required/NotRequired marker first (string
    annotations hide them from ``__required_keys__`` before Python 3.14), then the class."""
    marker = getattr(typing.get_origin(hint), "_name", None)
    if marker in ("Required", "NotRequired"):
        return bool(marker == "Required")
    return bool(key in cls.__required_keys__)


def _union(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """``X | Y``: a list of types when every arm is a bare type, anyOf otherwise."""
    if all(set(a) == {"type"} and isinstance(a["type"], str) for a in arms):
        names = list(dict.fromkeys(a["type"] for a in arms))
        return {"type": names[0] if len(names) == 1 else names}
    return {"anyOf": arms}


def _enum(values: list[Any], where: str) -> dict[str, Any]:
    kinds = []
    for value in values:
        kind = _json_type(value)
        if kind in ("array", "object", None):
            raise TypeError(f"{where}: choice {value!r} is not a JSON scalar")
        kinds.append(kind)
    schema: dict[str, Any] = {"enum": values}
    if len(set(kinds)) == 1:
        schema = {"type": kinds[0], "enum": values}
    return schema


def _add_default(schema: dict[str, Any], default: Any) -> None:
    if isinstance(default, enum.Enum):
        default = default.value
    try:
        json.dumps(default, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return  # a default JSON cannot carry stays the function's business
    schema["default"] = default


def _type_name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)


def _summary(doc: str) -> str:
    """The docstring's first paragraph, on one line (empty when it starts with a section)."""
    lines: list[str] = []
    for line in doc.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    first = " ".join(lines)
    if first.startswith(":") or _SECTION.match(lines[0] if lines else "x"):
        return ""
    return first


def _param_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google (``Args:``), NumPy (``Parameters`` + dashes) or
    Sphinx (``:param x:``) section; best effort, never an error."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    for line in lines:
        match = _SPHINX.match(line)
        if match:
            out[match.group(1)] = match.group(2).strip()
    for start, line in enumerate(lines):
        header = _SECTION.match(line)
        if header and header.group(1) in ("Args", "Arguments", "Parameters", "Params"):
            numpy = start + 1 < len(lines) and _RULE.match(lines[start + 1]) is not None
            body = lines[start + (2 if numpy else 1) :]
            out.update(_section_items(body, numpy))
    return out


def _section_items(body: list[str], numpy: bool) -> Iterator[tuple[str, str]]:
    name: str | None = None
    text: list[str] = []
    indent = None
    for line in body:
        if not line.strip():
            continue
        level = len(line) - len(line.lstrip())
        if _SECTION.match(line) or _RULE.match(line) or (indent is not None and level < indent):
            break
        match = (_NUMPY if numpy else _GOOGLE).match(line.strip())
        if (indent is None or level == indent) and match:
            if name:
                yield name, " ".join(text)
            indent, name = level, match.group(1)
            text = [] if numpy else [match.group(2).strip()]
        elif name:
            text.append(line.strip())
    if name:
        yield name, " ".join(t for t in text if t)


# -- call_arguments ----------------------------------------------------------------------------


def call_arguments(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` (decoded JSON, already validated) as the values ``fn``'s annotations
    ask for: dataclasses built from objects, enum members from their values, tuples from
    arrays, recursively. Without readable hints the JSON values are passed as they are.
    Raises what building a value raises (ValueError for a value no enum member has,
    TypeError for fields a dataclass lacks, whatever its ``__post_init__`` raises)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # hints that cannot be resolved: the function gets plain JSON
        return dict(arguments)
    return {k: _convert(v, hints.get(k, Any), 0) for k, v in arguments.items()}


def _convert(value: Any, hint: Any, depth: int) -> Any:
    if depth > MAX_DEPTH or value is None:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _convert(value, args[0], depth + 1)
    if origin in _UNION_TYPES:
        arms = [a for a in args if a not in _NONE]
        return _convert(value, arms[0], depth + 1) if len(arms) == 1 else value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(value, dict):
        inner = typing.get_type_hints(hint)
        return hint(**{k: _convert(v, inner.get(k, Any), depth + 1) for k, v in value.items()})
    if isinstance(value, list) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(_convert(v, a, depth + 1) for v, a in zip(value, args, strict=False))
        items = [_convert(v, args[0], depth + 1) for v in value]
        return tuple(items) if origin is tuple else items
    if isinstance(value, list) and hint is tuple:
        return tuple(value)
    if isinstance(value, dict) and origin in _MAPPINGS and len(args) == 2:
        return {k: _convert(v, args[1], depth + 1) for k, v in value.items()}
    return value


# -- validate ----------------------------------------------------------------------------------


def validate(value: Any, schema: Any) -> list[str]:
    """The ways ``value`` (decoded JSON) breaks ``schema``, as readable lines such as
    ``"$.city: expected string, got 3"``; empty when it conforms. Understands type (a name or
    a list), properties, required, additionalProperties (bool or schema), items, prefixItems,
    enum, const, anyOf, oneOf, allOf, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
    minLength, maxLength, minItems, maxItems, pattern, ``$ref`` to ``#``, ``#/$defs/...`` and
    ``#/definitions/...``, and OpenAPI's nullable; other keywords are ignored. Bounded: at most
    MAX_ERRORS errors, MAX_DEPTH levels and MAX_STEPS checks, whatever the input."""
    checker = _Checker(schema)
    checker.check(value, schema, "$", 0)
    return checker.errors[:MAX_ERRORS]


class _Stop(Exception):
    """The error or work budget is spent."""


class _Checker:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.errors: list[str] = []
        self.steps = 0

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")
        if len(self.errors) >= MAX_ERRORS:
            raise _Stop

    def check(self, value: Any, schema: Any, path: str, depth: int) -> None:
        try:
            self._check(value, schema, path, depth)
        except _Stop:
            pass
        except RecursionError:
            self.errors.append(f"{path}: nested too deeply to check")

    def _check(self, value: Any, schema: Any, path: str, depth: int) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.errors.append(f"{path}: the schema is too complex to check")
            raise _Stop
        if depth > MAX_DEPTH:
            self.fail(path, "nested too deeply to check")
            return
        if schema is False:
            self.fail(path, "no value is allowed here")
            return
        if not isinstance(schema, Mapping):
            return  # True, or something that is not a schema: nothing to hold the value to
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            if target is None:
                self.fail(path, f"cannot resolve $ref {_show(schema['$ref'])}")
                return
            self._check(value, target, path, depth + 1)
        if value is None and schema.get("nullable") is True:
            return
        if not self._type(value, schema, path):
            return  # the other keywords would only repeat the mismatch
        self._choices(value, schema, path)
        self._combinations(value, schema, path, depth)
        if isinstance(value, str):
            self._string(value, schema, path)
        elif _is_number(value):
            self._number(value, schema, path)
        elif isinstance(value, list | tuple):
            self._array(value, schema, path, depth)
        elif isinstance(value, Mapping):
            self._object(value, schema, path, depth)

    def _resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node = self.root
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def _type(self, value: Any, schema: Mapping[str, Any], path: str) -> bool:
        expected = schema.get("type")
        if expected is None:
            return True
        names = [expected] if isinstance(expected, str) else expected
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return True  # a malformed "type": nothing sensible to hold the value to
        if any(_is_type(value, n) for n in names):
            return True
        if value is None and schema.get("nullable") is True:
            return True
        wanted = names[0] if len(names) == 1 else " or ".join(names)
        self.fail(path, f"expected {wanted}, got {_show(value)}")
        return False

    def _choices(self, value: Any, schema: Mapping[str, Any], path: str) -> None:
        if "const" in schema and not _same(value, schema["const"]):
            self.fail(path, f"expected {_show(schema['const'])}, got {_show(value)}")
        options = schema.get("enum")
        if isinstance(options, list) and not any(_same(value, o) for o in options):
            shown = ", ".join(_show(o) for o in options[:10]) + (
                ", ..." if len(options) > 10 else ""
            )
            self.fail(path, f"expected one of {shown}; got {_show(value)}")

    def _combinations(self, value: Any, schema: Mapping[str, Any], path: str, depth: int) -> None:
        for sub in _schemas(schema.get("allOf")):
            self._check(value, sub, path, depth + 1)
        for keyword in ("anyOf", "oneOf"):
            arms = _schemas(schema.get(keyword))
            if not arms:
                continue
            failures = [self._trial(value, arm, path, depth) for arm in arms]
            passed = sum(1 for f in failures if not f)
            if passed == 0:
                first = "; ".join(f[0] for f in failures[:3])
                self.fail(path, f"matches none of the {len(arms)} allowed forms ({first})")
            elif keyword == "oneOf" and passed > 1:
                self.fail(path, f"matches {passed} of the oneOf forms; exactly one must match")

    def _trial(self, value: Any, schema: Any, path: str, depth: int) -> list[str]:
        """The errors of ``value`` against one arm, kept apart from the real ones."""
        outer = self.errors
        self.errors = []
        try:
            self._check(value, schema, path, depth + 1)
        except _Stop:
            if self.steps > MAX_STEPS:
                outer.extend(self.errors[-1:])
                self.errors = outer
                raise
        found, self.errors = self.errors, outer
        return found

    def _string(self, value: str, schema: Mapping[str, Any], path: str) -> None:
        low, high = _int(schema.get("minLength")), _int(schema.get("maxLength"))
        if low is not None and len(value) < low:
            self.fail(path, f"expected at least {low} characters, got {len(value)}")
        if high is not None and len(value) > high:
            self.fail(path, f"expected at most {high} characters, got {len(value)}")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except (re.error, RecursionError, OverflowError):
                self.fail(path, f"the schema's pattern {_show(pattern)} is not a valid regex")
                return
            if not matched:
                self.fail(path, f"{_show(value)} does not match the pattern {_show(pattern)}")

    def _number(self, value: float, schema: Mapping[str, Any], path: str) -> None:
        for keyword, words in (
            ("minimum", "at least"),
            ("maximum", "at most"),
            ("exclusiveMinimum", "more than"),
            ("exclusiveMaximum", "less than"),
        ):
            limit: Any = schema.get(keyword)
            if _is_number(limit) and not _within(value, keyword, limit):
                self.fail(path, f"expected {words} {_show(limit)}, got {_show(value)}")

    def _array(
        self, value: Sequence[Any], schema: Mapping[str, Any], path: str, depth: int
    ) -> None:
        low, high = _int(schema.get("minItems")), _int(schema.get("maxItems"))
        if low is not None and len(value) < low:
            self.fail(path, f"expected at least {low} items, got {len(value)}")
        if high is not None and len(value) > high:
            self.fail(path, f"expected at most {high} items, got {len(value)}")
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # the older tuple form of items
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            if sub is not None:
                self._check(item, sub, f"{path}[{i}]", depth + 1)

    def _object(
        self, value: Mapping[str, Any], schema: Mapping[str, Any], path: str, depth: int
    ) -> None:
        required = schema.get("required")
        for name in required if isinstance(required, list) else []:
            if isinstance(name, str) and name not in value:
                self.fail(path, f"missing required property {_show(name)}")
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = properties.get(key)
            if sub is not None:
                self._check(item, sub, _join(path, key), depth + 1)
            elif extra is False:
                self.fail(path, f"unexpected property {_show(key)}")
            elif isinstance(extra, Mapping):
                self._check(item, extra, _join(path, key), depth + 1)


def _within(value: float, keyword: str, limit: float) -> bool:
    if keyword == "minimum":
        return value >= limit
    if keyword == "maximum":
        return value <= limit
    if keyword == "exclusiveMinimum":
        return value > limit
    return value < limit


def _schemas(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and (
            isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())
        )
    return _json_type(value) == name or (name == "number" and _is_number(value))


def _json_type(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except RecursionError:
        return False


def _join(path: str, key: str) -> str:
    key = str(key)
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)[:60]}]"


def _show(value: Any) -> str:
    """A value in an error message: JSON, cut short; containers by their kind only."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
