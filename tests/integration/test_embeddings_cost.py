"""Embedding models have prices: an embed's cost shows in the usage report, per instance and
per task, like generation's."""

from __future__ import annotations

import pytest

from flyllm import EmbeddingRequest, LlmManager, TaskDefinition
from flyllm.emulator import Emulator
from flyllm.pricing import EMBEDDING_PRICES, lookup_price

KEY = "-".join(["sk", "embed", "cost", "77"])


async def test_an_embeds_cost_is_in_the_usage_report() -> None:
    async with Emulator(provider="openai") as emu, LlmManager() as manager:
        manager.add_provider(
            "openai", KEY, "text-embedding-3-small", [TaskDefinition("embed")],
            base_url=emu.base_url,
        )  # fmt: skip
        result = await manager.embed(EmbeddingRequest(["one two three", "four five"], task="embed"))
        report = manager.usage_report()
    tokens = result.usage.prompt_tokens
    assert tokens == 5  # the emulator counts words
    want = tokens * 0.02 / 1_000_000
    assert report["instances"][0]["cost_usd"] == pytest.approx(want)
    (task,) = report["tasks"]
    assert task["task"] == "embed" and task["cost_complete"] is True
    assert task["cost_usd"] == pytest.approx(want)
    assert report["total"]["cost_usd"] == pytest.approx(want)


@pytest.mark.parametrize(
    ("provider", "model", "per_mtok"),
    [
        ("openai", "text-embedding-3-small", 0.02),
        ("openai", "text-embedding-3-large", 0.13),
        ("openai", "text-embedding-ada-002", 0.10),
        ("azure", "text-embedding-3-large", 0.13),
        ("google", "gemini-embedding-001", 0.15),
        ("mistral", "mistral-embed", 0.10),
        ("mistral", "codestral-embed", 0.15),
        ("cohere", "embed-v4.0", 0.12),
        ("cohere", "embed-english-v3.0", 0.10),
        ("cohere", "embed-multilingual-v3.0", 0.10),
    ],
)
def test_embedding_models_have_an_input_price_and_no_output_price(
    provider: str, model: str, per_mtok: float
) -> None:
    price = lookup_price(provider, model)
    assert price is not None
    assert price.input_per_mtok == per_mtok and price.output_per_mtok == 0.0


def test_unknown_embedding_models_stay_unknown_not_free() -> None:
    assert lookup_price("google", "text-embedding-004") is None
    assert lookup_price("cohere", "embed-v9-imaginary") is None
    assert all(p.input_per_mtok > 0 for p in EMBEDDING_PRICES.values())
