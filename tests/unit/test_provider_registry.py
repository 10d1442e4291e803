"""The provider registry: names, aliases, case, and the error listing the valid names."""

from __future__ import annotations

import pytest

from flyllm.errors import ConfigurationError
from flyllm.providers import (
    PROVIDER_NAMES,
    AnthropicProvider,
    GoogleProvider,
    MistralProvider,
    OpenAIProvider,
    get_provider,
    requires_base_url,
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
        "openai",
        "anthropic",
        "google",
        "mistral",
        "openai_compatible",
        "gemini",
        "openai-compatible",
    )
    assert all(resolve_provider_type(name) for name in PROVIDER_NAMES)


def test_unknown_name_message_reads_well() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_provider_type("cohere")
    assert str(info.value) == (
        "unknown provider 'cohere'; valid names: openai, anthropic, google, mistral, "
        "openai_compatible (aliases: gemini, openai-compatible)"
    )


@pytest.mark.parametrize(
    ("kind", "cls", "name"),
    [
        (ProviderType.OPENAI, OpenAIProvider, "openai"),
        (ProviderType.ANTHROPIC, AnthropicProvider, "anthropic"),
        (ProviderType.GOOGLE, GoogleProvider, "google"),
        (ProviderType.MISTRAL, MistralProvider, "mistral"),
        (ProviderType.OPENAI_COMPATIBLE, OpenAIProvider, "openai_compatible"),
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
