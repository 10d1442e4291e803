"""Prices per model, for cost accounting and the ``lowest_cost`` strategy.

Prices come from the ``genai-prices`` package's bundled data (no network at run time), which is
imported only when a cost is first asked for, so ``import flyllm`` stays light. Users override
or add prices per model (``LlmManager(prices={...})``) or per instance
(``add_provider(..., price=ModelPrice(...))``). Cached input tokens are priced at the model's
cache-read price. Tiered prices (e.g. Gemini above 200k tokens of context) use the base tier.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flyllm.types import Usage

__all__ = ["ModelPrice", "lookup_price"]

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
