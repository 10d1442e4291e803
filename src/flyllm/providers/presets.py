"""OpenAI-compatible services as data: one row per service, each built into an OpenAIProvider.

A preset only says how a service differs from OpenAI's Chat Completions; the wire format, the
stream parser and the error classification are :mod:`flyllm.providers.openai`'s. Adding a
service is one row in :data:`PRESETS` (and its ``ProviderType`` member). Sources and details
for every row are in docs/WIRE-more.md.

==========  =====================================  =====================  ========  =====  ====
name        default base URL                       max_tokens field       stop      top_k  seed
==========  =====================================  =====================  ========  =====  ====
groq        https://api.groq.com/openai/v1         max_completion_tokens  first 4   no     yes
together    https://api.together.xyz/v1            max_tokens             all       yes    yes
perplexity  https://api.perplexity.ai              max_tokens             left out  yes    no
deepseek    https://api.deepseek.com               max_tokens             first 16  no     no
openrouter  https://openrouter.ai/api/v1           max_tokens             all       yes    yes
fireworks   https://api.fireworks.ai/inference/v1  max_tokens             all       yes    yes
lmstudio    http://localhost:1234/v1               max_tokens             all       yes    yes
vllm        http://localhost:8000/v1               max_tokens             all       yes    yes
==========  =====================================  =====================  ========  =====  ====

Stream usage: groq sends it in ``x_groq.usage`` on the last chunk; together and fireworks on
the chunk with the finish_reason; perplexity on every chunk (cumulative) and never sends
``data: [DONE]`` (the stream ends at EOF after the finish reason); openrouter in a last chunk,
always; deepseek, lmstudio and vllm when asked with ``stream_options``.

``stream_options`` means flyllm sends ``"stream_options": {"include_usage": true}`` (the
service then sends usage in a last chunk with ``choices: []``); the others send usage on their
own and get no ``stream_options`` (some reject unknown fields). lmstudio and vllm are local
servers: their API key is optional (no Authorization header without one).

Tool calling is OpenAI's on every service but perplexity, whose API has none: its provider's
``capabilities`` leave out "tools", so requests with tools go elsewhere (and are refused before
sending if one reaches it).

Embeddings (OpenAI's ``/embeddings``, floats on the wire) on together, fireworks, lmstudio and
vllm (and openai_compatible); groq, perplexity, deepseek and openrouter lack the capability.

Structured output and images are OpenAI's shapes on every service (``response_format``
json_schema / json_object, ``image_url`` parts), with two exceptions: deepseek's
``response_format`` takes only ``json_object`` (a schema request asks for the schema in a
system turn; flyllm validates the answer) and its chat API takes no images (its
``capabilities`` leave out "images"). Where a model or server cannot do either, its "not
supported" answer is learned (UnsupportedFeatureError with the capability).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flyllm.providers._common import Clock, bearer_auth
from flyllm.providers.base import ALL_CAPABILITIES, ProviderSpec
from flyllm.providers.openai import (
    OPENAI_MODELS,
    OPENAI_RATE_LIMITS,
    OpenAIProvider,
)
from flyllm.types import Capability, ProviderType

__all__ = ["PRESETS", "Preset", "preset_for"]


@dataclass(slots=True, frozen=True)
class Preset:
    """How one OpenAI-compatible service differs from OpenAI.

    ``kind``'s value is the name shown in logs, usage, ``LlmResponse.provider`` and metrics.
    ``max_stop`` None keeps every stop sequence; ``stop`` False leaves ``stop`` out (the service
    does not take it); ``stream_usage`` sends ``stream_options.include_usage`` on streams;
    ``require_done`` False accepts a stream that ends at EOF after a finish reason (no
    ``data: [DONE]``); ``key_required`` False lets instances have an empty key; ``aliases``
    other names the service answers to; ``key_env`` where the CLI finds its key (default
    ``<NAME>_API_KEY``); ``capabilities`` what its API can do (all but "tools" for a service
    without tool calling); ``json_schema`` False for a service whose ``response_format`` takes
    only ``json_object`` (a schema is then asked for in words, and the answer validated);
    ``embeddings`` True for a service with OpenAI's ``/embeddings`` endpoint.
    """

    kind: ProviderType
    default_base_url: str
    max_tokens_field: str = "max_tokens"
    max_stop: int | None = None
    stop: bool = True
    top_k: bool = False
    seed: bool = True
    stream_usage: bool = False
    require_done: bool = True
    key_required: bool = True
    aliases: tuple[str, ...] = ()
    key_env: tuple[str, ...] = ()
    capabilities: frozenset[Capability] = ALL_CAPABILITIES
    json_schema: bool = True
    embeddings: bool = False

    @property
    def name(self) -> str:
        """The service's name: its ProviderType's value."""
        return self.kind.value

    def provider(self, *, clock: Clock = time.time) -> OpenAIProvider:
        """The shared, stateless provider for this service."""
        return OpenAIProvider(
            name=self.name,
            default_base_url=self.default_base_url,
            max_tokens_field=self.max_tokens_field,
            max_stop=self.max_stop,
            top_k=self.top_k,
            seed=self.seed,
            stop=self.stop,
            stream_usage=self.stream_usage,
            require_done=self.require_done,
            capabilities=self.capabilities,
            json_schema=self.json_schema,
            embeddings=self.embeddings,
            clock=clock,
        )

    def spec(self) -> ProviderSpec:
        """The service's :class:`~flyllm.providers.base.ProviderSpec`: OpenAI's auth, models
        listing and rate-limit headers with this row's facts."""
        return ProviderSpec(
            self.kind,
            self.provider(),
            bearer_auth,
            OPENAI_MODELS,
            aliases=self.aliases,
            key_env=self.key_env,
            key_required=self.key_required,
            rate_limits=OPENAI_RATE_LIMITS,
        )


