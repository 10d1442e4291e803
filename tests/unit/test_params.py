from __future__ import annotations

import pytest

from flyllm.params import merge_params, validate_params


def test_known_params_are_normalised() -> None:
    out = validate_params({"max_tokens": 10, "temperature": 1, "stop": "END", "custom": {"a": 1}})
    assert out == {"max_tokens": 10, "temperature": 1.0, "stop": ["END"], "custom": {"a": 1}}
    assert isinstance(out["temperature"], float)


@pytest.mark.parametrize(
    ("params", "culprit"),
    [
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": None, "top_k": 1.5}, "top_k"),
        ({"stop": ["a", 3]}, "stop"),
        ({"seed": 1.0}, "seed"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_bad_values_name_the_culprit(params: dict[str, object], culprit: str) -> None:
    with pytest.raises((TypeError, ValueError), match=culprit):
        validate_params(params)


def test_merge_later_layers_win_and_none_unsets() -> None:
    merged = merge_params(
        {"temperature": 0.1, "max_tokens": 5, "top_p": 0.9},
        {"temperature": 0.5},
        None,
        {"max_tokens": 7, "top_p": None},
    )
    assert merged == {"temperature": 0.5, "max_tokens": 7}


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        b"bytes",
        float("nan"),
        float("inf"),
        [1.0, float("-inf")],
        {"when": __import__("datetime").datetime(2026, 1, 1)},
        pytest.param(10**5000, id="5000-digit-int"),
    ],
)
def test_values_json_cannot_carry_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="custom"):
        validate_params({"custom": value})


def test_deeply_nested_value_is_rejected_not_a_recursion_error() -> None:
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="custom"):
        validate_params({"custom": deep})


@pytest.mark.parametrize("name", ["temperature", "top_p"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_known_numbers_are_rejected(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        validate_params({name: value})


def test_json_values_pass_unchanged() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": (1, 2)}}
    assert validate_params({"custom": value}) == {"custom": value}
