"""OpenAI's embeddings API as a client protocol: ``POST /v1/embeddings`` over
``LlmManager.embed``.

Requests: ``model`` (a task or an alias), ``input`` as a string or an array of strings (token
arrays are refused: the pool's providers tokenize differently), ``dimensions``,
``encoding_format`` ("float" or "base64": little-endian float32, as OpenAI's API sends it)
and ``user`` (accepted, not forwarded). ``input_type`` ("document" or "query") is flyllm's
extension, not OpenAI's: it reaches the providers with that notion (Cohere, Gemini). Answers
are OpenAI's ``list`` of ``embedding`` objects, in input order, with ``usage``.
"""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flyllm.server.errors import bad_request
from flyllm.types import EmbeddingRequest, EmbeddingResult

__all__ = ["EmbedCall", "OpenAIEmbeddings"]

_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "input_type", "user"})
_INPUT_TYPES = (None, "document", "query")


@dataclass(slots=True, frozen=True)
class EmbedCall:
    """One embeddings request, read: ``request`` has no task yet (the handler resolves
    ``model``); ``base64`` says how to encode the vectors."""

    request: EmbeddingRequest
    model: str
    base64: bool = False


class OpenAIEmbeddings:
    """Reads ``/v1/embeddings`` bodies and renders results in OpenAI's shapes. Pure."""

    def parse(self, body: Any) -> EmbedCall:
        """The body as an EmbedCall; a 400 naming the field when it cannot be served."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        unknown = next((k for k in body if k not in _FIELDS), None)
        if unknown is not None:
            raise bad_request(f"unrecognized request argument supplied: {unknown!r}", unknown)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("'model' is required: the name of a task (or alias)", "model")
        dimensions, fmt = body.get("dimensions"), body.get("encoding_format") or "float"
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise bad_request("'dimensions' must be a positive integer", "dimensions")
        if fmt not in ("float", "base64"):
            raise bad_request("'encoding_format' must be 'float' or 'base64'", "encoding_format")
        input_type = body.get("input_type")
        if input_type not in _INPUT_TYPES:
            raise bad_request("'input_type' (flyllm's extension) must be 'document' or "
                              "'query'", "input_type")  # fmt: skip
        request = EmbeddingRequest(_inputs(body.get("input")), None, dimensions, input_type)
        return EmbedCall(request, model, fmt == "base64")

    def render(self, call: EmbedCall, result: EmbeddingResult) -> dict[str, Any]:
        """OpenAI's ``list`` object: one ``embedding`` per input, in order."""
        encode = _base64 if call.base64 else _floats
        data = [
            {"object": "embedding", "index": i, "embedding": encode(v)}
            for i, v in enumerate(result.vectors)
        ]
        tokens = result.usage.prompt_tokens
        return {
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _inputs(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value:
        raise bad_request("'input' must be a string or a non-empty array of strings", "input")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            tokens = isinstance(item, int | list)
            why = "token arrays are not supported: send text" if tokens else "must be a string"
            raise bad_request(f"input[{i}]: {why}", "input")
    return value


def _floats(vector: Sequence[float]) -> list[float]:
    return vector.tolist() if isinstance(vector, array.array) else list(vector)


def _base64(vector: Sequence[float]) -> str:
    """Little-endian float32, base64: what OpenAI's API sends and its SDKs decode."""
    packed = vector if isinstance(vector, array.array) else array.array("f", vector)
    if packed.typecode != "f":
        packed = array.array("f", packed)
    if sys.byteorder != "little":
        packed = array.array("f", packed)
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
