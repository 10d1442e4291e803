"""manager.embed and manager.embed_batch on Cohere instances against the emulator: order,
input_type and output_dimension on the wire, Cohere's 96 texts a request, a too-large
rejection split down to the one text, the mixed-models rule, bad dimensions before sending."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flyllm import (
    ConfigurationError,
    ContextLengthError,
    EmbeddingRequest,
    InvalidRequestError,
    LlmManager,
    TaskDefinition,
)
from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.integration.conftest import vectors_close

KEY = "-".join(["co", "embed", "integration", "4242"])
MODEL = "embed-v4.0"
EMBED = TaskDefinition("embed")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="cohere", context_window=20) as emulator:
        yield emulator


def manager_for(emu: Emulator, model: str = MODEL) -> LlmManager:
    manager = LlmManager()
    manager.add_provider("cohere", KEY, model, [EMBED], base_url=emu.base_url)
    return manager


async def test_embed_in_order_with_input_type_and_dimensions_on_the_wire(emu: Emulator) -> None:
    texts = ["the first text", "a second one", "the first text"]
    async with manager_for(emu) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed"))
        query = await manager.embed(
            EmbeddingRequest("a query", task="embed", dimensions=256, input_type="query")
        )
    assert all(
        vectors_close(v, vector(t, MODEL)) for v, t in zip(result.vectors, texts, strict=True)
    )
    assert result.vectors[0].typecode == "f"  # type: ignore[attr-defined]
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (9, 9)
    assert (result.provider, result.model) == ("cohere", MODEL)
    assert len(query.vector) == 256 and vectors_close(query.vector, vector("a query", MODEL, 256))
    first, second = (r.json for r in emu.requests)
    assert first is not None and second is not None
    assert first["input_type"] == "search_document" and first["truncate"] == "NONE"
    assert second["input_type"] == "search_query" and second["output_dimension"] == 256


async def test_embed_batch_keeps_order_in_requests_of_at_most_96(emu: Emulator) -> None:
    texts = [f"text number {i}" for i in range(100)]
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed", max_concurrency=2)
    assert [r.success for r in results] == [True] * 100
    assert all(
        vectors_close(r.vector, vector(t, MODEL)) for r, t in zip(results, texts, strict=True)
    )
    assert sorted(len(r.json["texts"]) for r in emu.requests if r.json) == [4, 96]
    assert sum(r.usage.total_tokens for r in results) == 300


async def test_a_too_large_rejection_is_split_and_the_text_over_the_limit_fails_alone(
    emu: Emulator,
) -> None:
    texts = ["short text"] * 5 + ["word " * 30] + ["short text"] * 2  # 30 words > 20
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed")
        with pytest.raises(ContextLengthError, match="too many tokens"):
            await manager.embed(EmbeddingRequest(texts, task="embed"))
    assert [r.success for r in results] == [True] * 5 + [False] + [True] * 2
    assert results[5].error_kind == "context_length"
    sizes = [len(r.json["texts"]) for r in emu.requests[: len(emu.requests) // 2] if r.json]
    assert sizes[0] == 8 and sizes.count(1) >= 1  # halved down to it


async def test_cohere_beside_another_model_is_a_set_up_error(emu: Emulator) -> None:
    async with manager_for(emu) as manager:
        manager.add_provider("openai", KEY, "text-embedding-3-small", ["embed"],
                             base_url=emu.base_url)  # fmt: skip
        with pytest.raises(ConfigurationError, match="not comparable"):
            await manager.embed(EmbeddingRequest(["a"], task="embed"))
    assert emu.requests == []


async def test_dimensions_a_model_cannot_take_name_the_instance_before_sending(
    emu: Emulator,
) -> None:
    async with manager_for(emu, "embed-english-v3.0") as manager:
        with pytest.raises(InvalidRequestError, match=r"instance 0 \(cohere/embed-english"):
            await manager.embed(EmbeddingRequest(["a"], task="embed", dimensions=256))
    async with manager_for(emu) as manager:
        with pytest.raises(InvalidRequestError, match="256, 512, 1024 or 1536"):
            await manager.embed(EmbeddingRequest(["a"], task="embed", dimensions=100))
    assert emu.requests == []


async def test_failover_stays_within_the_model() -> None:
    async with Emulator(provider="cohere") as first, Emulator(provider="cohere") as second:
        first.schedule("server_error", 5)
        async with LlmManager(strategy="round_robin") as manager:
            for emu in (first, second):
                manager.add_provider("cohere", KEY, MODEL, [EMBED], base_url=emu.base_url)
            result = await manager.embed(EmbeddingRequest(["a b c"], task="embed"))
    assert result.instance_id == 1 and result.attempts == 2
    assert vectors_close(result.vectors[0], vector("a b c", MODEL))
