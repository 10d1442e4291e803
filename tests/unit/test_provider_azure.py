"""Azure OpenAI: URLs of both surfaces, api-key auth, api-versions, filter results, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    NotFoundError,
    ProviderError,
    RateLimitError,
)
from flyllm.providers import get_provider
from flyllm.providers.azure import (
    AZURE_BASE_URL,
    DEFAULT_AZURE_API_VERSION,
    AzureOpenAIProvider,
    azure_target,
)
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse
from flyllm.types import Message, Usage
from tests.fixtures import API_KEY, fixture_bytes, one_byte, replay, response

NOW = 1_750_000_000.0
AZURE = AzureOpenAIProvider(clock=lambda: NOW)
CHAT = [Message("system", "Talk like a pirate."), Message("user", "Parrots?")]


def endpoint(
    model: str = "gpt-4o-prod",
    base_url: str = AZURE_BASE_URL,
    api_version: str | None = None,
    **options: Any,
) -> Endpoint:
    return Endpoint(model, API_KEY, base_url, api_version, {}, options)


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# --- addressing -----------------------------------------------------------------------------


def test_deployments_surface_from_resource_and_model() -> None:
    request = AZURE.build(endpoint(resource="contoso"), CHAT, {"max_tokens": 50})
    assert request.url == (
        "https://contoso.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions"
        f"?api-version={DEFAULT_AZURE_API_VERSION}"
    )
    assert DEFAULT_AZURE_API_VERSION == "2024-10-21"
    assert request.headers == {"content-type": "application/json", "api-key": API_KEY}
    body = body_of(request)
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body
    assert body["model"] == "gpt-4o-prod"
    assert API_KEY not in repr(request)


def test_deployment_option_and_api_version_override() -> None:
    target = azure_target(endpoint("gpt-4o", api_version="2025-04-01-preview", resource="r1",
                                   deployment="team a/chat"))  # fmt: skip
    assert target.url == (
        "https://r1.openai.azure.com/openai/deployments/team%20a%2Fchat/chat/completions"
        "?api-version=2025-04-01-preview"
    )
    assert not target.v1 and target.stream_usage


def test_base_url_overrides_the_resource_host() -> None:
    gateway = endpoint(base_url="https://apim.example.com/", resource="ignored")
    assert azure_target(gateway).url.startswith(
        "https://apim.example.com/openai/deployments/gpt-4o-prod/chat/completions?"
    )
    with_openai = endpoint(base_url="http://127.0.0.1:9000/openai")
    assert azure_target(with_openai).url.startswith(
        "http://127.0.0.1:9000/openai/deployments/gpt-4o-prod/chat/completions?"
    )
    pasted = endpoint(base_url="https://x.openai.azure.com/openai/deployments/prod-4o")
    assert azure_target(pasted).url == (
        "https://x.openai.azure.com/openai/deployments/prod-4o/chat/completions"
        "?api-version=2024-10-21"
    )


@pytest.mark.parametrize(
    ("ep", "url"),
    [
        (
            endpoint(api_version="v1", resource="contoso"),
            "https://contoso.openai.azure.com/openai/v1/chat/completions",
        ),
        (
            endpoint(api_version="preview", resource="contoso"),
            "https://contoso.openai.azure.com/openai/v1/chat/completions?api-version=preview",
        ),
        (
            endpoint(base_url="https://contoso.openai.azure.com/openai/v1/"),
            "https://contoso.openai.azure.com/openai/v1/chat/completions",
        ),
    ],
)
def test_v1_surface(ep: Endpoint, url: str) -> None:
    request = AZURE.build(ep, CHAT, {"max_tokens": 50}, stream=True)
    assert request.url == url
    body = body_of(request)
    assert body["model"] == "gpt-4o-prod"  # the deployment name goes in the body
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["stream_options"] == {"include_usage": True}
    assert request.headers["accept"] == "text/event-stream"


def test_stream_usage_only_from_api_versions_that_take_it() -> None:
    old = AZURE.build(endpoint(api_version="2024-06-01", resource="r"), CHAT, {}, stream=True)
    assert "stream_options" not in body_of(old) and body_of(old)["stream"] is True
    ga = AZURE.build(endpoint(resource="r"), CHAT, {}, stream=True)
    assert body_of(ga)["stream_options"] == {"include_usage": True}


def test_params_follow_openai_with_four_stops() -> None:
    params = {"temperature": 0.2, "top_p": 0.5, "top_k": 3, "stop": list("abcde"), "seed": 1}
    request = AZURE.build(endpoint(resource="r"), CHAT, params)
    body = body_of(request)
    assert body["stop"] == list("abcd") and body["seed"] == 1 and "top_k" not in body
    assert "top_k is not supported by azure; left out" in request.notes


@pytest.mark.parametrize(
    ("ep", "message"),
    [
        (endpoint(), "options={'resource'"),
        (endpoint(resource="bad host/x"), "options={'resource'"),
        (endpoint(resource="r", deployment_name="x"), "unknown azure option"),
        (endpoint(resource="r", deployment=""), "deployment"),
    ],
)
def test_missing_or_bad_addressing_is_a_configuration_error(ep: Endpoint, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("{", r"\{")):
        AZURE.build(ep, CHAT, {})


def test_custom_headers_and_registry() -> None:
    ep = Endpoint("d", API_KEY, AZURE_BASE_URL, None, {"API-KEY": "other"}, {"resource": "r"})
    assert AZURE.build(ep, CHAT, {}).headers["API-KEY"] == "other"
    assert isinstance(get_provider("azure-openai"), AzureOpenAIProvider)


# --- answers --------------------------------------------------------------------------------


def test_parse_answer_with_filter_results() -> None:
    completion = AZURE.parse(
        response("azure", "chat_completion.json", 200, {"apim-request-id": "a1"})
    )
    assert completion.content.startswith("Ahoy matey!")
    assert completion.usage == Usage(33, 16, 49, 0)
    assert completion.model == "gpt-4o-2024-08-06" and completion.request_id == "a1"


def test_content_filter_finish_raises() -> None:
    with pytest.raises(ContentFilterError) as caught:
        AZURE.parse(response("azure", "finish_content_filter.json"))
    assert caught.value.partial_content == "The duel began at dawn and"


def test_stream_skips_the_prompt_filter_chunk_and_keeps_the_model() -> None:
    data = fixture_bytes("azure", "stream_basic.txt")
    for reads in ([data], one_byte(data)):
        run = replay(AZURE.stream_parser(), reads)
        assert run.deltas == ["Ahoy", " matey!"]
        assert run.completion is not None
        assert run.completion.model == "gpt-4o-2024-08-06"  # not the first chunk's ""
        assert run.completion.usage == Usage(14, 3, 17, 0)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "cls"),
    [
        (400, "error_content_filter.json", ContentFilterError),
        (401, "error_unauthorized.json", AuthenticationError),
        (404, "error_deployment_not_found.json", NotFoundError),
        (400, "error_context_length.json", ContextLengthError),
        (429, "error_rate_limit.json", RateLimitError),
    ],
)
def test_classify_azure_errors(status: int, name: str, cls: type[ProviderError]) -> None:
    err = AZURE.classify_error(response("azure", name, status, {"apim-request-id": "rid-9"}))
    assert type(err) is cls and err.provider == "azure" and err.request_id == "rid-9"
    assert err.message == json.loads(fixture_bytes("azure", name))["error"]["message"]


def test_rate_limit_hint_from_headers_then_from_the_text() -> None:
    body = fixture_bytes("azure", "error_rate_limit.json")
    from_text = AZURE.classify_error(HttpResponse(429, {}, body))
    assert from_text.retry_after == 2.0
    from_header = AZURE.classify_error(HttpResponse(429, {"retry-after-ms": "1500"}, body))
    assert from_header.retry_after == 1.5
