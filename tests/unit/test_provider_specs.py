"""The provider specs: one per ProviderType, and every table the library keeps about providers
(names, key headers, environment variables, rate-limit headers) is read from them."""

from __future__ import annotations

import pytest

from flyllm.providers import (
    PROVIDER_NAMES,
    SPECS,
    get_provider,
    requires_key,
    resolve_provider_type,
    spec_for,
)
from flyllm.providers.base import Endpoint, ProviderSpec
from flyllm.routing.settings import BASE_URL_ENV, env_base_url
from flyllm.types import Message, ProviderType


def _key() -> str:
    return "-".join(("sk", "spec", "test", "value"))  # built at run time, not a literal key


def test_every_provider_type_has_one_spec_in_enum_order() -> None:
    assert [spec.kind for spec in SPECS] == list(ProviderType)
    for spec in SPECS:
        assert spec.provider is get_provider(spec.kind)
        assert spec.provider.name == spec.name
        assert requires_key(spec.kind) is spec.key_required
        for alias in spec.aliases:
            assert resolve_provider_type(alias) is spec.kind
            assert alias in PROVIDER_NAMES


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_key_headers_of_a_request_are_the_specs_auth(spec: ProviderSpec) -> None:
    """Discovery and the chat request send the same key headers: they come from one function."""
    options = {"resource": "res"} if spec.kind is ProviderType.AZURE else {}
    endpoint = Endpoint("m", _key(), "http://127.0.0.1:9", None, {}, options)
    auth = spec.auth(endpoint)
    assert auth and any(_key() in value for value in auth.values())
    request = spec.provider.build(endpoint, [Message("user", "hi")], {})
    assert {k: request.headers[k] for k in auth} == auth
    empty = Endpoint("m", "", "http://127.0.0.1:9", None, {}, options)
    assert not any("key" in k or k == "authorization" for k in spec.auth(empty))


def test_key_variables_follow_the_official_sdks() -> None:
    assert spec_for("gemini").key_env == ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    assert spec_for("azure").key_env == ("AZURE_OPENAI_API_KEY",)
    assert spec_for("cohere").key_env == ("CO_API_KEY", "COHERE_API_KEY")
    assert spec_for("perplexity").key_env == ("PERPLEXITY_API_KEY", "PPLX_API_KEY")
    assert spec_for("groq").key_env == ("GROQ_API_KEY",)
    assert spec_for("openai_compatible").key_env == ("OPENAI_COMPATIBLE_API_KEY",)


def test_base_url_variables_come_from_the_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {
        spec.kind: spec.base_url_env for spec in SPECS if spec.base_url_env is not None
    } == BASE_URL_ENV
    assert BASE_URL_ENV[ProviderType.COHERE] == "CO_API_URL"
    assert ProviderType.GROQ not in BASE_URL_ENV
    monkeypatch.setenv("OLLAMA_HOST", " 127.0.0.1 ")
    assert env_base_url(ProviderType.OLLAMA) == "http://127.0.0.1:11434"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "   ")
    assert env_base_url(ProviderType.ANTHROPIC) is None
    assert env_base_url(ProviderType.GROQ) is None


def test_rate_limit_families_are_declared_where_the_provider_is() -> None:
    assert spec_for("anthropic").rate_limits is not None
    assert spec_for("anthropic").rate_limits != spec_for("openai").rate_limits
    assert spec_for("azure").rate_limits is spec_for("openai").rate_limits
    assert spec_for("google").rate_limits is None
