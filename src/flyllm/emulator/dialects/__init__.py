"""One module per provider wire format, looked up by provider name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flyllm.emulator.dialects.anthropic import AnthropicDialect
from flyllm.emulator.dialects.azure import AzureDialect
from flyllm.emulator.dialects.cohere import CohereDialect
from flyllm.emulator.dialects.compat import FLAVOURS, CompatDialect
from flyllm.emulator.dialects.google import GoogleDialect
from flyllm.emulator.dialects.mistral import MistralDialect
from flyllm.emulator.dialects.ollama import OllamaDialect
from flyllm.emulator.dialects.openai import OpenAIDialect
from flyllm.emulator.wire import Dialect

__all__ = ["ALIASES", "PROVIDERS", "canonical_provider", "make_dialect"]

_DIALECTS: dict[str, Callable[[frozenset[str] | None], Dialect]] = {
    "openai": OpenAIDialect,
    "anthropic": AnthropicDialect,
    "google": GoogleDialect,
    "mistral": MistralDialect,
    "azure": AzureDialect,
    "ollama": OllamaDialect,
    "cohere": CohereDialect,
    **{name: partial(CompatDialect, flavour=flavour) for name, flavour in FLAVOURS.items()},
}
#: The canonical provider names.
PROVIDERS: tuple[str, ...] = tuple(_DIALECTS)
#: Other accepted spellings.
ALIASES: dict[str, str] = {
    "gemini": "google",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "togetherai": "together",
    "fireworks_ai": "fireworks",
    "lm_studio": "lmstudio",
    "lm-studio": "lmstudio",
}


def canonical_provider(name: str) -> str:
    """The canonical name for ``name`` (``gemini`` -> ``google``); ValueError if unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _DIALECTS:
        choices = ", ".join([*PROVIDERS, *ALIASES])
        raise ValueError(f"unknown provider {name!r}; expected one of: {choices}")
    return key


def make_dialect(provider: str, models: frozenset[str] | None) -> Dialect:
    """A fresh dialect (with its own rate-limit buckets) for ``provider``."""
    return _DIALECTS[canonical_provider(provider)](models)
