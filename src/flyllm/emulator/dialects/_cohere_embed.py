"""Cohere's embeddings v2 (``POST /v2/embed``) for the Cohere dialect.

Checks as the API does: known fields only; ``model``; ``input_type`` required (Cohere's
documented "valid input_type must be provided with the provided model"); ``texts`` 1 to 96
non-empty strings ("total number of texts must be at most 96 - received N", documented);
``output_dimension`` only on embed-v4 and only 256/512/1024/1536; ``embedding_types``
(default ``["float"]``; the emulator serves ``float`` and ``base64``, little-endian float32);
``truncate`` NONE, START or END (default END, as the API). A text over the model's limit
(128,000 tokens on embed-v4, 512 on the v3 models, or the emulator's ``context_window``) is
cut with START/END and refused with NONE as "too many tokens: ..."; more than 128,000 tokens
summed is "too many tokens: size limit exceeded by N tokens..." (the documented wording).
Images and mixed ``inputs`` are not emulated (a 400 says so).

Vectors come from :mod:`flyllm.emulator.embeddings`, unit length at every size (embed-v4:
1536 values, v3: 1024, light models: 384); usage is ``meta.billed_units.input_tokens`` =
words embedded.
"""

from __future__ import annotations

from typing import Any

from flyllm.emulator.embeddings import as_base64, vector

__all__ = ["MAX_TEXTS", "embed_body"]

MAX_TEXTS = 96
MAX_REQUEST_TOKENS = 128_000
_FIELDS = "model input_type texts images inputs max_tokens output_dimension embedding_types"
FIELDS = frozenset([*_FIELDS.split(), "truncate", "priority"])
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")
V4_DIMENSIONS = (256, 512, 1024, 1536)
NOT_EMBEDDERS = ("command", "c4ai", "rerank")

Problem = tuple[int, str]


def full_size(model: str) -> tuple[int, int]:
    """(values in a vector, tokens one text may have) of ``model``."""
    if model.startswith("embed-v4"):
        return 1536, 128_000
    return (384 if "light" in model else 1024), 512


def embed_body(body: dict[str, Any], input_limit: int | None) -> dict[str, Any] | Problem:
    """The answer's body (without ``id``), or (status, message) for what the API refuses."""
    problem = _check(body)
    if problem:
        return 400, f"invalid request: {problem}"
    model, texts = body["model"], body["texts"]
    size, limit = full_size(model)
    limit = input_limit or limit
    dims = body.get("output_dimension") or size
    kept = []
    for i, text in enumerate(texts):
        words = text.split()
        if len(words) > limit and body.get("truncate", "END") == "NONE":
            return 400, (
                f"too many tokens: text at index {i} has {len(words)} tokens, the maximum for "
                f"this model is {limit}. Use shorter texts, or set truncate to END or START."
            )
        kept.append(text if len(words) <= limit else " ".join(_cut(words, limit, body)))
    total = sum(len(t.split()) for t in kept)
    if total > MAX_REQUEST_TOKENS:
        return 400, (
            f"too many tokens: size limit exceeded by {total - MAX_REQUEST_TOKENS} tokens. Try "
            "using shorter or fewer inputs, or setting prompt_truncation='AUTO'."
        )
    vectors = [vector(t, model, dims) for t in kept]
    types = body.get("embedding_types") or ["float"]
    embeddings = {
        kind: [as_base64(v) for v in vectors] if kind == "base64" else vectors for kind in types
    }
    return {
        "embeddings": embeddings,
        "texts": texts,
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": total}},
        "response_type": "embeddings_by_type",
    }


def _cut(words: list[str], limit: int, body: dict[str, Any]) -> list[str]:
    return words[-limit:] if body.get("truncate") == "START" else words[:limit]


def _check(body: dict[str, Any]) -> str | None:
    """The first problem with the request, as the API words it."""
    for name in body:
        if name not in FIELDS:
            return f"unknown field: parameter {name} is not a valid field"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "a model parameter is required for this endpoint."
    if model.startswith(NOT_EMBEDDERS):
        return f"model '{model}' is not supported by the embed API"
    if body.get("input_type") not in INPUT_TYPES:
        return "valid input_type must be provided with the provided model"
    if body.get("images") is not None or body.get("inputs") is not None:
        return "the emulator embeds texts only (no images or inputs)"
    return _check_texts(body.get("texts")) or _check_output(body, model)


def _check_texts(texts: Any) -> str | None:
    if not isinstance(texts, list) or not texts:
        return "texts must be a non-empty list of strings"
    if len(texts) > MAX_TEXTS:
        return f"total number of texts must be at most {MAX_TEXTS} - received {len(texts)}"
    if not all(isinstance(t, str) and t.strip() for t in texts):
        return "texts must not contain empty strings"
    return None


def _check_output(body: dict[str, Any], model: str) -> str | None:
    dims = body.get("output_dimension")
    if dims is not None and not model.startswith("embed-v4"):
        return "output_dimension is only supported for embed-v4 and newer models"
    if dims is not None and (isinstance(dims, bool) or dims not in V4_DIMENSIONS):
        return "output_dimension must be one of 256, 512, 1024, 1536"
    types = body.get("embedding_types")
    if types is not None and (
        not isinstance(types, list) or not types or any(t not in TYPES for t in types)
    ):
        return f"embedding_types must be a list of {', '.join(TYPES)}"
    if types is not None and any(t not in ("float", "base64") for t in types):
        return "the emulator serves embedding_types float and base64 only"
    if body.get("truncate", "END") not in ("NONE", "START", "END"):
        return "truncate must be one of NONE, START, END"
    return None
