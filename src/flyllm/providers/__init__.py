"""The provider registry: one stateless :class:`~flyllm.providers.base.Provider` per wire format.

Each provider module declares a ``SPEC`` (:class:`~flyllm.providers.base.ProviderSpec`: its
names, base URL and environment variables, key headers, models listing, rate-limit headers);
the OpenAI-compatible services are rows of :data:`~flyllm.providers.presets.PRESETS`. The
registry below is built from those specs, and the manager looks providers up here instead of
branching on names::

    kind = resolve_provider_type("Gemini")      # ProviderType.GOOGLE
    provider = get_provider(kind)               # shared GoogleProvider
    if requires_base_url(kind) and not base_url: ...

Accepted names (any case, surrounding spaces ignored): "openai", "anthropic", "google" (alias
"gemini"), "mistral", "openai_compatible" (alias "openai-compatible"), "azure" (aliases
"azure_openai", "azure-openai"), "ollama", "cohere", and the OpenAI-compatible services of
:mod:`flyllm.providers.presets`: "groq", "together" (alias "togetherai"), "perplexity",
"deepseek", "openrouter", "fireworks" (alias "fireworks_ai"), "lmstudio" (aliases "lm_studio",
"lm-studio"), "vllm". "openai_compatible" reuses the OpenAI format with ``max_tokens`` and has
no default base URL, so instances of it must give one. Instances of "openai_compatible",
"ollama", "lmstudio" and "vllm" may have an empty API key (local servers).

How the known parameters are translated (details and notes in each module):

===========  ======================  ===============  =======================  ==============
param        openai (compatible)     anthropic        google                   mistral
===========  ======================  ===============  =======================  ==============
max_tokens   max_completion_tokens   max_tokens       maxOutputTokens          max_tokens
             (max_tokens)            (4096 default)
temperature  [0, 2]                  [0, 1] *         [0, 2]                   [0, 1.5]
top_p        [0, 1]                  [0, 1] *         [0, 1]                   [0, 1]
top_k        left out                >= 0 *           topK, >= 1               left out
stop         stop, <= 4 (all)        stop_sequences   stopSequences, <= 5      stop
seed         seed                    left out         seed                     random_seed
===========  ======================  ===============  =======================  ==============

\\* left out under anthropic-version 2026-10-21 and later.

===========  =====================  ==================  ====================
param        azure                  ollama              cohere
===========  =====================  ==================  ====================
max_tokens   max_tokens (dated),    options.num_predict max_tokens
             max_completion_tokens
             (v1)
temperature  [0, 2]                 options, [0, 2]     [0, 1]
top_p        [0, 1]                 options, [0, 1]     p, [0.01, 0.99]
top_k        left out               options.top_k       k, [0, 500]
stop         stop, <= 4             options.stop        stop_sequences, <= 5
seed         seed                   options.seed        seed
===========  =====================  ==================  ====================

The presets translate as "openai_compatible" with the differences in their table.
"""

from __future__ import annotations

from flyllm.errors import ConfigurationError
from flyllm.providers import anthropic, azure, cohere, google, mistral, ollama, openai
from flyllm.providers.anthropic import AnthropicProvider
from flyllm.providers.azure import AzureOpenAIProvider
from flyllm.providers.base import Provider, ProviderSpec
from flyllm.providers.cohere import CohereProvider
from flyllm.providers.google import GoogleProvider
from flyllm.providers.mistral import MistralProvider
from flyllm.providers.ollama import OllamaProvider
from flyllm.providers.openai import OpenAIProvider
from flyllm.providers.presets import PRESETS, Preset
from flyllm.types import ProviderType

__all__ = [
    "PRESETS",
    "PROVIDER_NAMES",
    "SPECS",
    "AnthropicProvider",
    "AzureOpenAIProvider",
    "CohereProvider",
    "GoogleProvider",
    "MistralProvider",
    "OllamaProvider",
    "OpenAIProvider",
    "Preset",
    "ProviderSpec",
    "get_provider",
    "requires_base_url",
    "requires_key",
    "resolve_provider_type",
    "spec_for",
]

_MODULE_SPECS = (
    openai.SPEC,
    openai.COMPATIBLE_SPEC,
    anthropic.SPEC,
    google.SPEC,
    mistral.SPEC,
    azure.SPEC,
    ollama.SPEC,
    cohere.SPEC,
)
_BY_KIND: dict[ProviderType, ProviderSpec] = {
    spec.kind: spec for spec in (*_MODULE_SPECS, *(preset.spec() for preset in PRESETS))
}

SPECS: tuple[ProviderSpec, ...] = tuple(_BY_KIND[kind] for kind in ProviderType)
"""Every provider's :class:`~flyllm.providers.base.ProviderSpec`, in ProviderType order (a
ProviderType without one fails here, at import)."""

_NAMES: dict[str, ProviderType] = {spec.name: spec.kind for spec in SPECS} | {
    alias: spec.kind for spec in SPECS for alias in spec.aliases
}
_ALIASES = tuple(alias for spec in SPECS for alias in spec.aliases)

PROVIDER_NAMES: tuple[str, ...] = tuple(_NAMES)
"""Every name :func:`resolve_provider_type` accepts: the ProviderType values in declaration
order, then the aliases."""

_VALID = ", ".join(kind.value for kind in ProviderType) + f" (aliases: {', '.join(_ALIASES)})"


def resolve_provider_type(value: str | ProviderType) -> ProviderType:
    """The ProviderType for a name or alias, in any case; ConfigurationError listing the valid
    names for anything else."""
    if isinstance(value, ProviderType):
        return value
    if isinstance(value, str):
        kind = _NAMES.get(value.strip().lower())
        if kind is not None:
            return kind
    raise ConfigurationError(f"unknown provider {value!r}; valid names: {_VALID}")


def spec_for(kind: ProviderType | str) -> ProviderSpec:
    """The spec of a ProviderType (a name or alias is resolved first)."""
    return _BY_KIND[resolve_provider_type(kind)]


def get_provider(kind: ProviderType | str) -> Provider:
    """The shared provider for a ProviderType (a name or alias is resolved first)."""
    return spec_for(kind).provider


def requires_base_url(kind: ProviderType | str) -> bool:
    """True when instances of this provider must give a base_url (it has no default one)."""
    return not spec_for(kind).default_base_url


def requires_key(kind: ProviderType | str) -> bool:
    """Whether instances of this provider need an API key (local servers may not:
    openai_compatible, ollama, lmstudio, vllm)."""
    return spec_for(kind).key_required
