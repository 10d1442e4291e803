"""manager.embed and manager.embed_batch over Ollama's ``/api/embed`` on the emulator: order,
float32 vectors, what goes on the wire (truncate off, dimensions, no input_type), splitting by
flyllm's caps, a too-long input refused, split down to and failed alone, the mixed-models rule."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from flyllm import (
    ConfigurationError,
    ContextLengthError,
    EmbeddingRequest,
    LlmManager,
    TaskDefinition,
)
from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.integration.conftest import vectors_close

MODEL = "nomic-embed-text"
EMBED = TaskDefinition("embed")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="ollama", context_window=20) as emulator:
        yield emulator


def manager_for(emu: Emulator, model: str = MODEL) -> LlmManager:
    manager = LlmManager()
    manager.add_provider("ollama", "", model, [EMBED], base_url=emu.base_url)
    return manager


async def test_embed_in_order_with_usage_and_the_wire_shape(emu: Emulator) -> None:
    texts = ["the first text", "a second one", "the first text"]
    async with manager_for(emu) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed", input_type="query"))
        short = await manager.embed(EmbeddingRequest("one", task="embed", dimensions=32))
    assert result.success and len(result.vectors) == 3
    full = [vector(t, MODEL, 768) for t in texts]
    assert all(vectors_close(v, w) for v, w in zip(result.vectors, full, strict=True))
    assert result.vectors[0].typecode == "f"  # type: ignore[attr-defined]
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (9, 9)
    assert (result.instance_id, result.provider, result.model) == (0, "ollama", MODEL)
    assert len(short.vector) == 32 and vectors_close(short.vector, vector("one", MODEL, 32))
    first, second = (r.json for r in emu.requests)
    assert first == {"model": MODEL, "input": texts, "truncate": False}  # no input_type
    assert second == {"model": MODEL, "input": ["one"], "truncate": False, "dimensions": 32}


async def test_embed_batch_keeps_order_and_splits_by_the_caps(emu: Emulator) -> None:
    texts = [f"text {i}" for i in range(515)]
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed", max_concurrency=2, dimensions=8)
        sized = await manager.embed_batch(texts[:7], task="embed", batch_size=3, dimensions=8)
        full = await manager.embed_batch(texts, task="embed")
    assert all(r.success for r in results) and len(results) == 515
    assert all(
        vectors_close(r.vector, vector(t, MODEL, 8)) for r, t in zip(results, texts, strict=True)
    )
    assert [len(r.json["input"]) for r in emu.requests[:2] if r.json] == [512, 3]
    assert sum(r.usage.total_tokens for r in results) == 2 * 515
    assert [r.vector for r in sized] == [r.vector for r in results[:7]]
    assert [len(r.json["input"]) for r in emu.requests[2:5] if r.json] == [3, 3, 1]
    # Without dimensions the answer-size cap binds: 4096 values of 16 bytes at most a vector.
    assert [len(r.json["input"]) for r in emu.requests[5:] if r.json] == [460, 55]
    assert all(len(r.vector) == 768 for r in full)


async def test_a_too_long_input_is_split_down_to_and_fails_alone(emu: Emulator) -> None:
    texts = ["short text"] * 5 + ["word " * 30] + ["short text"] * 2  # 30 words > 20
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed")
        with pytest.raises(ContextLengthError, match="exceeds the context length"):
            await manager.embed(EmbeddingRequest(texts, task="embed"))
    assert [r.success for r in results] == [True] * 5 + [False] + [True] * 2
    assert results[5].error_kind == "context_length" and results[5].vectors == ()
    assert all(vectors_close(r.vector, vector("short text", MODEL, 768))
               for i, r in enumerate(results) if i != 5)  # fmt: skip
    sizes = [len(r.json["input"]) for r in emu.requests[: len(emu.requests) // 2] if r.json]
    assert sizes[0] == 8 and sizes.count(1) >= 1 and 6 < len(sizes) < 12  # halved down to it


async def test_the_caller_may_let_ollama_truncate(emu: Emulator) -> None:
    long = "word " * 30
    async with LlmManager() as manager:
        manager.add_provider("ollama", "", MODEL, [TaskDefinition("cut", parameters={
            "truncate": True})], base_url=emu.base_url)  # fmt: skip
        result = await manager.embed(EmbeddingRequest([long], task="cut"))
    assert vectors_close(result.vectors[0], vector(" ".join(["word"] * 20), MODEL, 768))
    assert result.usage.prompt_tokens == 20  # what the server embedded


async def test_two_ollama_models_in_one_task_are_a_set_up_error(emu: Emulator) -> None:
    async with manager_for(emu) as manager:
        manager.add_provider("ollama", "", "mxbai-embed-large", ["embed"], base_url=emu.base_url)
        with pytest.raises(ConfigurationError, match="not comparable"):
            await manager.embed(EmbeddingRequest(["a"], task="embed"))
    assert emu.requests == []


async def test_a_busy_server_fails_over_to_the_same_model() -> None:
    async with Emulator(provider="ollama") as first, Emulator(provider="ollama") as second:
        first.schedule("overloaded", 5)
        async with LlmManager(strategy="round_robin") as manager:
            for emu in (first, second):
                manager.add_provider("ollama", "", MODEL, [EMBED], base_url=emu.base_url)
            result = await manager.embed(EmbeddingRequest(["a b c"], task="embed"))
    assert result.instance_id == 1 and result.attempts == 2
    assert vectors_close(result.vectors[0], vector("a b c", MODEL, 768))
