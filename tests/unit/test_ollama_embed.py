"""Ollama's embeddings translation (``/api/embed``) on wire bodies: build_embed, parse_embed
and the classification of its refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import (
    ContextLengthError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
)
from flyllm.providers import get_provider
from flyllm.providers.base import EmbeddingProvider, Endpoint, HttpResponse
from flyllm.providers.ollama import OLLAMA_BASE_URL
from flyllm.providers.ollama_embed import OLLAMA_EMBEDDING_LIMITS
from flyllm.types import Usage
from tests.fixtures import API_KEY, fixture_json, response

MODEL = "nomic-embed-text:latest"


def ollama() -> EmbeddingProvider:
    impl = get_provider("ollama")
    assert "embeddings" in impl.capabilities
    return impl  # type: ignore[return-value]


def body(raw: bytes) -> dict[str, Any]:
    data = json.loads(raw)
    assert isinstance(data, dict)
    return data


def answer(payload: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {}, json.dumps(payload).encode())


def test_the_request_is_the_fixtures_shape_with_truncate_off_and_input_type_left_out() -> None:
    endpoint = Endpoint(MODEL, "", OLLAMA_BASE_URL)
    params = {"dimensions": 4, "input_type": "query", "keep_alive": "10m", "temperature": 0.2}
    request = ollama().build_embed(
        endpoint, ["Why is the sky blue?", "search_query: rayleigh"], params
    )
    assert request.method == "POST" and request.url == "http://localhost:11434/api/embed"
    assert body(request.body) == fixture_json("ollama", "request_embed.json")
    assert "authorization" not in request.headers  # a local server needs no key
    assert request.notes == ("temperature is not an embeddings parameter; left out",)


def test_a_caller_may_let_ollama_truncate_and_a_key_goes_as_bearer() -> None:
    endpoint = Endpoint(MODEL, API_KEY, "https://ollama.com")
    request = ollama().build_embed(endpoint, ["a"], {"truncate": True, "input_type": "document"})
    assert request.url == "https://ollama.com/api/embed"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert body(request.body) == {"model": MODEL, "input": ["a"], "truncate": True}


def test_parse_reads_the_vectors_in_order_as_float32_with_the_usage() -> None:
    got = ollama().parse_embed(response("ollama", "embed.json"))
    assert len(got.vectors) == 2 and all(len(v) == 4 for v in got.vectors)
    assert got.vectors[0].typecode == "f"  # type: ignore[attr-defined]
    assert abs(got.vectors[0][2] - 0.05007221) < 1e-7 and got.vectors[1][0] < 0
    assert got.usage == Usage(prompt_tokens=8, total_tokens=8)
    assert got.model == "nomic-embed-text" and got.request_id is None


def test_an_answer_without_a_count_has_unknown_usage() -> None:
    got = ollama().parse_embed(answer({"model": MODEL, "embeddings": [[0.5, 0.5]]}))
    assert got.usage == Usage() and list(got.vectors[0]) == [0.5, 0.5]


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"model": MODEL},
        {"embeddings": "nope"},
        {"embeddings": [[0.1, "x"]]},
        {"embeddings": [[]]},
        {"embeddings": ["AAAAPw=="]},  # base64 is not Ollama's form
        {"embeddings": [[0.1, 0.2], [0.3]]},
        {"embeddings": [[1e39]]},  # beyond float32
        {"embeddings": [[True]]},
    ],
)
def test_malformed_answers_are_typed(payload: object) -> None:
    with pytest.raises(MalformedResponseError):
        ollama().parse_embed(answer(payload))


def test_a_too_long_input_is_a_context_length_error_the_engine_splits_on() -> None:
    with pytest.raises(ContextLengthError, match="exceeds the context length"):
        ollama().parse_embed(response("ollama", "error_context.json", 400))
    with pytest.raises(ContextLengthError):  # the wording of newer servers
        ollama().parse_embed(answer({"error": "input exceeds maximum context length"}, 500))
    with pytest.raises(NotFoundError, match="not found"):
        ollama().parse_embed(response("ollama", "error_not_found.json", 404))
    with pytest.raises(OverloadedError):
        ollama().parse_embed(response("ollama", "error_busy.json", 503))


def test_a_key_echoed_in_an_error_is_redacted() -> None:
    endpoint = Endpoint(MODEL, API_KEY, "https://ollama.com")
    echoed = answer({"error": f"bad token {API_KEY}"}, 401)
    with pytest.raises(Exception) as caught:
        ollama().parse_embed(echoed, endpoint)
    assert API_KEY not in str(caught.value) and API_KEY not in repr(caught.value)


def test_the_limits_are_flyllms_caps() -> None:
    assert ollama().embedding_limits == OLLAMA_EMBEDDING_LIMITS
    assert OLLAMA_EMBEDDING_LIMITS.bytes_per_value == 16.0
    assert (OLLAMA_EMBEDDING_LIMITS.max_inputs, OLLAMA_EMBEDDING_LIMITS.max_tokens) == (
        512,
        131_072,
    )
    assert OLLAMA_EMBEDDING_LIMITS.max_dimensions == 4096
