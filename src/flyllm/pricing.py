"""Prices per model, for cost accounting and the ``lowest_cost`` strategy.

Prices come from the ``genai-prices`` package's bundled data (no network at run time), which is
imported only when a cost is first asked for, so ``import flyllm`` stays light. Users override
or add prices per model (``LlmManager(prices={...})``) or per instance
(``add_provider(..., price=ModelPrice(...))``). Cached input tokens are priced at the model's
cache-read price. Tiered prices (e.g. Gemini above 200k tokens of context) use the base tier.

Embedding models are priced from flyllm's own table (``EMBEDDING_PRICES``) first: genai-prices
lists some of them without an output price, which would make them unknown, and lacks others.
An embedding request has input tokens only, so its output price is 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flyllm.types import Usage

__all__ = ["EMBEDDING_PRICES", "ModelPrice", "lookup_price"]

_MTOK = 1_000_000


@dataclass(slots=True, frozen=True)
class ModelPrice:
    """USD per million tokens: input, output, and cached input (None: priced as input)."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, usage: Usage) -> float:
        """The price of this usage in USD."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        return (
            (usage.prompt_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.completion_tokens * self.output_per_mtok
        ) / _MTOK

    def expected(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The likely price of a request of this size in USD."""
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / (
            _MTOK
        )


_OPENAI_EMBED = {
    # OpenAI's pricing page (openai.com/api/pricing, "Embeddings"), the same figures as the
    # genai-prices 0.2.3 snapshot locked here; Azure's pay-as-you-go list price is the same.
    "text-embedding-3-small": ModelPrice(0.02, 0.0),
    "text-embedding-3-large": ModelPrice(0.13, 0.0),
    "text-embedding-ada-002": ModelPrice(0.10, 0.0),
}

EMBEDDING_PRICES: dict[tuple[str, str], ModelPrice] = {
    **{("openai", model): price for model, price in _OPENAI_EMBED.items()},
    **{("azure", model): price for model, price in _OPENAI_EMBED.items()},
    # Gemini API pricing page (ai.google.dev/gemini-api/docs/pricing, paid tier), as in the
    # genai-prices 0.2.3 snapshot. text-embedding-004 is left out: it was free of charge
    # there, and a price of 0 would hide that flyllm does not know a paid one.
    ("google", "gemini-embedding-001"): ModelPrice(0.15, 0.0),
    # Mistral's pricing page (mistral.ai/pricing, "Embeddings"): mistral-embed as in the
    # genai-prices 0.2.3 snapshot; codestral-embed from Mistral's launch post (2025-05-28).
    ("mistral", "mistral-embed"): ModelPrice(0.10, 0.0),
    ("mistral", "codestral-embed"): ModelPrice(0.15, 0.0),
    # Cohere's pricing page (cohere.com/pricing, "Embed"): Embed 4 per text token (as in the
    # genai-prices 0.2.3 snapshot); the v3 models (English, multilingual and their light
    # versions) at $0.10 per million tokens.
    ("cohere", "embed-v4.0"): ModelPrice(0.12, 0.0),
    ("cohere", "embed-english-v3.0"): ModelPrice(0.10, 0.0),
    ("cohere", "embed-multilingual-v3.0"): ModelPrice(0.10, 0.0),
    ("cohere", "embed-english-light-v3.0"): ModelPrice(0.10, 0.0),
    ("cohere", "embed-multilingual-light-v3.0"): ModelPrice(0.10, 0.0),
}
"""USD per million input tokens of the embedding models, by (flyllm provider, model). Prices
as the vendors published them (checked 2026-12 against the genai-prices 0.2.3 data where it
has them; the vendor pages themselves could not be re-read from here): check your contract
and override with ``prices=`` / ``price=`` when they differ."""

# Where flyllm's provider names differ from genai-prices' provider ids.
_PROVIDER_IDS = {"gemini": "google", "azure": "azure"}


def _rate(value: Any) -> float | None:
    """A genai-prices rate (a Decimal, or tiered prices whose base tier counts) as a float."""
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    base = getattr(value, "base", None)
    return float(base) if base is not None else None


@functools.lru_cache(maxsize=512)
def lookup_price(provider: str, model: str) -> ModelPrice | None:
    """The bundled price of ``model`` at ``provider`` (flyllm's provider name), or None when it
    is unknown or genai-prices is not installed (cost is then reported as unknown, never 0)."""
    embedding = EMBEDDING_PRICES.get((provider, model))
    if embedding is not None:
        return embedding
    try:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price
    except ImportError:
        return None
    try:
        found = calc_price(
            PriceUsage(input_tokens=_MTOK),
            model_ref=model,
            provider_id=_PROVIDER_IDS.get(provider, provider),
        ).model_price
    except (LookupError, ValueError):
        return None
    price_in = _rate(getattr(found, "input_mtok", None))
    price_out = _rate(getattr(found, "output_mtok", None))
    if price_in is None or price_out is None:
        return None
    return ModelPrice(price_in, price_out, _rate(getattr(found, "cache_read_mtok", None)))
