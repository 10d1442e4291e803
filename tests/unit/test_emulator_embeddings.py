"""The emulator's deterministic vectors (flyllm.emulator.embeddings)."""

from __future__ import annotations

import array
import base64
import math

from flyllm.emulator.embeddings import as_base64, full_dimensions, vector


def length(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def test_the_same_text_and_model_give_the_same_unit_vector() -> None:
    first = vector("hello", "text-embedding-3-small")
    assert first == vector("hello", "text-embedding-3-small")
    assert len(first) == 1536 and abs(length(first) - 1.0) < 1e-12
    assert first != vector("hello!", "text-embedding-3-small")
    assert first != vector("hello", "other-model")[:1536]
    assert len(vector("hello", "text-embedding-3-large")) == full_dimensions(
        "text-embedding-3-large"
    ) == 3072  # fmt: skip


def test_dimensions_take_the_head_renormalised_unless_asked_not_to() -> None:
    full = vector("hello", "m")
    short = vector("hello", "m", 16)
    raw = vector("hello", "m", 16, normalise=False)
    assert raw == full[:16] and abs(length(short) - 1.0) < 1e-12
    assert all(abs(a - b / length(raw)) < 1e-12 for a, b in zip(short, raw, strict=True))
    assert vector("hello", "m", 5000) == full  # more than the model has: the full vector


def test_base64_is_little_endian_float32() -> None:
    values = [0.5, -2.0, 1.25]
    raw = base64.b64decode(as_base64(values))
    assert raw == b"\x00\x00\x00?\x00\x00\x00\xc0\x00\x00\xa0?"
    assert list(array.array("f", raw)) == values
