"""Mistral embeddings (``POST {base}/v1/embeddings``), after the ``mistralai`` SDK's
``embeddings.create`` (``EmbeddingRequest``, ``EmbeddingResponse``).

Request: ``{"model", "input": [texts], "output_dimension"?}`` and any extra parameter at the
top level (``metadata``, ``encoding_format``...; the API rejects unknown fields with a 422).
``dimensions`` becomes ``output_dimension``, which only codestral-embed takes (1 to 3072,
default 1536); asking it of another model is an InvalidRequestError before sending (a newer
model that takes it can be sent ``output_dimension`` as an extra parameter). Mistral has no
notion of ``input_type``: it is left out. Generation parameters are left out with a note.
Vectors come as JSON floats (the API's default ``encoding_format``; the SDK's response model
reads no other form); ``output_dtype`` other than "float" (int8, binary...) is refused, since
flyllm hands out float32 vectors.

Answer: OpenAI's shape (``data[{embedding, index}]``, ``model``, ``usage.prompt_tokens``),
read by :func:`flyllm.providers.openai_embed.parse_embeddings`; vectors of different lengths
or empty ones are malformed.

Limits (none is in the SDK; where each comes from): 16,384 tokens summed per request (the
API's own answer "Too many tokens in batch. Max is 16384"), 8192 tokens per input
(mistral-embed's and codestral-embed's context length, Mistral's model cards), 512 inputs a
request (no documented count: flyllm's choice, rarely binding under the token limit). A
too-large request ("Too many tokens overall, split into more batches.", or one input over the
model's context) is a ContextLengthError, which the engine answers by splitting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.providers._common import add_extra, dumps, left_out, malformed
from flyllm.providers.base import EmbeddingLimits, Embeddings, HttpResponse
from flyllm.providers.openai_embed import parse_embeddings

__all__ = ["MISTRAL_EMBEDDING_LIMITS", "MISTRAL_MAX_DIMENSIONS", "embed_body", "parse_vectors"]

MISTRAL_MAX_DIMENSIONS = 3072
"""codestral-embed's largest ``output_dimension``."""

MISTRAL_EMBEDDING_LIMITS = EmbeddingLimits(
    max_inputs=512,
    max_tokens=16_384,
    max_input_tokens=8192,
    max_dimensions=MISTRAL_MAX_DIMENSIONS,
    bytes_per_value=24.0,  # JSON floats
)
"""Mistral's limits (see the module doc for where each number comes from)."""

_GENERATION = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})
_SET_BY_FLYLLM = frozenset({"model", "input"})
_DIMENSION_MODELS = ("codestral-embed",)


def embed_body(
    model: str, inputs: Sequence[str], params: Mapping[str, Any], notes: list[str]
) -> bytes:
    """The JSON body of an embeddings request (see the module doc)."""
    body: dict[str, Any] = {"model": model, "input": list(inputs)}
    for key, value in params.items():
        if value is None or key == "input_type":  # no such notion at Mistral
            continue
        if key == "dimensions":
            body["output_dimension"] = _output_dimension(model, value)
        elif key in _GENERATION or key in _SET_BY_FLYLLM:
            left_out(key, "mistral", notes, "is not an embeddings parameter")
        elif key == "output_dtype" and value != "float":
            raise InvalidRequestError(
                f"mistral output_dtype {value!r} is not supported: flyllm returns float32 "
                "vectors; leave output_dtype out"
            )
        else:
            add_extra(body, key, value)
    return dumps(body)


def _output_dimension(model: str, dimensions: Any) -> int:
    if not model.startswith(_DIMENSION_MODELS):
        raise InvalidRequestError(
            f"mistral model {model!r} takes no dimensions (codestral-embed does); leave "
            "dimensions out or use codestral-embed"
        )
    if not isinstance(dimensions, int) or isinstance(dimensions, bool):
        raise InvalidRequestError(f"dimensions must be an integer, got {dimensions!r}")
    if not 1 <= dimensions <= MISTRAL_MAX_DIMENSIONS:
        raise InvalidRequestError(
            f"mistral model {model!r} takes dimensions from 1 to {MISTRAL_MAX_DIMENSIONS}, "
            f"got {dimensions}"
        )
    return dimensions


def parse_vectors(response: HttpResponse, request_id: str | None) -> Embeddings:
    """A 2xx embeddings body -> Embeddings in input order; MalformedResponseError for an
    unreadable answer or vectors that are empty or of different lengths."""
    embeddings = parse_embeddings(response, "mistral", request_id)
    sizes = {len(v) for v in embeddings.vectors}
    if 0 in sizes or len(sizes) > 1:
        raise malformed("vectors of different or no lengths", "mistral", response, request_id)
    return embeddings
