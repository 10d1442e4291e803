"""Deterministic embedding vectors, shared by every dialect's embeddings endpoint.

A vector is derived from the model and the text alone (SHAKE-256 of both, read as uniform
values in [-1, 1)), so the same text gives the same vector on every run and different texts
differ. ``dimensions`` shortens the model's full vector and normalises it again, as OpenAI's
text-embedding-3 models do; ``normalise=False`` leaves a shortened vector as it is (Gemini
normalises only the full-size output).
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import sys

__all__ = ["DEFAULT_DIMENSIONS", "as_base64", "full_dimensions", "vector"]

DEFAULT_DIMENSIONS = 1536
_FULL = {"text-embedding-3-large": 3072, "gemini-embedding-001": 3072, "text-embedding-004": 768}


def full_dimensions(model: str) -> int:
    """The size of ``model``'s full vector (3072 for text-embedding-3-large and
    gemini-embedding-001, 768 for text-embedding-004, else 1536)."""
    return _FULL.get(model, DEFAULT_DIMENSIONS)


def vector(
    text: str, model: str, dimensions: int | None = None, *, normalise: bool = True
) -> list[float]:
    """The vector of ``text`` under ``model``: the full one, or its first ``dimensions``
    values, of unit length unless ``normalise`` is False for a shortened one."""
    size = full_dimensions(model)
    seed = hashlib.sha256(f"{model}\0{text}".encode()).digest()
    raw = array.array("H", hashlib.shake_256(seed).digest(2 * size))
    values = [x / 32768.0 - 1.0 for x in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    values = [v / norm for v in values]
    if dimensions is None or dimensions >= size:
        return values
    short = values[:dimensions]
    if not normalise:
        return short
    norm = math.sqrt(sum(v * v for v in short)) or 1.0
    return [v / norm for v in short]


def as_base64(values: list[float]) -> str:
    """The vector as base64 of little-endian float32, as OpenAI's ``encoding_format``."""
    packed = array.array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()
