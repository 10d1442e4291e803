"""The provider registry: names, aliases, case, and the error listing the valid names."""

from __future__ import annotations

import pytest

from flyllm.errors import ConfigurationError
from flyllm.providers import (
    PRESETS,
    PROVIDER_NAMES,
    AnthropicProvider,
    AzureOpenAIProvider,
    CohereProvider,
    GoogleProvider,
    MistralProvider,
    OllamaProvider,
    OpenAIProvider,
    get_provider,
    requires_base_url,
    requires_key,
    resolve_provider_type,
)
from flyllm.providers.base import Provider
from flyllm.types import ProviderType


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("openai", ProviderType.OPENAI),
        ("OpenAI", ProviderType.OPENAI),
        ("anthropic", ProviderType.ANTHROPIC),
        ("ANTHROPIC", ProviderType.ANTHROPIC),
        ("google", ProviderType.GOOGLE),
        ("gemini", ProviderType.GOOGLE),
        ("Gemini", ProviderType.GOOGLE),
        ("mistral", ProviderType.MISTRAL),
        ("openai_compatible", ProviderType.OPENAI_COMPATIBLE),
        ("openai-compatible", ProviderType.OPENAI_COMPATIBLE),
        ("OpenAI-Compatible", ProviderType.OPENAI_COMPATIBLE),
        ("  mistral ", ProviderType.MISTRAL),
        (ProviderType.GOOGLE, ProviderType.GOOGLE),
        ("azure", ProviderType.AZURE),
        ("Azure-OpenAI", ProviderType.AZURE),
        ("azure_openai", ProviderType.AZURE),
        ("ollama", ProviderType.OLLAMA),
        ("Cohere", ProviderType.COHERE),
        ("groq", ProviderType.GROQ),
        ("together", ProviderType.TOGETHER),
        ("TogetherAI", ProviderType.TOGETHER),
        ("perplexity", ProviderType.PERPLEXITY),
        ("deepseek", ProviderType.DEEPSEEK),
        ("openrouter", ProviderType.OPENROUTER),
        ("fireworks", ProviderType.FIREWORKS),
        ("fireworks_ai", ProviderType.FIREWORKS),
        ("lmstudio", ProviderType.LMSTUDIO),
        ("LM-Studio", ProviderType.LMSTUDIO),
        ("lm_studio", ProviderType.LMSTUDIO),
        ("vllm", ProviderType.VLLM),
    ],
)
def test_resolve_names_aliases_and_case(name: str | ProviderType, kind: ProviderType) -> None:
    assert resolve_provider_type(name) is kind