PRESETS: tuple[Preset, ...] = (
    Preset(
        ProviderType.GROQ,
        "https://api.groq.com/openai/v1",
        max_tokens_field="max_completion_tokens",
        max_stop=4,
    ),
    Preset(
        ProviderType.TOGETHER,
        "https://api.together.xyz/v1",
        top_k=True,
        aliases=("togetherai",),
        embeddings=True,
    ),
    Preset(
        ProviderType.PERPLEXITY,
        "https://api.perplexity.ai",
        stop=False,
        top_k=True,
        seed=False,
        require_done=False,
        key_env=("PERPLEXITY_API_KEY", "PPLX_API_KEY"),
        capabilities=frozenset({"structured_output", "images"}),  # no tool calling in its API
    ),
    Preset(
        ProviderType.DEEPSEEK,
        "https://api.deepseek.com",
        max_stop=16,
        seed=False,
        stream_usage=True,
        capabilities=frozenset({"tools", "named_tool_choice", "structured_output"}),  # no images
        json_schema=False,  # response_format takes only json_object
    ),
    Preset(ProviderType.OPENROUTER, "https://openrouter.ai/api/v1", top_k=True),
    Preset(
        ProviderType.FIREWORKS,
        "https://api.fireworks.ai/inference/v1",
        top_k=True,
        aliases=("fireworks_ai",),
        embeddings=True,
    ),
    Preset(
        ProviderType.LMSTUDIO,
        "http://localhost:1234/v1",
        top_k=True,
        stream_usage=True,
        key_required=False,
        aliases=("lm_studio", "lm-studio"),
        embeddings=True,
    ),
    Preset(
        ProviderType.VLLM,
        "http://localhost:8000/v1",
        top_k=True,
        stream_usage=True,
        key_required=False,
        embeddings=True,
    ),
)
"""Every OpenAI-compatible service flyllm knows by name."""

_BY_KIND = {preset.kind: preset for preset in PRESETS}


def preset_for(kind: ProviderType) -> Preset | None:
    """The preset of a ProviderType, or None when it is not a preset."""
    return _BY_KIND.get(kind)
