"""OpenAI embeddings (``POST {base}/embeddings``), shared by OpenAI, Azure and the
OpenAI-compatible services that offer the endpoint.

Request: ``{"model", "input": [texts], "encoding_format", "dimensions"?}`` and any extra
parameter at the top level. ``input_type`` is not in OpenAI's API and is left out;
generation parameters (``max_tokens``, ``temperature``...) are left out too. flyllm asks for
``encoding_format: "base64"`` where the service is known to take it (OpenAI and Azure, as the
official SDK does by default): little-endian float32, a quarter of the JSON floats' size and
read without parsing numbers (docs/embeddings.md has the figures). Other services get
``"float"``; the parser reads either form, whatever was asked.

Limits (the SDK's docstring of ``embeddings.create``): at most 2048 inputs per request,
300,000 tokens summed over them, 8192 tokens per input. ``dimensions`` is taken only by
text-embedding-3 and later: OpenAI and Azure refuse it for the older models before sending.

Errors are the chat classification's; a too-large request (``maximum context length`` for
one input, ``max_tokens_per_request`` for the sum) is a ContextLengthError, which the engine
answers by splitting the request.
"""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import InvalidRequestError
from flyllm.providers._common import add_extra, dumps, left_out, load_object, malformed
from flyllm.providers.base import EmbeddingLimits, Embeddings, HttpResponse
from flyllm.types import Usage

__all__ = ["OPENAI_EMBEDDING_LIMITS", "embed_body", "parse_embeddings", "vector_from"]

OPENAI_EMBEDDING_LIMITS = EmbeddingLimits(max_inputs=2048, max_tokens=300_000,
                                          max_input_tokens=8192)  # fmt: skip
"""OpenAI's limits for every embedding model."""

_GENERATION = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})
_SET_BY_FLYLLM = frozenset({"model", "input"})
_OLD_MODELS = ("text-embedding-ada", "text-similarity-", "text-search-")


def embed_body(
    model: str,
    inputs: Sequence[str],
    params: Mapping[str, Any],
    *,
    provider: str,
    base64_wire: bool,
    notes: list[str],
) -> bytes:
    """The JSON body of an embeddings request (see the module doc)."""
    body: dict[str, Any] = {
        "model": model,
        "input": list(inputs),
        "encoding_format": "base64" if base64_wire else "float",
    }
    for key, value in params.items():
        if value is None or key == "input_type":
            continue
        if key == "dimensions":
            if base64_wire and model.startswith(_OLD_MODELS):  # OpenAI's own models only
                raise InvalidRequestError(
                    f"{provider} model {model!r} takes no dimensions (text-embedding-3 and "
                    "later do); leave dimensions out or use another model"
                )
            body["dimensions"] = value
        elif key in _GENERATION or key in _SET_BY_FLYLLM:
            left_out(key, provider, notes, "is not an embeddings parameter")
        else:
            add_extra(body, key, value)
    return dumps(body)


def parse_embeddings(response: HttpResponse, provider: str, request_id: str | None) -> Embeddings:
    """A 2xx embeddings body -> Embeddings, vectors in the order of their ``index``."""
    data = load_object(response, provider, request_id)
    items = data.get("data")
    if not isinstance(items, list):
        raise malformed("no data list", provider, response, request_id)
    vectors: list[tuple[int, Sequence[float]]] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise malformed("an embedding that is not an object", provider, response, request_id)
        index = item.get("index", position)
        vector = vector_from(item.get("embedding"))
        if not isinstance(index, int) or isinstance(index, bool) or vector is None:
            raise malformed("an unreadable embedding", provider, response, request_id)
        vectors.append((index, vector))
    vectors.sort(key=lambda pair: pair[0])
    if [i for i, _ in vectors] != list(range(len(vectors))):
        raise malformed("embedding indexes that skip or repeat", provider, response, request_id)
    model = data.get("model")
    return Embeddings(
        tuple(v for _, v in vectors),
        _usage(data.get("usage")),
        model[:200] if isinstance(model, str) else None,
        request_id,
    )


def vector_from(value: Any) -> array.array[float] | None:
    """A float32 vector from a JSON array of numbers or a base64 string of little-endian
    float32; None when it is neither."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) % 4:
            return None
        vector = array.array("f", raw)
        if sys.byteorder == "big":
            vector.byteswap()
        return vector
    if isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        vector = array.array("f", value)
        # A number beyond float32 becomes infinity: an answer no embedding model gives.
        return None if any(math.isinf(x) for x in vector) else vector
    return None


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt = raw.get("prompt_tokens")
    total = raw.get("total_tokens")
    prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else 0
    total = total if isinstance(total, int) and not isinstance(total, bool) else prompt
    return Usage(prompt_tokens=max(prompt, 0), total_tokens=max(total, 0))
