"""The OpenAI family's embeddings translation on wire bodies: build_embed and parse_embed."""

from __future__ import annotations

import array
import base64
import json
import struct

import pytest

from flyllm.errors import (
    ContextLengthError,
    InvalidRequestError,
    MalformedResponseError,
    RateLimitError,
)
from flyllm.providers import get_provider
from flyllm.providers.base import EmbeddingProvider, Endpoint, HttpResponse
from flyllm.types import ProviderType

KEY = "-".join(["sk", "unit", "embed", "0123456789"])
MODEL = "text-embedding-3-small"


def provider(name: str) -> EmbeddingProvider:
    impl = get_provider(name)
    assert "embeddings" in impl.capabilities
    return impl  # type: ignore[return-value]


def endpoint(base: str = "https://api.openai.com/v1", model: str = MODEL, **kw: object) -> Endpoint:
    return Endpoint(model, KEY, base, **kw)  # type: ignore[arg-type]


def body(request_body: bytes) -> dict[str, object]:
    data = json.loads(request_body)
    assert isinstance(data, dict)
    return data


def answer(payload: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"x-request-id": "req_1"}, json.dumps(payload).encode())


def le_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def test_openai_asks_for_base64_with_dimensions_and_leaves_out_what_is_not_its() -> None:
    params = {"dimensions": 256, "input_type": "query", "max_tokens": 9, "user": "u1"}
    request = provider("openai").build_embed(endpoint(), ["a", "b"], params)
    assert request.method == "POST" and request.url == "https://api.openai.com/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert body(request.body) == {
        "model": MODEL, "input": ["a", "b"], "encoding_format": "base64", "dimensions": 256,
        "user": "u1",
    }  # fmt: skip
    assert request.notes == ("max_tokens is not an embeddings parameter; left out",)


def test_an_old_openai_model_takes_no_dimensions_before_sending() -> None:
    with pytest.raises(InvalidRequestError, match="takes no dimensions"):
        provider("openai").build_embed(
            endpoint(model="text-embedding-ada-002"), ["a"], {"dimensions": 8}
        )
    request = provider("openai").build_embed(endpoint(model="text-embedding-ada-002"), ["a"], {})
    assert "dimensions" not in body(request.body)


def test_compatible_services_get_floats_at_their_base_url() -> None:
    request = provider("vllm").build_embed(endpoint("http://127.0.0.1:8000/v1"), ["a"], {})
    assert request.url == "http://127.0.0.1:8000/v1/embeddings"
    assert body(request.body)["encoding_format"] == "float"
    compat = provider("openai_compatible").build_embed(endpoint("http://h/v1"), ["a"], {})
    assert compat.url == "http://h/v1/embeddings"


def test_azure_deployments_and_v1_addressing() -> None:
    azure = provider("azure")
    dated = azure.build_embed(endpoint("https://res.openai.azure.com", model="emb"), ["a"], {})
    assert dated.url == (
        "https://res.openai.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21"
    )
    assert dated.headers["api-key"] == KEY and "authorization" not in dated.headers
    assert body(dated.body)["encoding_format"] == "base64"
    v1 = azure.build_embed(endpoint("https://res.openai.azure.com/openai/v1"), ["a"], {})
    assert v1.url == "https://res.openai.azure.com/openai/v1/embeddings"


def test_only_the_providers_with_the_endpoint_declare_the_capability() -> None:
    able = {k.value for k in ProviderType if "embeddings" in get_provider(k).capabilities}
    assert able == {
        "openai", "azure", "openai_compatible", "together", "fireworks", "lmstudio", "vllm",
        "cohere",
        "google",
        "mistral",
        "ollama",
    }  # fmt: skip


def test_parse_reads_floats_and_base64_in_index_order() -> None:
    values = [0.5, -0.25, 1.0]
    payload = {
        "object": "list",
        "model": MODEL,
        "data": [
            {"object": "embedding", "index": 1, "embedding": le_base64(values)},
            {"object": "embedding", "index": 0, "embedding": [0.125, 2.0]},
        ],
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    got = provider("openai").parse_embed(answer(payload))
    assert [list(v) for v in got.vectors] == [[0.125, 2.0], values]
    assert all(isinstance(v, array.array) and v.typecode == "f" for v in got.vectors)
    assert got.usage.prompt_tokens == got.usage.total_tokens == 7
    assert got.model == MODEL and got.request_id == "req_1"


@pytest.mark.parametrize(
    "data",
    [
        None,
        [{"index": 0, "embedding": "not base64!"}],
        [{"index": 0, "embedding": base64.b64encode(b"abc").decode()}],  # not whole floats
        [{"index": 0, "embedding": [1.0, "x"]}],
        [{"index": 0, "embedding": [True]}],
        [{"index": 0, "embedding": [1e300]}],  # no float32
        [{"index": 0, "embedding": [1.0]}, {"index": 2, "embedding": [1.0]}],
        [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}],
        ["nope"],
    ],
)
def test_an_unreadable_answer_is_malformed(data: object) -> None:
    with pytest.raises(MalformedResponseError):
        provider("openai").parse_embed(answer({"data": data}))


def test_too_large_answers_are_context_length_errors() -> None:
    per_request = {"error": {"message": "Requested 310000 tokens, max 300000 tokens per "
                             "request", "type": "max_tokens_per_request", "param": None,
                             "code": "max_tokens_per_request"}}  # fmt: skip
    one_input = {"error": {"message": "This model's maximum context length is 8192 tokens, "
                           "however you requested 9000 tokens", "type": "invalid_request_error",
                           "param": None, "code": None}}  # fmt: skip
    for payload in (per_request, one_input):
        with pytest.raises(ContextLengthError):
            provider("openai").parse_embed(answer(payload, 400))


def test_errors_are_classified_and_the_key_redacted() -> None:
    payload = {"error": {"message": f"slow down {KEY}", "type": "requests",
                         "code": "rate_limit_exceeded"}}  # fmt: skip
    with pytest.raises(RateLimitError) as caught:
        provider("openai").parse_embed(answer(payload, 429), endpoint())
    assert KEY not in str(caught.value)
