"""Cohere embeddings v2 on wire bodies: build_embed (input_type, output_dimension, truncate),
parse_embed (embeddings.float, meta usage), too large as ContextLengthError."""

from __future__ import annotations

import array
import json
from typing import Any

import pytest

from flyllm.errors import (
    BadRequestError,
    ContextLengthError,
    InvalidRequestError,
    MalformedResponseError,
    RateLimitError,
)
from flyllm.providers import get_provider
from flyllm.providers.base import EmbeddingProvider, Endpoint, HttpResponse
from flyllm.providers.cohere import CohereProvider
from tests.fixtures import fixture_json, response

KEY = "-".join(["co", "unit", "embed", "0123456789"])
COHERE: EmbeddingProvider = CohereProvider()
V4 = Endpoint("embed-v4.0", KEY, "https://api.cohere.com")


def body_of(inputs: list[str], params: dict[str, Any], endpoint: Endpoint = V4) -> Any:
    return json.loads(COHERE.build_embed(endpoint, inputs, params).body)


def answer(payload: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {}, json.dumps(payload).encode())


def test_the_registry_declares_embeddings_with_cohere_limits() -> None:
    impl = get_provider("cohere")
    assert "embeddings" in impl.capabilities
    limits = impl.embedding_limits  # type: ignore[attr-defined]
    assert (limits.max_inputs, limits.max_tokens, limits.max_dimensions) == (96, 128_000, 1536)


def test_build_sends_texts_search_document_by_default_floats_and_no_truncation() -> None:
    request = COHERE.build_embed(V4, ["a", "b"], {})
    assert request.method == "POST" and request.url == "https://api.cohere.com/v2/embed"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.body) == {
        "model": "embed-v4.0", "texts": ["a", "b"], "input_type": "search_document",
        "embedding_types": ["float"], "truncate": "NONE",
    }  # fmt: skip
    assert request.notes == ()


@pytest.mark.parametrize(
    ("given", "sent"),
    [("document", "search_document"), ("query", "search_query"), ("clustering", "clustering")],
)
def test_input_type_maps_to_cohere_notion(given: str, sent: str) -> None:
    assert body_of(["a"], {"input_type": given})["input_type"] == sent


@pytest.mark.parametrize("value", ["passage", ["query"], 3])
def test_an_unknown_input_type_is_refused_before_sending(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="input_type 'document' or 'query'"):
        COHERE.build_embed(V4, ["a"], {"input_type": value})


@pytest.mark.parametrize("dims", [256, 512, 1024, 1536])
def test_embed_v4_takes_its_four_dimensions(dims: int) -> None:
    assert body_of(["a"], {"dimensions": dims})["output_dimension"] == dims


def test_other_dimensions_and_old_models_are_refused_before_sending() -> None:
    with pytest.raises(InvalidRequestError, match="256, 512, 1024 or 1536, not 300"):
        COHERE.build_embed(V4, ["a"], {"dimensions": 300})
    newer = Endpoint("embed-v5.0", KEY, "https://api.cohere.com")  # the API judges
    assert body_of(["a"], {"dimensions": 300}, newer)["output_dimension"] == 300
    with pytest.raises(InvalidRequestError, match="whole number"):
        COHERE.build_embed(newer, ["a"], {"dimensions": "300"})
    v3 = Endpoint("embed-english-v3.0", KEY, "https://api.cohere.com")
    with pytest.raises(InvalidRequestError, match="takes no dimensions"):
        COHERE.build_embed(v3, ["a"], {"dimensions": 1024})
    assert "output_dimension" not in body_of(["a"], {}, v3)


def test_generation_and_reserved_parameters_are_left_out_extras_and_truncate_kept() -> None:
    params = {"max_tokens": 9, "output_dimension": 8, "truncate": "END", "priority": 2}
    request = COHERE.build_embed(V4, ["a"], params)
    sent = json.loads(request.body)
    assert sent["truncate"] == "END" and sent["priority"] == 2
    assert "max_tokens" not in sent and "output_dimension" not in sent
    assert len(request.notes) == 2


def test_parse_reads_float_vectors_in_order_usage_and_id() -> None:
    got = COHERE.parse_embed(response("cohere", "embed.json"))
    want = fixture_json("cohere", "embed.json")["embeddings"]["float"]
    assert all(isinstance(v, array.array) and v.typecode == "f" for v in got.vectors)
    assert [list(v) for v in got.vectors] == [list(array.array("f", w)) for w in want]
    assert (got.usage.prompt_tokens, got.usage.total_tokens) == (2, 2)
    assert got.request_id == "5807ee2e-0cda-445a-9ec8-864c60a06606"


def test_usage_falls_back_to_meta_tokens_and_is_zero_without_meta() -> None:
    tokens = {"embeddings": {"float": [[1.0]]}, "meta": {"tokens": {"input_tokens": 7}}}
    assert COHERE.parse_embed(answer(tokens)).usage.total_tokens == 7
    assert COHERE.parse_embed(answer({"embeddings": {"float": [[1.0]]}})).usage.total_tokens == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"embeddings": [[1.0]]},  # the v1 floats shape, not asked for
        {"embeddings": {"int8": [[1]]}},
        {"embeddings": {"float": [[1.0, "x"]]}},
        {"embeddings": {"float": [[1e300]]}},
        {"embeddings": {"float": ["AAAAAA=="]}},
        {"embeddings": {"float": None}},
        [1],
    ],
)
def test_an_unreadable_answer_is_malformed(payload: object) -> None:
    with pytest.raises(MalformedResponseError):
        COHERE.parse_embed(answer(payload))


def test_too_many_tokens_is_a_context_length_error_and_other_400s_are_bad_requests() -> None:
    with pytest.raises(ContextLengthError):
        COHERE.parse_embed(response("cohere", "embed_error_too_many_tokens.json", 400))
    texts = {"id": "x", "message": "invalid request: total number of texts must be at most 96 "
             "- received 104"}  # fmt: skip
    with pytest.raises(BadRequestError):
        COHERE.parse_embed(answer(texts, 400))


def test_errors_are_classified_and_the_key_redacted() -> None:
    payload = {"id": "x", "message": f"slow down {KEY}"}
    with pytest.raises(RateLimitError) as caught:
        COHERE.parse_embed(answer(payload, 429), V4)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