@pytest.mark.parametrize("name", ["bard", "", "open ai", "claude"])
def test_unknown_name_lists_the_valid_ones(name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_provider_type(name)
    message = str(info.value)
    assert repr(name) in message
    for valid in ("anthropic", "gemini", "google", "mistral", "openai", "openai-compatible",
                  "openai_compatible"):  # fmt: skip
        assert valid in message


def test_non_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        resolve_provider_type(42)  # type: ignore[arg-type]


def test_provider_names_cover_every_type_then_aliases() -> None:
    assert PROVIDER_NAMES == (
        "openai", "anthropic", "google", "mistral", "openai_compatible", "azure", "ollama",
        "cohere", "groq", "together", "perplexity", "deepseek", "openrouter", "fireworks",
        "lmstudio", "vllm",
        "gemini", "openai-compatible", "azure_openai", "azure-openai", "togetherai",
        "fireworks_ai", "lm_studio", "lm-studio",
    )  # fmt: skip
    assert all(resolve_provider_type(name) for name in PROVIDER_NAMES)


def test_unknown_name_message_reads_well() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_provider_type("bedrock")
    assert str(info.value) == (
        "unknown provider 'bedrock'; valid names: openai, anthropic, google, mistral, "
        "openai_compatible, azure, ollama, cohere, groq, together, perplexity, deepseek, "
        "openrouter, fireworks, lmstudio, vllm (aliases: gemini, openai-compatible, "
        "azure_openai, azure-openai, togetherai, fireworks_ai, lm_studio, lm-studio)"
    )


@pytest.mark.parametrize(
    ("kind", "cls", "name"),
    [
        (ProviderType.OPENAI, OpenAIProvider, "openai"),
        (ProviderType.ANTHROPIC, AnthropicProvider, "anthropic"),
        (ProviderType.GOOGLE, GoogleProvider, "google"),
        (ProviderType.MISTRAL, MistralProvider, "mistral"),
        (ProviderType.OPENAI_COMPATIBLE, OpenAIProvider, "openai_compatible"),
        (ProviderType.AZURE, AzureOpenAIProvider, "azure"),
        (ProviderType.OLLAMA, OllamaProvider, "ollama"),
        (ProviderType.COHERE, CohereProvider, "cohere"),
        *[(p.kind, OpenAIProvider, p.name) for p in PRESETS],
    ],
)
def test_get_provider_returns_the_shared_instance(
    kind: ProviderType, cls: type[object], name: str
) -> None:
    provider: Provider = get_provider(kind)
    assert isinstance(provider, cls)
    assert provider.name == name == kind.value
    assert get_provider(kind) is provider
    assert get_provider(kind.value.upper()) is provider


def test_base_urls_and_which_need_one() -> None:
    assert get_provider(ProviderType.OPENAI).default_base_url == "https://api.openai.com/v1"
    assert get_provider(ProviderType.ANTHROPIC).default_base_url == "https://api.anthropic.com"
    assert (
        get_provider(ProviderType.GOOGLE).default_base_url
        == "https://generativelanguage.googleapis.com"
    )
    assert get_provider(ProviderType.MISTRAL).default_base_url == "https://api.mistral.ai"
    assert get_provider(ProviderType.OPENAI_COMPATIBLE).default_base_url == ""
    assert requires_base_url("openai-compatible")
    assert not any(
        requires_base_url(kind)
        for kind in ProviderType
        if kind is not ProviderType.OPENAI_COMPATIBLE
    )


@pytest.mark.parametrize(
    ("kind", "base_url"),
    [
        (ProviderType.AZURE, "https://{resource}.openai.azure.com"),
        (ProviderType.OLLAMA, "http://localhost:11434"),
        (ProviderType.COHERE, "https://api.cohere.com"),
        (ProviderType.GROQ, "https://api.groq.com/openai/v1"),
        (ProviderType.TOGETHER, "https://api.together.xyz/v1"),
        (ProviderType.PERPLEXITY, "https://api.perplexity.ai"),
        (ProviderType.DEEPSEEK, "https://api.deepseek.com"),
        (ProviderType.OPENROUTER, "https://openrouter.ai/api/v1"),
        (ProviderType.FIREWORKS, "https://api.fireworks.ai/inference/v1"),
        (ProviderType.LMSTUDIO, "http://localhost:1234/v1"),
        (ProviderType.VLLM, "http://localhost:8000/v1"),
    ],
)
def test_default_base_urls_of_the_new_providers(kind: ProviderType, base_url: str) -> None:
    assert get_provider(kind).default_base_url == base_url


def test_which_providers_need_a_key() -> None:
    optional = {ProviderType.OPENAI_COMPATIBLE, ProviderType.OLLAMA, ProviderType.LMSTUDIO,
                ProviderType.VLLM}  # fmt: skip
    assert {kind for kind in ProviderType if not requires_key(kind)} == optional
    assert not requires_key("LM-Studio") and requires_key("groq")


def test_stream_framing_per_provider() -> None:
    framing = {kind: get_provider(kind).stream_framing for kind in ProviderType}
    assert framing.pop(ProviderType.OLLAMA) == "ndjson"
    assert set(framing.values()) == {"sse"}


def test_every_preset_has_its_own_type_and_name() -> None:
    kinds = [p.kind for p in PRESETS]
    assert len(set(kinds)) == len(kinds) == 8
    assert all(p.name == p.kind.value == get_provider(p.kind).name for p in PRESETS)
