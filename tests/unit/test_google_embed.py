"""Gemini's embeddings translation on wire bodies: build_embed and parse_embed."""

from __future__ import annotations

import json

import pytest

from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    MalformedResponseError,
    RateLimitError,
)
from flyllm.providers import get_provider
from flyllm.providers.base import EmbeddingProvider, Endpoint, HttpResponse
from tests.fixtures import response

KEY = "-".join(["AIza", "unit", "embed", "0123456789"])
MODEL = "gemini-embedding-001"
BASE = "https://generativelanguage.googleapis.com"


def google() -> EmbeddingProvider:
    impl = get_provider("google")
    assert "embeddings" in impl.capabilities
    return impl  # type: ignore[return-value]


def endpoint(model: str = MODEL, **kw: object) -> Endpoint:
    return Endpoint(model, KEY, BASE, **kw)  # type: ignore[arg-type]


def body(request_body: bytes) -> dict[str, object]:
    data = json.loads(request_body)
    assert isinstance(data, dict)
    return data


def answer(payload: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {}, json.dumps(payload).encode())


def test_one_request_entry_per_input_with_task_type_and_dimensions() -> None:
    params = {"dimensions": 768, "input_type": "document", "max_tokens": 9, "title": "T"}
    request = google().build_embed(endpoint(), ["a", "b"], params)
    assert request.method == "POST"
    assert request.url == f"{BASE}/v1/models/{MODEL}:batchEmbedContents"
    assert request.headers["x-goog-api-key"] == KEY
    entry = {"model": f"models/{MODEL}", "taskType": "RETRIEVAL_DOCUMENT",
             "outputDimensionality": 768, "title": "T"}  # fmt: skip
    assert body(request.body) == {
        "requests": [
            {**entry, "content": {"parts": [{"text": "a"}]}},
            {**entry, "content": {"parts": [{"text": "b"}]}},
        ]
    }
    assert request.notes == ("max_tokens is not an embeddings parameter; left out",)


def test_query_maps_to_retrieval_query_and_a_given_task_type_wins() -> None:
    query = google().build_embed(endpoint(), ["q"], {"input_type": "query"})
    assert body(query.body)["requests"][0]["taskType"] == "RETRIEVAL_QUERY"  # type: ignore[index]
    chosen = google().build_embed(
        endpoint(api_version="v1beta"), ["q"],
        {"input_type": "query", "task_type": "SEMANTIC_SIMILARITY"},
    )  # fmt: skip
    assert chosen.url.startswith(f"{BASE}/v1beta/models/")
    assert body(chosen.body)["requests"][0]["taskType"] == "SEMANTIC_SIMILARITY"  # type: ignore[index]
    plain = google().build_embed(endpoint(), ["q"], {})
    assert body(plain.body)["requests"] == [  # nothing flyllm was not asked for
        {"model": f"models/{MODEL}", "content": {"parts": [{"text": "q"}]}}
    ]


@pytest.mark.parametrize(
    ("model", "dimensions", "says"),
    [
        ("embedding-001", 64, "takes no dimensions"),
        ("models/embedding-gecko-001", 64, "takes no dimensions"),
        ("gemini-embedding-001", 3073, "at most 3072 values"),
        ("text-embedding-004", 1024, "at most 768 values"),
    ],
)
def test_a_dimensions_the_model_cannot_take_is_refused_before_sending(
    model: str, dimensions: int, says: str
) -> None:
    with pytest.raises(InvalidRequestError, match=says):
        google().build_embed(endpoint(model), ["a"], {"dimensions": dimensions})
    assert google().build_embed(endpoint(model), ["a"], {})  # without dimensions it is fine


def test_limits_are_geminis() -> None:
    limits = google().embedding_limits
    assert (limits.max_inputs, limits.max_input_tokens, limits.max_tokens) == (100, 2048, 204_800)


def test_parse_reads_float32_vectors_in_order_and_the_usage() -> None:
    got = google().parse_embed(response("google", "embed_batch.json"))
    assert [list(v) for v in got.vectors] == [[0.25, -0.5, 0.125], [1.0, 0.0, -1.0]]
    assert all(getattr(v, "typecode", None) == "f" for v in got.vectors)
    assert (got.usage.prompt_tokens, got.usage.total_tokens) == (7, 7)


def test_an_answer_without_usage_reports_none_for_the_engine_to_estimate() -> None:
    got = google().parse_embed(response("google", "embed_batch_no_usage.json"))
    assert len(got.vectors) == 1 and got.usage.total_tokens == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"embeddings": None},
        {"embeddings": ["nope"]},
        {"embeddings": [{"values": []}]},
        {"embeddings": [{"values": "AAAA"}]},  # base64 is not Gemini's form
        {"embeddings": [{"values": [1.0, "x"]}]},
        {"embeddings": [{"values": [True]}]},
        {"embeddings": [{"values": [1e300]}]},
        {"embeddings": [{}]},
        ["not", "an", "object"],
    ],
)
def test_an_unreadable_answer_is_malformed(payload: object) -> None:
    with pytest.raises(MalformedResponseError):
        google().parse_embed(answer(payload))


@pytest.mark.parametrize("name", ["error_embed_input_tokens.json", "error_embed_batch_size.json"])
def test_too_large_answers_are_context_length_errors(name: str) -> None:
    with pytest.raises(ContextLengthError):
        google().parse_embed(response("google", name, 400))


def test_other_errors_keep_their_class_and_the_key_is_redacted() -> None:
    with pytest.raises(BadRequestError) as bad:
        google().parse_embed(response("google", "error_invalid_argument.json", 400))
    assert not isinstance(bad.value, ContextLengthError)
    with pytest.raises(AuthenticationError):
        google().parse_embed(response("google", "error_api_key.json", 400))
    leak = {"error": {"code": 429, "message": f"slow down {KEY}", "status": "RESOURCE_EXHAUSTED"}}
    with pytest.raises(RateLimitError) as caught:
        google().parse_embed(answer(leak, 429), endpoint())
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
