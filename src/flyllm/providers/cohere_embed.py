"""Cohere embeddings v2 (``POST {base}/v2/embed``), used by :class:`CohereProvider`.

Request: ``{"model", "texts", "input_type", "embedding_types": ["float"], "truncate":
"NONE", "output_dimension"?}`` and any extra parameter at the top level (``priority``...).

- ``input_type`` is required by Cohere: "document" -> ``search_document``, "query" ->
  ``search_query``, none -> ``search_document`` (what a corpus being embedded is); Cohere's
  own values (``classification``, ``clustering``) pass through from instance or task
  parameters. Anything else is an InvalidRequestError before sending.
- ``dimensions`` -> ``output_dimension``, taken by embed-v4 and newer only, with 256, 512,
  1024 or 1536; the v3 and older models (``embed-english...``, ``embed-multilingual...``)
  refuse it before sending.
- ``truncate: "NONE"`` unless the caller sets ``truncate``: Cohere's default (END) would cut
  a long text silently; with NONE it answers "too many tokens", a ContextLengthError, and the
  engine splits the request down to that one input, as for every other provider.
- ``embedding_types: ["float"]``: the only type every Embed model returns and whose wire form
  the official SDK pins (``List[List[float]]``); its ``base64`` form is not specified to the
  byte order, so flyllm does not rely on it.

Answer: ``embeddings.float`` (one vector per text, in input order), usage from
``meta.billed_units`` (else ``meta.tokens``), ``id`` as the request id.

Limits: 96 texts per request (the SDK's docstring of ``embed`` and its ``embed_batch_size``);
128,000 tokens, embed-v4's context, per input and, as Oracle's Cohere docs say, summed over a
request; embed-v3 models take 512 per input, which the API refuses ("too many tokens") and
the engine splits; 1536 values at most (embed-v4's default size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.providers._common import (
    add_extra,
    as_str,
    bearer_headers,
    count,
    dumps,
    join_url,
    left_out,
    load_object,
    malformed,
)
from flyllm.providers.base import EmbeddingLimits, Embeddings, Endpoint, HttpRequest, HttpResponse
from flyllm.providers.openai_embed import vector_from
from flyllm.types import Usage

__all__ = ["COHERE_EMBEDDING_LIMITS", "INPUT_TYPES", "embed_request", "parse_embeddings"]

COHERE_EMBEDDING_LIMITS = EmbeddingLimits(
    max_inputs=96, max_tokens=128_000, max_input_tokens=128_000, max_dimensions=1536
)
"""Cohere's limits (see the module doc for where each number comes from)."""

INPUT_TYPES = {"document": "search_document", "query": "search_query"}
"""flyllm's ``input_type`` -> Cohere's."""

_NATIVE_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
_V4_DIMENSIONS = (256, 512, 1024, 1536)
_OLD_MODELS = ("embed-english", "embed-multilingual", "embed-v2", "embed-v3")
_GENERATION = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})
_SET_BY_FLYLLM = frozenset(
    {"model", "texts", "images", "inputs", "embedding_types", "output_dimension"}
)


def embed_request(
    endpoint: Endpoint, inputs: Sequence[str], params: Mapping[str, Any]
) -> HttpRequest:
    """The POST to ``{base_url}/v2/embed`` for these texts (see the module doc)."""
    notes: list[str] = []
    model = endpoint.model
    body: dict[str, Any] = {
        "model": model,
        "texts": list(inputs),
        "input_type": _input_type(params.get("input_type")),
        "embedding_types": ["float"],
        "truncate": "NONE",
    }
    for key, value in params.items():
        if value is None or key == "input_type":
            continue
        if key == "dimensions":
            body["output_dimension"] = _dimensions(model, value)
        elif key in _GENERATION:
            left_out(key, "cohere", notes, "is not an embeddings parameter")
        elif key in _SET_BY_FLYLLM:
            left_out(key, "cohere", notes, "is set by flyllm (use dimensions for output_dimension)")
        elif key == "truncate":
            body["truncate"] = value
        else:
            add_extra(body, key, value)
    url = join_url(endpoint.base_url or "https://api.cohere.com", "/v2/embed")
    return HttpRequest("POST", url, bearer_headers(endpoint, False), dumps(body), tuple(notes))


def _input_type(value: Any) -> str:
    """Cohere's ``input_type`` for flyllm's (``search_document`` when none is given)."""
    if value is None:
        return "search_document"
    if isinstance(value, str) and (value in INPUT_TYPES or value in _NATIVE_TYPES):
        return INPUT_TYPES.get(value, value)
    raise InvalidRequestError(
        f"cohere takes input_type 'document' or 'query' (or its own {sorted(_NATIVE_TYPES)}), "
        f"got {value!r}"
    )


def _dimensions(model: str, value: Any) -> int:
    """``output_dimension`` for ``model``; InvalidRequestError where it cannot be taken."""
    if model.startswith(_OLD_MODELS):
        raise InvalidRequestError(
            f"cohere model {model!r} takes no dimensions (embed-v4 and later do); leave "
            "dimensions out or use embed-v4.0"
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"dimensions must be a whole number, got {value!r}")
    if model.startswith("embed-v4") and value not in _V4_DIMENSIONS:
        raise InvalidRequestError(
            f"cohere model {model!r} takes dimensions 256, 512, 1024 or 1536, not {value!r}"
        )
    return value


def parse_embeddings(response: HttpResponse) -> Embeddings:
    """A 2xx ``/v2/embed`` body -> Embeddings (``embeddings.float`` in input order)."""
    data = load_object(response, "cohere", None)
    rid = as_str(data.get("id"))
    embeddings = data.get("embeddings")
    items = embeddings.get("float") if isinstance(embeddings, dict) else None
    if not isinstance(items, list):
        raise malformed("no embeddings.float list", "cohere", response, rid)
    vectors = []
    for item in items:
        vector = vector_from(item) if isinstance(item, list) else None
        if vector is None:
            raise malformed("an unreadable embedding", "cohere", response, rid)
        vectors.append(vector)
    return Embeddings(tuple(vectors), _usage(data.get("meta")), None, rid)


def _usage(meta: Any) -> Usage:
    """Input tokens from ``meta.billed_units`` (what is billed), else ``meta.tokens``."""
    if not isinstance(meta, dict):
        return Usage()
    counts = meta.get("billed_units")
    if not isinstance(counts, dict) or "input_tokens" not in counts:
        counts = meta.get("tokens")
    tokens = count(counts.get("input_tokens")) if isinstance(counts, dict) else 0
    return Usage(prompt_tokens=tokens, total_tokens=tokens)
