"""Set-up checks and defaults shared by the manager, config files and discovery: number
checks, provider_params validation, the SDKs' base-URL environment variables and the state
store named by ``LlmManager(state=...)``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from flyllm.errors import ConfigurationError
from flyllm.params import validate_provider_params
from flyllm.providers import resolve_provider_type
from flyllm.state import MemoryStore, StateStore
from flyllm.types import ProviderType

__all__ = [
    "BASE_URL_ENV",
    "check_provider_params",
    "env_base_url",
    "make_store",
    "positive_int",
    "positive_number",
]

BASE_URL_ENV = {
    ProviderType.OPENAI: "OPENAI_BASE_URL",
    ProviderType.ANTHROPIC: "ANTHROPIC_BASE_URL",
    ProviderType.GOOGLE: "GOOGLE_GEMINI_BASE_URL",
    ProviderType.MISTRAL: "MISTRAL_BASE_URL",
    ProviderType.AZURE: "AZURE_OPENAI_ENDPOINT",
    ProviderType.COHERE: "CO_API_URL",
    ProviderType.OLLAMA: "OLLAMA_HOST",
}
"""Environment variables that move a provider's default base URL, as the official SDKs read
them (MISTRAL_BASE_URL is ours; OLLAMA_HOST may be a bare host or host:port)."""


def check_provider_params(
    provider_params: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """Validated provider_params keyed by canonical provider name ("gemini" -> "google")."""
    checked = validate_provider_params(provider_params)
    return {resolve_provider_type(name).value: params for name, params in checked.items()}


def positive_int(name: str, value: Any) -> None:
    """ConfigurationError naming ``name`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


def positive_number(name: str, value: Any, *, allow_none: bool = False) -> None:
    """ConfigurationError naming ``name`` unless ``value`` is a number of seconds > 0."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def env_base_url(ptype: ProviderType) -> str | None:
    """The base URL the provider's SDK environment variable gives, if set."""
    name = BASE_URL_ENV.get(ptype)
    value = os.environ.get(name, "").strip() if name else ""
    if not value:
        return None
    if ptype is ProviderType.OLLAMA:  # OLLAMA_HOST: "host", "host:port" or a URL
        if "://" not in value:
            value = "http://" + value
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0]
        if ":" not in host.rsplit("]", 1)[-1]:
            value = f"{scheme}://{host}:11434" + rest[len(host) :]
    return value


def make_store(state: str | StateStore | None, clock: Callable[[], float]) -> StateStore:
    """The state store for ``LlmManager(state=...)``."""
    if state is None or state == "memory":
        return MemoryStore(clock)
    if isinstance(state, str):
        if state.startswith(("redis://", "rediss://", "unix://")):
            from flyllm.redis_state import RedisStore

            return RedisStore(state, clock=clock)
        raise ConfigurationError(
            f'unknown state store {state!r}: use "memory", a redis:// URL or a StateStore'
        )
    return state
