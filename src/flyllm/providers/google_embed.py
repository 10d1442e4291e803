"""Gemini embeddings: ``POST {base}/{api_version}/models/{model}:batchEmbedContents``.

The official google-genai SDK sends ``embed_content`` to this one method for the Gemini API,
one input or many (``models.py``: ``_EmbedContentParametersPrivate_to_mldev``), and flyllm
does the same. Request: ``{"requests": [{"model": "models/{model}", "content": {"parts":
[{"text": ...}]}, "taskType"?, "outputDimensionality"?}, ...]}``, one entry per input, each
naming the URL's model. Answer: ``{"embeddings": [{"values": [floats]}, ...]}`` in request
order, and ``usageMetadata.promptTokenCount`` when the API reports usage (when it does not,
the engine estimates it and says so).

Parameters: ``input_type`` "document" -> ``taskType: RETRIEVAL_DOCUMENT``, "query" ->
``RETRIEVAL_QUERY``; a ``task_type`` (or ``taskType``) given as a parameter wins (Gemini has
more: SEMANTIC_SIMILARITY, CLASSIFICATION, CLUSTERING...). ``dimensions`` ->
``outputDimensionality``, refused before sending for the models that cannot take it: the
first generation (``embedding-001``, ``embedding-gecko-001``; the SDK's docstring of
``output_dimensionality``) and more than a known model's full size (3072 for
gemini-embedding-001, 768 for text-embedding-004). Gemini normalises only the full-size
vector; shorter ones come as they are (normalise them yourself for cosine similarity).
``title`` and other extras go into every request entry; generation parameters are left out.

Limits: 100 inputs per request (the API's 400 "at most 100 requests can be in one batch",
as users report it), 2048 tokens per input (gemini-embedding-001 and text-embedding-004, from
Google's model pages), and no documented sum, so 100 x 2048. Too large is a
ContextLengthError: the API's "input token count ... exceeds the maximum" (classified by the
provider) and the batch-size 400, so the engine splits and retries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.errors import ContextLengthError, InvalidRequestError, ProviderError
from flyllm.providers._common import add_extra, count, dumps, left_out, load_object, malformed
from flyllm.providers.base import EmbeddingLimits, Embeddings, HttpResponse
from flyllm.providers.openai_embed import vector_from
from flyllm.types import Usage

__all__ = ["GOOGLE_EMBEDDING_LIMITS", "embed_body", "parse_embeddings", "too_large"]

GOOGLE_EMBEDDING_LIMITS = EmbeddingLimits(max_inputs=100, max_tokens=100 * 2048,
                                          max_input_tokens=2048)  # fmt: skip
"""Gemini's limits (see the module doc for where each number comes from)."""

TASK_TYPES = {"document": "RETRIEVAL_DOCUMENT", "query": "RETRIEVAL_QUERY"}
"""flyllm's ``input_type`` -> Gemini's ``taskType``."""

_FULL_SIZE = {"gemini-embedding-001": 3072, "text-embedding-004": 768}
_NO_DIMENSIONS = ("embedding-001", "embedding-gecko-001")
_GENERATION = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop", "seed"})
_SET_BY_FLYLLM = frozenset({"model", "content", "requests"})
_CAMEL = {"task_type": "taskType", "output_dimensionality": "outputDimensionality"}
_BATCH_TOO_BIG = re.compile(r"at most \d+ requests can be in (?:one|a) batch", re.IGNORECASE)


def embed_body(
    model: str, resource: str, inputs: Sequence[str], params: Mapping[str, Any], notes: list[str]
) -> bytes:
    """The JSON body of a ``batchEmbedContents`` request (see the module doc); ``resource``
    is the model's path ("models/x"). InvalidRequestError for a ``dimensions`` the model
    cannot take."""
    entry: dict[str, Any] = {"model": resource}
    extras: list[tuple[str, Any]] = []
    for key, value in params.items():
        if value is None:
            continue
        if key == "input_type":
            entry.setdefault("taskType", TASK_TYPES.get(value, value))
        elif key == "dimensions":
            _check_dimensions(model, value)
            entry["outputDimensionality"] = value
        elif key in _GENERATION or key in _SET_BY_FLYLLM:
            left_out(key, "google", notes, "is not an embeddings parameter")
        else:
            extras.append((_CAMEL.get(key, key), value))
    for key, value in extras:  # a caller's taskType wins over the input_type mapping
        add_extra(entry, key, value)
    requests = [{**entry, "content": {"parts": [{"text": text}]}} for text in inputs]
    return dumps({"requests": requests})


def _check_dimensions(model: str, value: Any) -> None:
    name = model.rpartition("/")[2]
    if name.startswith(_NO_DIMENSIONS):
        raise InvalidRequestError(
            f"google model {model!r} takes no dimensions (text-embedding-004, "
            "gemini-embedding-001 and later do); leave dimensions out or use another model"
        )
    full = next((size for known, size in _FULL_SIZE.items() if name.startswith(known)), None)
    if full is not None and isinstance(value, int) and value > full:
        raise InvalidRequestError(
            f"google model {model!r} makes vectors of at most {full} values; "
            f"dimensions {value} is more"
        )


def parse_embeddings(response: HttpResponse, provider: str) -> Embeddings:
    """A 2xx ``batchEmbedContents`` body -> Embeddings, in the order of the answer (which is
    the order of the requests)."""
    data = load_object(response, provider, None)
    items = data.get("embeddings")
    if not isinstance(items, list):
        raise malformed("no embeddings list", provider, response)
    vectors = []
    for item in items:
        values = item.get("values") if isinstance(item, dict) else None
        vector = vector_from(values) if isinstance(values, list) else None
        if vector is None or not vector:
            raise malformed("an unreadable embedding", provider, response)
        vectors.append(vector)
    meta = data.get("usageMetadata")
    prompt = count(meta.get("promptTokenCount")) if isinstance(meta, dict) else 0
    total = (count(meta.get("totalTokenCount")) if isinstance(meta, dict) else 0) or prompt
    return Embeddings(tuple(vectors), Usage(prompt_tokens=prompt, total_tokens=total))


def too_large(error: ProviderError) -> ProviderError:
    """The batch-size 400 as a ContextLengthError (so the engine splits the request); any
    other error unchanged."""
    if error.status == 400 and _BATCH_TOO_BIG.search(error.message):
        return ContextLengthError(error.message, status=400, provider=error.provider)
    return error
