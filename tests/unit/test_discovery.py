"""flyllm.discovery without a network: the request each provider family gets (URL, method,
headers, paging parameters) and the reading of bodies shaped like the real ones (from the API
references and SDK types quoted in docs/WIRE-models.md), pages, filters and failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from flyllm import discovery
from flyllm._transport import Transport
from flyllm._wire import Timeouts
from flyllm.discovery import ModelInfo, list_models
from flyllm.errors import (
    AuthenticationError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
)
from flyllm.providers.base import HttpRequest, HttpResponse
from flyllm.routing.settings import BASE_URL_ENV

TIMEOUTS = Timeouts(3.0, 5.0)
KEY = "unit-key-0001"


class Recorder(Transport):
    """A transport that answers from a script of responses and records every request."""

    def __init__(self, *answers: HttpResponse | dict[str, Any] | list[Any]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[HttpRequest] = []

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        assert timeouts is TIMEOUTS
        self.sent.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, HttpResponse):
            return answer
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(answer).encode())

    def query(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.sent[index].url).query)


async def listed(transport: Recorder, provider: str, **kwargs: Any) -> list[ModelInfo]:
    kwargs.setdefault("api_key", KEY)
    return await list_models(transport, provider, timeouts=TIMEOUTS, **kwargs)


@pytest.fixture(autouse=True)
def _no_base_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BASE_URL_ENV.values():
        monkeypatch.delenv(name, raising=False)


# --- OpenAI and the compatible services ------------------------------------------------------

OPENAI_LIST = {  # the API reference's example, plus a real embedding entry
    "object": "list",
    "data": [
        {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
        {"id": "davinci-002", "object": "model", "created": 1692634301, "owned_by": "system"},
        {
            "id": "text-embedding-3-small",
            "object": "model",
            "created": 1705948997,
            "owned_by": "system",
        },
    ],
}


async def test_openai_request_and_models() -> None:
    transport = Recorder(OPENAI_LIST)
    models = await listed(transport, "openai", headers={"OpenAI-Organization": "org-1"})
    (request,) = transport.sent
    assert request.method == "GET" and request.body == b""
    assert request.url == "https://api.openai.com/v1/models"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["OpenAI-Organization"] == "org-1"
    assert [m.id for m in models] == ["gpt-4o-mini", "davinci-002", "text-embedding-3-small"]
    first = models[0]
    assert first == ModelInfo("gpt-4o-mini", "openai", None, 1721172741, "system", None, None)
    assert first.raw == OPENAI_LIST["data"][0]


async def test_sdk_env_base_url_and_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = Recorder(OPENAI_LIST, OPENAI_LIST)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/proxy/v1/")
    await listed(transport, "openai")
    await listed(transport, "openai", base_url="http://127.0.0.1:8/v1/")
    assert [r.url for r in transport.sent] == [
        "http://127.0.0.1:9/proxy/v1/models",
        "http://127.0.0.1:8/v1/models",
    ]


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("groq", "https://api.groq.com/openai/v1/models"),
        ("together", "https://api.together.xyz/v1/models"),
        ("perplexity", "https://api.perplexity.ai/models"),
        ("deepseek", "https://api.deepseek.com/models"),
        ("openrouter", "https://openrouter.ai/api/v1/models"),
        ("fireworks_ai", "https://api.fireworks.ai/inference/v1/models"),
        ("lm-studio", "http://localhost:1234/v1/models"),
        ("vllm", "http://localhost:8000/v1/models"),
    ],
)
async def test_presets_use_their_default_base_url(provider: str, url: str) -> None:
    transport = Recorder({"object": "list", "data": []})
    assert await listed(transport, provider) == []
    assert transport.sent[0].url == url


async def test_groq_limits() -> None:
    body = {
        "object": "list",
        "data": [
            {
                "id": "llama-3.3-70b-versatile", "object": "model", "created": 1733447754,
                "owned_by": "Meta", "active": True, "context_window": 131072,
                "public_apps": None, "max_completion_tokens": 32768,
            }
        ],
    }  # fmt: skip
    (model,) = await listed(Recorder(body), "groq")
    assert (model.provider, model.owned_by) == ("groq", "Meta")
    assert (model.context_window, model.max_output_tokens) == (131072, 32768)


async def test_together_answers_a_bare_array() -> None:
    body = [
        {
            "id": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "object": "model",
            "created": 1733443200, "type": "chat", "display_name": "Llama 3.3 70B Instruct Turbo",
            "organization": "Meta", "context_length": 131072,
        }
    ]  # fmt: skip
    (model,) = await listed(Recorder(body), "together")
    assert model.id == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert model.display_name == "Llama 3.3 70B Instruct Turbo"
    assert (model.owned_by, model.context_window) == ("Meta", 131072)


async def test_openrouter_top_provider_limits() -> None:
    body = {
        "data": [
            {
                "id": "openai/gpt-4o-mini", "canonical_slug": "openai/gpt-4o-mini",
                "name": "OpenAI: GPT-4o-mini", "created": 1721260800, "context_length": 128000,
                "top_provider": {"context_length": 128000, "max_completion_tokens": 16384,
                                 "is_moderated": True},
            }
        ]
    }  # fmt: skip
    (model,) = await listed(Recorder(body), "openrouter")
    assert model.display_name == "OpenAI: GPT-4o-mini"
    assert (model.context_window, model.max_output_tokens) == (128000, 16384)
    assert model.owned_by is None


async def test_vllm_max_model_len_and_no_key() -> None:
    body = {
        "object": "list",
        "data": [
            {
                "id": "meta-llama/Llama-3.1-8B-Instruct", "object": "model",
                "created": 1721692800, "owned_by": "vllm", "root": "meta-llama/Llama-3.1-8B",
                "parent": None, "max_model_len": 32768, "permission": [],
            }
        ],
    }  # fmt: skip
    transport = Recorder(body)
    (model,) = await listed(transport, "vllm", api_key="")
    assert model.context_window == 32768
    assert "authorization" not in transport.sent[0].headers


async def test_openai_compatible_needs_a_base_url() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        await listed(Recorder(), "openai_compatible")
    transport = Recorder({"data": [{"id": "local-model"}]})
    (model,) = await listed(transport, "openai-compatible", base_url="http://127.0.0.1:7/v1")
    assert model == ModelInfo("local-model", "openai_compatible")
    assert transport.sent[0].url == "http://127.0.0.1:7/v1/models"


# --- Mistral ---------------------------------------------------------------------------------

MISTRAL_LIST = {
    "object": "list",
    "data": [
        {
            "id": "mistral-medium-2505", "object": "model", "created": 1750867200,
            "owned_by": "mistralai",
            "capabilities": {"completion_chat": True, "completion_fim": False,
                             "function_calling": True, "fine_tuning": False, "vision": True,
                             "classification": False},
            "name": "mistral-medium-2505",
            "description": "Our frontier-class multimodal model released May 2025.",
            "max_context_length": 131072, "aliases": [], "deprecation": None,
            "default_model_temperature": 0.3, "type": "base",
        },
        {
            "id": "mistral-embed", "object": "model", "created": 1750867200,
            "owned_by": "mistralai",
            "capabilities": {"completion_chat": False, "completion_fim": False,
                             "function_calling": False, "fine_tuning": False, "vision": False,
                             "classification": False},
            "name": "mistral-embed", "max_context_length": 8192, "type": "base",
        },
        {"id": "ft:open-mistral-7b:abc", "object": "model", "type": "fine-tuned", "job": "j",
         "root": "open-mistral-7b", "capabilities": {"completion_chat": True}},
    ],
}  # fmt: skip


async def test_mistral_lists_its_chat_models() -> None:
    transport = Recorder(MISTRAL_LIST)
    models = await listed(transport, "mistral")
    assert transport.sent[0].url == "https://api.mistral.ai/v1/models"
    assert transport.sent[0].headers["authorization"] == f"Bearer {KEY}"
    assert [m.id for m in models] == ["mistral-medium-2505", "ft:open-mistral-7b:abc"]
    assert models[0].display_name == "mistral-medium-2505"
    assert (models[0].context_window, models[0].owned_by) == (131072, "mistralai")


# --- Anthropic -------------------------------------------------------------------------------

ANTHROPIC_PAGE_1 = {  # the API reference's ModelInfo, capabilities trimmed
    "data": [
        {
            "type": "model", "id": "claude-opus-4-6", "display_name": "Claude Opus 4.6",
            "created_at": "2026-02-04T00:00:00Z", "max_input_tokens": 200000,
            "max_tokens": 128000, "capabilities": {"batch": {"supported": True}},
            "lifecycle": "active",
        },
        {
            "type": "model", "id": "claude-sonnet-4-5-20250929",
            "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z",
            "max_input_tokens": 200000, "max_tokens": 64000,
        },
    ],
    "has_more": True,
    "first_id": "claude-opus-4-6",
    "last_id": "claude-sonnet-4-5-20250929",
}  # fmt: skip
ANTHROPIC_PAGE_2 = {
    "data": [
        {
            "type": "model", "id": "claude-2.0", "display_name": "Claude 2.0",
            "created_at": "1970-01-01T00:00:00Z",
        }
    ],
    "has_more": False,
    "first_id": "claude-2.0",
    "last_id": "claude-2.0",
}  # fmt: skip


async def test_anthropic_pages_with_after_id() -> None:
    transport = Recorder(ANTHROPIC_PAGE_1, ANTHROPIC_PAGE_2)
    models = await listed(transport, "anthropic")
    first, _ = transport.sent
    assert first.url == "https://api.anthropic.com/v1/models?limit=1000"
    assert first.headers["x-api-key"] == KEY
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert transport.query(1) == {"limit": ["1000"], "after_id": ["claude-sonnet-4-5-20250929"]}
    assert [m.id for m in models] == ["claude-opus-4-6", "claude-sonnet-4-5-20250929", "claude-2.0"]
    opus = models[0]
    assert opus.display_name == "Claude Opus 4.6" and opus.created == 1770163200
    assert (opus.context_window, opus.max_output_tokens) == (200000, 128000)
    assert models[2].created is None  # the epoch means "release date unknown"


async def test_anthropic_version_and_extra_headers() -> None:
    transport = Recorder(ANTHROPIC_PAGE_2)
    await listed(transport, "anthropic", api_version="2026-10-21", headers={"anthropic-beta": "x"})
    headers = transport.sent[0].headers
    assert headers["anthropic-version"] == "2026-10-21" and headers["anthropic-beta"] == "x"


async def test_anthropic_has_more_without_last_id_is_malformed() -> None:
    body = {"data": [], "has_more": True, "first_id": None, "last_id": None}
    with pytest.raises(MalformedResponseError, match="last_id"):
        await listed(Recorder(body), "anthropic")


# --- Gemini ----------------------------------------------------------------------------------

GEMINI_PAGE_1 = {
    "models": [
        {
            "name": "models/gemini-2.5-flash", "version": "001",
            "displayName": "Gemini 2.5 Flash", "description": "Stable version of Gemini 2.5 Flash",
            "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens",
                                           "createCachedContent", "batchGenerateContent"],
            "temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2, "thinking": True,
        },
        {
            "name": "models/text-embedding-004", "version": "004",
            "displayName": "Text Embedding 004", "inputTokenLimit": 2048, "outputTokenLimit": 1,
            "supportedGenerationMethods": ["embedContent"],
        },
    ],
    "nextPageToken": "Ch5tb2RlbHMvdGV4dC1lbWJlZGRpbmctMDA0",
}  # fmt: skip
GEMINI_PAGE_2 = {
    "models": [
        {
            "name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash",
            "inputTokenLimit": 1048576, "outputTokenLimit": 8192,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
        },
        {"name": "models/aqa", "supportedGenerationMethods": ["generateAnswer"]},
    ]
}  # fmt: skip


async def test_gemini_pages_filters_and_strips_the_prefix() -> None:
    transport = Recorder(GEMINI_PAGE_1, GEMINI_PAGE_2)
    models = await listed(transport, "gemini")
    first, _ = transport.sent
    assert first.url == "https://generativelanguage.googleapis.com/v1/models?pageSize=1000"
    assert first.headers["x-goog-api-key"] == KEY and "authorization" not in first.headers
    assert transport.query(1) == {
        "pageSize": ["1000"],
        "pageToken": ["Ch5tb2RlbHMvdGV4dC1lbWJlZGRpbmctMDA0"],
    }
    assert [m.id for m in models] == ["gemini-2.5-flash", "gemini-2.0-flash"]
    flash = models[0]
    assert flash.provider == "google" and flash.display_name == "Gemini 2.5 Flash"
    assert (flash.context_window, flash.max_output_tokens) == (1048576, 65536)
    assert flash.raw["name"] == "models/gemini-2.5-flash"


async def test_gemini_api_version_and_empty_list() -> None:
    transport = Recorder({})  # Google leaves an empty repeated field out
    assert await listed(transport, "google", api_version="v1beta") == []
    assert urlsplit(transport.sent[0].url).path == "/v1beta/models"


# --- Azure -----------------------------------------------------------------------------------

AZURE_LIST = {  # the Models - List sample (2024-10-21), plus a chat model
    "data": [
        {
            "status": "succeeded",
            "capabilities": {"fine_tune": True, "inference": True, "completion": True,
                             "chat_completion": False, "embeddings": False},
            "lifecycle_status": "generally-available",
            "deprecation": {"fine_tune": 1677662127, "inference": 1709284527},
            "id": "curie", "created_at": 1646126127, "object": "model",
        },
        {
            "status": "succeeded",
            "capabilities": {"fine_tune": False, "inference": True, "completion": False,
                             "chat_completion": True, "embeddings": False},
            "lifecycle_status": "generally-available",
            "id": "gpt-4o", "created_at": 1715558400, "object": "model",
        },
    ],
    "object": "list",
}  # fmt: skip


async def test_azure_dated_surface_from_the_resource() -> None:
    transport = Recorder(AZURE_LIST)
    models = await listed(transport, "azure", options={"resource": "my-res"})
    request = transport.sent[0]
    assert request.url == "https://my-res.openai.azure.com/openai/models?api-version=2024-10-21"
    assert request.headers["api-key"] == KEY and "authorization" not in request.headers
    assert [(m.id, m.created) for m in models] == [("gpt-4o", 1715558400)]


@pytest.mark.parametrize(
    ("base_url", "api_version", "url"),
    [
        ("https://gw.example/", "2025-04-01-preview",
         "https://gw.example/openai/models?api-version=2025-04-01-preview"),
        ("https://r.openai.azure.com/openai", None,
         "https://r.openai.azure.com/openai/models?api-version=2024-10-21"),
        ("https://r.openai.azure.com", "v1", "https://r.openai.azure.com/openai/v1/models"),
        ("https://r.openai.azure.com", "preview",
         "https://r.openai.azure.com/openai/v1/models?api-version=preview"),
        ("https://r.openai.azure.com/openai/v1", None,
         "https://r.openai.azure.com/openai/v1/models"),
    ],
)  # fmt: skip
async def test_azure_urls(base_url: str, api_version: str | None, url: str) -> None:
    transport = Recorder({"object": "list", "data": []})
    await listed(transport, "azure", base_url=base_url, api_version=api_version)
    assert transport.sent[0].url == url


async def test_azure_v1_openai_shape() -> None:
    body = {"object": "list", "data": [{"id": "gpt-4.1", "object": "model", "created": 1}]}
    (model,) = await listed(
        Recorder(body), "azure", base_url="https://r.openai.azure.com/openai/v1"
    )
    assert (model.id, model.created, model.provider) == ("gpt-4.1", 1, "azure")


async def test_azure_cannot_list_deployments() -> None:
    deployment = "https://r.openai.azure.com/openai/deployments/prod-4o"
    with pytest.raises(ConfigurationError, match="cannot list deployments"):
        await listed(Recorder(), "azure", base_url=deployment)
    with pytest.raises(ConfigurationError, match="resource"):
        await listed(Recorder(), "azure")  # neither a resource nor a base_url
    with pytest.raises(ConfigurationError, match="unknown azure option"):
        await listed(Recorder(), "azure", options={"resource": "r", "region": "x"})


# --- Ollama ----------------------------------------------------------------------------------

OLLAMA_TAGS = {  # Ollama's API reference example
    "models": [
        {
            "name": "deepseek-r1:latest", "model": "deepseek-r1:latest",
            "modified_at": "2025-05-10T08:06:48.639712648-07:00", "size": 4683075271,
            "digest": "0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163",
            "details": {"parent_model": "", "format": "gguf", "family": "qwen2",
                        "families": ["qwen2"], "parameter_size": "7.6B",
                        "quantization_level": "Q4_K_M"},
        },
        {"name": "llama3.2:latest", "modified_at": "2025-05-04T17:37:44.706015396-07:00"},
    ]
}  # fmt: skip


async def test_ollama_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = Recorder(OLLAMA_TAGS, {"models": None})
    models = await listed(transport, "ollama", api_key="")
    assert transport.sent[0].url == "http://localhost:11434/api/tags"
    assert "authorization" not in transport.sent[0].headers
    assert [m.id for m in models] == ["deepseek-r1:latest", "llama3.2:latest"]
    assert models[0].created is None and models[0].raw["details"]["family"] == "qwen2"
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9999")
    assert await listed(transport, "ollama", api_key="") == []
    assert transport.sent[1].url == "http://127.0.0.1:9999/api/tags"


# --- Cohere ----------------------------------------------------------------------------------

COHERE_PAGE_1 = {
    "models": [
        {
            "name": "command-a-03-2025", "endpoints": ["chat", "generate", "summarize"],
            "finetuned": False, "context_length": 256000.0,
            "tokenizer_url": "https://storage.googleapis.com/cohere-public/tokenizers/x.json",
            "default_endpoints": ["chat"], "features": ["tools", "json_mode"],
        },
        {"name": "embed-v4.0", "endpoints": ["embed"], "context_length": 128000},
    ],
    "next_page_token": "t-2",
}  # fmt: skip
COHERE_PAGE_2 = {
    "models": [{"name": "command-r7b-12-2024", "endpoints": ["chat"], "context_length": 128000}],
    "next_page_token": "",
}


async def test_cohere_pages_and_keeps_chat_models() -> None:
    transport = Recorder(COHERE_PAGE_1, COHERE_PAGE_2)
    models = await listed(transport, "cohere")
    first, _ = transport.sent
    assert urlsplit(first.url)[:3] == ("https", "api.cohere.com", "/v1/models")
    assert transport.query(0) == {"page_size": ["1000"], "endpoint": ["chat"]}
    assert transport.query(1) == {
        "page_size": ["1000"],
        "endpoint": ["chat"],
        "page_token": ["t-2"],
    }
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert [(m.id, m.context_window) for m in models] == [
        ("command-a-03-2025", 256000),
        ("command-r7b-12-2024", 128000),
    ]


# --- failures ----------------------------------------------------------------------------------


def failed(status: int, body: Any, **headers: str) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, headers, raw)


async def test_errors_are_the_providers_classified_errors() -> None:
    bad_key = {"error": {"message": "Incorrect API key provided: unit***0001.", "type":
               "invalid_request_error", "param": None, "code": "invalid_api_key"}}  # fmt: skip
    with pytest.raises(AuthenticationError) as caught:
        await listed(Recorder(failed(401, bad_key, **{"x-request-id": "req_1"})), "openai")
    assert caught.value.provider == "openai" and caught.value.request_id == "req_1"
    gemini_key = {"error": {"code": 400, "message": "API key not valid. Please pass a valid "
                  "API key.", "status": "INVALID_ARGUMENT"}}  # fmt: skip
    with pytest.raises(AuthenticationError):
        await listed(Recorder(failed(400, gemini_key)), "google")
    limited = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    with pytest.raises(RateLimitError) as rate:
        await listed(Recorder(failed(429, limited, **{"retry-after": "7"})), "anthropic")
    assert rate.value.retry_after == 7.0
    with pytest.raises(NotFoundError):
        await listed(Recorder(failed(404, b"404 page not found")), "ollama", api_key="")


@pytest.mark.parametrize(
    ("provider", "body", "match"),
    [
        ("openai", b"<html>oops</html>", "not a JSON object"),
        ("openai", {"object": "list", "data": {"id": "x"}}, "'data'"),
        ("openai", {"data": [{"object": "model"}]}, "without id"),
        ("openai", ["not an object"], "not an object"),
        ("anthropic", {"models": []}, "'data'"),
        ("google", {"models": [{"displayName": "no name"}]}, "without name"),
        ("cohere", {"next_page_token": None}, "'models'"),
        ("ollama", {"models": [{"size": 1}]}, "without model or name"),
        ("ollama", "a string", "not a JSON object"),
    ],
)
async def test_malformed_bodies(provider: str, body: Any, match: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(MalformedResponseError, match=match):
        await listed(Recorder(HttpResponse(200, {}, raw)), provider, api_key="k")


async def test_a_repeated_page_token_stops_the_walk() -> None:
    page = {"models": [], "next_page_token": "again"}
    with pytest.raises(MalformedResponseError, match="same next-page token"):
        await listed(Recorder(page, page, page), "cohere")


async def test_pages_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "MAX_PAGES", 3)
    pages = [{"models": [], "nextPageToken": f"t{i}"} for i in range(5)]
    transport = Recorder(*pages)
    with pytest.raises(MalformedResponseError, match="after 3"):
        await listed(transport, "google")
    assert len(transport.sent) == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda t: list_models(t, "openai", "", timeouts=TIMEOUTS), "empty"),
        (lambda t: list_models(t, "openai", None, timeouts=TIMEOUTS), "must be a string"),  # type: ignore[arg-type]
        (lambda t: list_models(t, "no-such-provider", "k", timeouts=TIMEOUTS), "unknown provider"),
    ],
)
async def test_bad_setups_send_nothing(call: Callable[[Recorder], Any], match: str) -> None:
    transport = Recorder()
    with pytest.raises(ConfigurationError, match=match):
        await call(transport)
    assert transport.sent == []


# --- ModelInfo ---------------------------------------------------------------------------------


def test_model_info_value_semantics() -> None:
    one = ModelInfo("m", "openai", raw={"id": "m", "secret_field": 1})
    two = ModelInfo("m", "openai", raw={})
    assert one == two and hash(one) == hash(two)  # raw is not part of the value
    assert "raw" not in repr(one) and "secret_field" not in repr(one)
    assert one.to_dict() == {
        "id": "m", "provider": "openai", "display_name": None, "created": None,
        "owned_by": None, "context_window": None, "max_output_tokens": None,
    }  # fmt: skip
    with pytest.raises(AttributeError):
        one.id = "other"  # type: ignore[misc]


async def test_deep_json_page_is_malformed_not_a_recursion_error() -> None:
    transport = Recorder(HttpResponse(200, {}, b"[" * 200_000))
    with pytest.raises(MalformedResponseError):
        await listed(transport, "openai")


async def test_echoed_key_is_redacted_from_a_failed_page() -> None:
    key = "unit-" + "k" * 30
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}}).encode()
    transport = Recorder(HttpResponse(401, {}, body))
    with pytest.raises(AuthenticationError) as caught:
        await listed(transport, "openai", api_key=key)
    if key in str(caught.value) or key in repr(caught.value):
        pytest.fail("the key leaked into the error", pytrace=False)
