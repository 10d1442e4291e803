"""Mistral's embeddings translation on wire bodies: build_embed and parse_embed."""

from __future__ import annotations

import array
import json

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
from flyllm.providers.mistral_embed import MISTRAL_EMBEDDING_LIMITS
from tests.fixtures import response

KEY = "-".join(["mistral", "unit", "embed", "0123456789"])


def provider() -> EmbeddingProvider:
    impl = get_provider("mistral")
    assert "embeddings" in impl.capabilities and "tools" in impl.capabilities
    return impl  # type: ignore[return-value]


def endpoint(model: str = "mistral-embed", base: str = "") -> Endpoint:
    return Endpoint(model, KEY, base)


def body(raw: bytes) -> dict[str, object]:
    data = json.loads(raw)
    assert isinstance(data, dict)
    return data


def answer(payload: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"mistral-correlation-id": "corr-1"}, json.dumps(payload).encode())


def test_the_request_is_model_and_input_and_leaves_out_what_mistral_lacks() -> None:
    params = {"input_type": "query", "max_tokens": 9, "metadata": {"job": "a"}}
    request = provider().build_embed(endpoint(), ["a", "b"], params)
    assert request.method == "POST" and request.url == "https://api.mistral.ai/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body(request.body) == {"model": "mistral-embed", "input": ["a", "b"],
                                  "metadata": {"job": "a"}}  # fmt: skip
    assert request.notes == ("max_tokens is not an embeddings parameter; left out",)
    local = provider().build_embed(endpoint(base="http://127.0.0.1:9"), ["a"], {})
    assert local.url == "http://127.0.0.1:9/v1/embeddings"


def test_dimensions_become_output_dimension_for_codestral_embed_only() -> None:
    for model in ("codestral-embed", "codestral-embed-2505"):
        request = provider().build_embed(endpoint(model), ["a"], {"dimensions": 256})
        assert body(request.body)["output_dimension"] == 256
    assert "output_dimension" not in body(provider().build_embed(endpoint(), ["a"], {}).body)
    with pytest.raises(InvalidRequestError, match="'mistral-embed' takes no dimensions"):
        provider().build_embed(endpoint(), ["a"], {"dimensions": 1024})
    with pytest.raises(InvalidRequestError, match="from 1 to 3072, got 4096"):
        provider().build_embed(endpoint("codestral-embed"), ["a"], {"dimensions": 4096})
    with pytest.raises(InvalidRequestError, match="flyllm returns float32"):
        provider().build_embed(endpoint(), ["a"], {"output_dtype": "int8"})
    fine = provider().build_embed(endpoint(), ["a"], {"output_dtype": "float"})
    assert body(fine.body)["output_dtype"] == "float"


def test_the_limits_are_mistrals() -> None:
    limits = provider().embedding_limits
    assert limits is MISTRAL_EMBEDDING_LIMITS
    assert (limits.max_inputs, limits.max_tokens, limits.max_input_tokens) == (512, 16_384, 8192)
    assert (limits.max_dimensions, limits.bytes_per_value) == (3072, 24.0)


def test_the_recorded_answer_is_read_in_index_order() -> None:
    got = provider().parse_embed(
        response("mistral", "embeddings.json", headers={"mistral-correlation-id": "corr-9"})
    )
    assert [list(v) for v in got.vectors] == [
        list(array.array("f", [-0.0299224853515625, 0.0282745361328125, -0.0017366409301757812])),
        [0.25, -0.5, 0.125],
    ]
    assert all(isinstance(v, array.array) and v.typecode == "f" for v in got.vectors)
    assert (got.usage.prompt_tokens, got.usage.total_tokens) == (11, 11)
    assert got.model == "mistral-embed" and got.request_id == "corr-9"


@pytest.mark.parametrize(
    "data",
    [
        None,
        [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [1.0]}],  # lengths
        [{"index": 0, "embedding": []}],
        [{"index": 0, "embedding": [1.0, "x"]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}],
        ["nope"],
    ],
)
def test_an_unreadable_answer_is_malformed(data: object) -> None:
    with pytest.raises(MalformedResponseError):
        provider().parse_embed(answer({"data": data, "model": "mistral-embed"}))


@pytest.mark.parametrize(
    "name", ["error_embed_too_many_tokens.json", "error_embed_batch_max.json", "error_context.json"]
)
def test_too_large_answers_are_context_length_errors(name: str) -> None:
    with pytest.raises(ContextLengthError):
        provider().parse_embed(response("mistral", name, 400))


def test_other_errors_stay_what_they_are_and_the_key_is_redacted() -> None:
    with pytest.raises(BadRequestError) as empty:
        provider().parse_embed(response("mistral", "error_embed_no_input.json", 400))
    assert type(empty.value) is BadRequestError  # not too large: never split
    with pytest.raises(RateLimitError) as limited:  # a 429 speaking of tokens is a rate limit
        provider().parse_embed(
            answer({"message": f"Too many tokens per minute for {KEY}"}, 429), endpoint()
        )
    assert KEY not in str(limited.value) and KEY not in repr(limited.value)
