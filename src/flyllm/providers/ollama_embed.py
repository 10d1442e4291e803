"""Ollama embeddings (``POST {base}/api/embed``), the wire of the official SDK's ``embed``.

Request: ``{"model", "input": [texts], "truncate": false, "dimensions"?}`` and any extra
parameter at the top level (``keep_alive``, ``options``...). Ollama truncates an input longer
than the model's context by default, which yields the vector of a different text without a
word; flyllm sends ``truncate: false`` so that such an input fails as a ContextLengthError
instead (give ``truncate=True`` as a parameter to have Ollama cut it). ``dimensions`` is
sent for any model: the server keeps the first values and normalises them again, which is
meaningful only for models trained for it (nomic-embed-text v1.5, qwen3-embedding...); the
server itself refuses no model, so neither does flyllm. ``input_type`` has no Ollama
equivalent (models that want a prefix such as ``search_query:`` take it inside the text) and
is left out; generation parameters are left out with a note.

Answer: ``{"model", "embeddings": [[floats]...], "prompt_eval_count", ...}``, vectors in
input order; usage is ``prompt_eval_count`` (0, unknown, when the server leaves it out).

Limits: Ollama documents none per request (a local server embeds whatever it is sent, one
input at a time within the model's context). flyllm caps a request at 512 inputs and 131,072
estimated tokens so that one request stays well within the transport's timeout on a modest
machine, and at 8192 tokens per input (nomic-embed-text's context, the largest common one;
the loaded model's ``num_ctx`` is what the server really judges). Vectors come as JSON floats
of up to 4096 values (qwen3-embedding:8b's full size), each at most 16 bytes (Go writes a
float32 in its shortest form, 15 characters at most, and a comma), which sizes the answer
cap: about 460 full-size vectors a request with the default 32 MiB, all 512 below ~3,600
``dimensions``.
"""

from __future__ import annotations

import array
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.providers._common import (
    add_extra,
    count,
    dumps,
    left_out,
    load_object,
    malformed,
    served_model,
)
from flyllm.providers.base import EmbeddingLimits, Embeddings, HttpResponse
from flyllm.providers.openai_embed import vector_from
from flyllm.types import Usage

__all__ = ["OLLAMA_EMBEDDING_LIMITS", "ollama_embed_body", "parse_ollama_embeddings"]

OLLAMA_EMBEDDING_LIMITS = EmbeddingLimits(max_inputs=512, max_tokens=131_072,
                                          max_input_tokens=8192, max_dimensions=4096,
                                          bytes_per_value=16.0)  # fmt: skip
"""flyllm's caps for an Ollama request (Ollama has none; see the module doc)."""

_GENERATION = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})
_SET_BY_FLYLLM = frozenset({"model", "input", "stream"})


def ollama_embed_body(
    model: str, inputs: Sequence[str], params: Mapping[str, Any], notes: list[str]
) -> bytes:
    """The JSON body of an ``/api/embed`` request (see the module doc)."""
    body: dict[str, Any] = {"model": model, "input": list(inputs), "truncate": False}
    for key, value in params.items():
        if value is None or key == "input_type":  # no such notion on Ollama
            continue
        if key in _GENERATION or key in _SET_BY_FLYLLM:
            left_out(key, "ollama", notes, "is not an embeddings parameter")
        else:  # dimensions, truncate, keep_alive, options...
            add_extra(body, key, value)
    return dumps(body)


def parse_ollama_embeddings(response: HttpResponse) -> Embeddings:
    """A 2xx ``/api/embed`` body -> Embeddings; MalformedResponseError when ``embeddings`` is
    not a list of equally long, non-empty lists of numbers."""
    data = load_object(response, "ollama", None)
    items = data.get("embeddings")
    if not isinstance(items, list):
        raise malformed("no embeddings list", "ollama", response)
    vectors: list[array.array[float]] = []
    for item in items:
        vector = vector_from(item) if isinstance(item, list) and item else None
        if vector is None:
            raise malformed("an unreadable embedding", "ollama", response)
        if vectors and len(vector) != len(vectors[0]):
            raise malformed("embeddings of different sizes", "ollama", response)
        vectors.append(vector)
    prompt = count(data.get("prompt_eval_count"))
    usage = Usage(prompt_tokens=prompt, total_tokens=prompt)
    return Embeddings(tuple(vectors), usage, served_model(data.get("model")), None)
