"""JSON Schemas from signatures (Tool.from_function) and the validator tool arguments go through.

This module uses ``from __future__ import annotations``: every hint below is a string, read
back through typing.get_type_hints as users' modules written that way are.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
import time
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Optional, TypedDict

import pytest

from flyllm import Tool
from flyllm._schema import MAX_ERRORS, call_arguments, function_schema, validate

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:  # what users of Python 3.10 write
    from typing_extensions import NotRequired


class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Place(TypedDict):
    city: str
    country: NotRequired[str]


class Loose(TypedDict, total=False):
    note: str


@dataclasses.dataclass
class Window:
    start: int
    end: int = 24
    labels: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Tree:
    value: int
    children: list[Tree] = dataclasses.field(default_factory=list)


def props(fn: Any) -> dict[str, Any]:
    return dict(function_schema(fn)[2]["properties"])


# -- function_schema: every supported type ---------------------------------------------------


def test_primitives_none_and_required() -> None:
    def f(s: str, i: int, x: float, b: bool, n: None) -> None:
        pass

    name, description, schema = function_schema(f)
    assert name == "f" and description == ""
    assert schema == {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
            "n": {"type": "null"},
        },
        "required": ["s", "i", "x", "b", "n"],
        "additionalProperties": False,
    }


def test_containers() -> None:
    def f(
        a: list[int],
        b: tuple[str, ...],
        c: tuple[int, str],
        d: dict[str, float],
        e: Sequence[bool],
        f: list,  # type: ignore[type-arg]
        g: dict,  # type: ignore[type-arg]
        h: typing.List[str],  # noqa: UP006
    ) -> None:
        pass

    assert props(f) == {
        "a": {"type": "array", "items": {"type": "integer"}},
        "b": {"type": "array", "items": {"type": "string"}},
        "c": {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "minItems": 2,
            "maxItems": 2,
        },
        "d": {"type": "object", "additionalProperties": {"type": "number"}},
        "e": {"type": "array", "items": {"type": "boolean"}},
        "f": {"type": "array"},
        "g": {"type": "object"},
        "h": {"type": "array", "items": {"type": "string"}},
    }


def test_literal_enum_and_unions() -> None:
    def f(
        mode: Literal["fast", "slow"],
        mixed: Literal[1, "one"],
        unit: Unit,
        level: Level,
        maybe: str | None,
        old: Optional[int],  # noqa: UP045
        either: int | str,
        place: Place | None,
    ) -> None:
        pass

    p = props(f)
    assert p["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert p["mixed"] == {"enum": [1, "one"]}
    assert p["unit"] == {"type": "string", "enum": ["c", "f"]}
    assert p["level"] == {"type": "integer", "enum": [1, 2]}
    assert p["maybe"] == {"type": ["string", "null"]}
    assert p["old"] == {"type": ["integer", "null"]}
    assert p["either"] == {"type": ["integer", "string"]}
    assert p["place"]["anyOf"][1] == {"type": "null"}
    assert p["place"]["anyOf"][0]["required"] == ["city"]


def test_typeddict_and_dataclass_records() -> None:
    def f(place: Place, loose: Loose, window: Window) -> None:
        pass

    p = props(f)
    assert p["place"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    assert "required" not in p["loose"]
    assert p["window"] == {
        "type": "object",
        "properties": {
            "start": {"type": "integer"},
            "end": {"type": "integer", "default": 24},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["start"],
        "additionalProperties": False,
    }


def test_a_recursive_dataclass_goes_to_defs() -> None:
    def f(tree: Tree) -> None:
        pass

    schema = function_schema(f)[2]
    assert schema["properties"]["tree"] == {"$ref": "#/$defs/Tree"}
    node = schema["$defs"]["Tree"]
    assert node["properties"]["children"] == {"type": "array", "items": {"$ref": "#/$defs/Tree"}}
    assert validate({"tree": {"value": 1, "children": [{"value": 2}]}}, schema) == []
    assert validate({"tree": {"value": 1, "children": [{"value": "x"}]}}, schema) == [
        '$.tree.children[0].value: expected integer, got "x"'
    ]


def test_defaults_are_optional_and_shown_when_json_can_carry_them() -> None:
    def f(
        a: int, b: int = 2, c: Unit = Unit.CELSIUS, d: str | None = None, e: float = math.nan
    ) -> None:
        pass

    schema = function_schema(f)[2]
    assert schema["required"] == ["a"]
    p = schema["properties"]
    assert p["b"]["default"] == 2 and p["c"]["default"] == "c" and p["d"]["default"] is None
    assert "default" not in p["e"]  # NaN is not JSON: left out, the parameter stays optional


def test_any_is_refused() -> None:
    def f(x: Any) -> None:
        pass

    with pytest.raises(TypeError, match=r"parameter 'x': type Any"):
        function_schema(f)


def test_docstrings_give_the_description_and_parameter_notes() -> None:
    def google(city: str, days: int) -> None:
        """Current weather
        for a city.

        Longer text the model need not read.

        Args:
            city: The city's name.
            days (int): How many days
                ahead.

        Returns:
            Nothing.
        """

    def numpy(city: str) -> None:
        """Forecast.

        Parameters
        ----------
        city : str
            The city's name.
        """

    def sphinx(city: str, days: Annotated[int, "Days ahead."]) -> None:
        """Forecast.

        :param city: The city's name.
        :param int days: ignored: Annotated wins.
        """

    name, description, schema = function_schema(google)
    assert (name, description) == ("google", "Current weather for a city.")
    assert schema["properties"]["city"]["description"] == "The city's name."
    assert schema["properties"]["days"]["description"] == "How many days ahead."
    assert props(numpy)["city"]["description"] == "The city's name."
    sph = props(sphinx)
    assert sph["city"]["description"] == "The city's name."
    assert sph["days"] == {"type": "integer", "description": "Days ahead."}

    def only_params(x: int) -> None:
        """:param x: the x."""

    assert function_schema(only_params)[1] == ""


def test_async_functions_methods_and_tool_from_function() -> None:
    async def fetch(url: str) -> str:
        """Fetch a page."""
        return url

    class Service:
        def lookup(self, key: str) -> str:
            """Look a key up."""
            return key

        @classmethod
        def build(cls, size: int) -> None:
            pass

    assert function_schema(fetch)[:2] == ("fetch", "Fetch a page.")
    assert props(Service().lookup) == {"key": {"type": "string"}}
    assert props(Service.build) == {"size": {"type": "integer"}}
    tool = Tool.from_function(fetch)
    assert tool == Tool("fetch", "Fetch a page.", function_schema(fetch)[2])
    assert Tool.from_function(fetch, name="get_page").name == "get_page"


# -- function_schema: every error -------------------------------------------------------------


def _star(*items: int) -> None:
    pass


def _stars(**extra: int) -> None:
    pass


def _bare(x) -> None:  # type: ignore[no-untyped-def]
    pass


def _positional(x: int, /) -> None:
    pass


def _a_set(tags: set[str]) -> None:
    pass


def _int_keys(table: dict[int, str]) -> None:
    pass


def _unknown(x: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
    pass


def _bad_literal(x: Literal[b"raw"]) -> None:
    pass


@dataclasses.dataclass
class _HasSet:
    tags: set[str]


def _nested_bad(x: list[_HasSet]) -> None:
    pass


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_star, r"_star: parameter 'items': \*items"),
        (_stars, r"_stars: parameter 'extra': \*\*extra"),
        (_bare, "parameter 'x' has no type annotation"),
        (_positional, "parameter 'x' is positional-only"),
        (_a_set, "parameter 'tags': type set cannot"),
        (_int_keys, "keys are strings, not int"),
        (_unknown, "_unknown: cannot read its type hints.*NoSuchType"),
        (_bad_literal, "not a JSON scalar"),
        (_nested_bad, r"parameter 'x' \(_HasSet\) field 'tags': type set"),
        (len, "cannot read|positional-only|no type annotation"),
        (42, "expected a function"),
    ],
)
def test_what_cannot_be_described_is_a_type_error_naming_it(fn: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        function_schema(fn)
    if callable(fn) and fn is not len:
        with pytest.raises(TypeError, match=message):
            Tool.from_function(fn)


def test_unbound_self_without_annotation_is_named() -> None:
    class C:
        def m(self, x: int) -> None:
            pass

    with pytest.raises(TypeError, match="'self' has no type annotation"):
        function_schema(C.m)


# -- call_arguments ---------------------------------------------------------------------------


def test_call_arguments_builds_the_annotated_values() -> None:
    def f(
        window: Window,
        unit: Unit,
        pair: tuple[int, str],
        many: tuple[int, ...],
        maybe: Window | None,
        table: dict[str, Unit],
        trees: list[Tree],
        plain: int,
    ) -> None:
        pass

    out = call_arguments(
        f,
        {
            "window": {"start": 1, "labels": ["a"]},
            "unit": "f",
            "pair": [1, "x"],
            "many": [1, 2],
            "maybe": None,
            "table": {"x": "c"},
            "trees": [{"value": 1, "children": [{"value": 2}]}],
            "plain": 3,
        },
    )
    assert out == {
        "window": Window(1, 24, ["a"]),
        "unit": Unit.FAHRENHEIT,
        "pair": (1, "x"),
        "many": (1, 2),
        "maybe": None,
        "table": {"x": Unit.CELSIUS},
        "trees": [Tree(1, [Tree(2)])],
        "plain": 3,
    }


def test_call_arguments_raises_what_building_a_value_raises() -> None:
    def f(unit: Unit, window: Window, x: int | str) -> None:
        pass

    with pytest.raises(ValueError, match="'kelvin' is not a valid Unit"):
        call_arguments(f, {"unit": "kelvin"})
    with pytest.raises(TypeError, match="nope"):
        call_arguments(f, {"window": {"nope": 1}})
    assert call_arguments(f, {"x": 3, "unit": None}) == {"x": 3, "unit": None}
    assert call_arguments(_unknown, {"x": 1}) == {"x": 1}  # unreadable hints: plain JSON


# -- validate ---------------------------------------------------------------------------------

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2, "maxLength": 20, "pattern": "^[A-Z]"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["c", "f"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
    },
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ({"city": "Oslo", "days": 3, "unit": "c", "tags": ["x"]}, []),
        ({"city": 3}, ["$.city: expected string, got 3"]),
        ({}, ['$: missing required property "city"']),
        ({"city": "Oslo", "x": 1}, ['$: unexpected property "x"']),
        ({"city": "O"}, ["$.city: expected at least 2 characters, got 1"]),
        ({"city": "O" * 21}, ["$.city: expected at most 20 characters, got 21"]),
        ({"city": "oslo"}, ['$.city: "oslo" does not match the pattern "^[A-Z]"']),
        ({"city": "Oslo", "days": 0}, ["$.days: expected at least 1, got 0"]),
        ({"city": "Oslo", "days": 8}, ["$.days: expected at most 7, got 8"]),
        ({"city": "Oslo", "days": 2.5}, ["$.days: expected integer, got 2.5"]),
        ({"city": "Oslo", "days": True}, ["$.days: expected integer, got true"]),
        ({"city": "Oslo", "unit": "k"}, ['$.unit: expected one of "c", "f"; got "k"']),
        ({"city": "Oslo", "tags": []}, ["$.tags: expected at least 1 items, got 0"]),
        ({"city": "Oslo", "tags": ["a", "b", "c"]}, ["$.tags: expected at most 2 items, got 3"]),
        ({"city": "Oslo", "tags": ["a", 1]}, ["$.tags[1]: expected string, got 1"]),
        ("Oslo", ['$: expected object, got "Oslo"']),
        ({"city": None}, ["$.city: expected string, got null"]),
    ],
)
def test_validate_reports_readable_paths(value: Any, errors: list[str]) -> None:
    assert validate(value, WEATHER) == errors


def test_validate_types_lists_nullable_const_and_numbers() -> None:
    assert validate(2.0, {"type": "integer"}) == []  # JSON's 2.0 is an integer
    assert validate(3, {"type": "number"}) == []
    assert validate(None, {"type": ["string", "null"]}) == []
    assert validate(1, {"type": ["string", "null"]}) == ["$: expected string or null, got 1"]
    assert validate(None, {"type": "string", "nullable": True}) == []
    assert validate(1, {"const": 1.0}) == []
    assert validate(True, {"const": 1}) == ["$: expected 1, got true"]
    assert validate(1, {"enum": [True]}) == ["$: expected one of true; got 1"]
    assert validate(5, {"exclusiveMinimum": 5}) == ["$: expected more than 5, got 5"]
    assert validate(5, {"exclusiveMaximum": 5}) == ["$: expected less than 5, got 5"]
    assert validate([1, "a"], {"type": "array", "prefixItems": [{"type": "integer"}]}) == []
    pair = {"type": "array", "items": [{"type": "integer"}, {"type": "integer"}]}
    assert validate((1, "a"), pair) == ['$[1]: expected integer, got "a"']
    assert validate({"a b": 1}, {"additionalProperties": {"type": "string"}}) == [
        '$["a b"]: expected string, got 1'
    ]
    assert validate(1, True) == [] and validate(1, False) == ["$: no value is allowed here"]
    assert validate({"x": 1}, {"properties": {"x": False}}) == ["$.x: no value is allowed here"]


def test_validate_combinations() -> None:
    either = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert validate(1, either) == [] and validate("a", either) == []
    assert validate(1.5, either) == [
        "$: matches none of the 2 allowed forms "
        "($: expected string, got 1.5; $: expected integer, got 1.5)"
    ]
    one = {"oneOf": [{"type": "number"}, {"type": "integer"}]}
    assert validate(1.5, one) == []
    assert validate(1, one) == ["$: matches 2 of the oneOf forms; exactly one must match"]
    both = {"allOf": [{"type": "integer"}, {"minimum": 3}]}
    assert validate(2, both) == ["$: expected at least 3, got 2"]


def test_validate_refs() -> None:
    schema = {
        "$defs": {"city": {"type": "string"}},
        "definitions": {"n": {"type": "integer"}},
        "properties": {
            "a": {"$ref": "#/$defs/city"},
            "b": {"$ref": "#/definitions/n"},
            "c": {"$ref": "#/$defs/nope"},
            "d": {"$ref": "https://example.com/x"},
        },
    }
    assert validate({"a": "x", "b": 1}, schema) == []
    assert validate({"a": 1, "b": "x"}, schema) == [
        "$.a: expected string, got 1",
        '$.b: expected integer, got "x"',
    ]
    assert validate({"c": 1, "d": 1}, schema) == [
        '$.c: cannot resolve $ref "#/$defs/nope"',
        '$.d: cannot resolve $ref "https://example.com/x"',
    ]
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    assert validate({"kids": [{"kids": [{"kids": 1}]}]}, tree) == [
        "$.kids[0].kids[0].kids: expected array, got 1"
    ]


def test_validate_ignores_unknown_and_malformed_keywords() -> None:
    schema = {"type": 3, "format": "date", "properties": [], "required": "x", "minLength": "2"}
    assert validate({"a": 1}, schema) == []
    assert validate("x", {"type": "string", "pattern": "("}) == [
        '$: the schema\'s pattern "(" is not a valid regex'
    ]


# -- validate: hostile schemas and values -----------------------------------------------------


def _timed(value: Any, schema: Any) -> tuple[list[str], float]:
    start = time.perf_counter()
    errors = validate(value, schema)
    return errors, time.perf_counter() - start


def test_a_ref_loop_ends_in_an_error() -> None:
    errors, seconds = _timed(1, {"$ref": "#"})
    assert errors == ["$: nested too deeply to check"] and seconds < 1


def test_exponential_anyof_is_cut_off() -> None:
    schema: dict[str, Any] = {"anyOf": [{"$ref": "#"}, {"$ref": "#"}]}
    errors, seconds = _timed(1, schema)
    assert errors and errors[-1] == "$: the schema is too complex to check"
    assert seconds < 5


def test_a_deep_value_and_a_deep_schema_are_bounded() -> None:
    value: Any = "leaf"
    schema: Any = {"type": "string"}
    for _ in range(5000):
        value = [value]
        schema = {"type": "array", "items": schema}
    errors, seconds = _timed(value, schema)
    assert errors == ["$" + "[0]" * 65 + ": nested too deeply to check"] and seconds < 1
    assert validate(value, {"enum": [value]}) in ([], ["$: expected one of an array; got an array"])


def test_errors_are_capped_and_values_clipped() -> None:
    value = {f"k{i}": i for i in range(10_000)}
    errors = validate(value, {"additionalProperties": {"type": "string"}})
    assert len(errors) == MAX_ERRORS
    long = validate("x" * 10_000, {"type": "integer"})
    assert len(long) == 1 and len(long[0]) < 100 and long[0].endswith('..."') is False
    assert long[0].endswith("...")


def test_validate_never_raises_on_odd_schemas() -> None:
    odd: list[Any] = [None, 3, "x", [], {"anyOf": "x"}, {"items": 3}, {"$ref": 3},
                      {"enum": 3}, {"minimum": "a"}, {"properties": {"a": 3}}]  # fmt: skip
    for schema in odd:
        assert isinstance(validate({"a": [1]}, schema), list), json.dumps(schema)
