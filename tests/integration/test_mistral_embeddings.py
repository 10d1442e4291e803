"""manager.embed and manager.embed_batch on Mistral instances against the emulator: order,
input_type and dimensions on the wire, Mistral's limits, a too-large rejection split and
retried, and the mixed-models rule."""

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

KEY = "-".join(["mistral", "embed", "integration", "4242"])
MODEL = "mistral-embed"
EMBED = TaskDefinition("embed")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="mistral", api_keys={KEY}, context_window=20) as emulator:
        yield emulator


def manager_for(emu: Emulator, model: str = MODEL) -> LlmManager:
    manager = LlmManager()
    manager.add_provider("mistral", KEY, model, [EMBED], base_url=emu.base_url)
    return manager


def sent(emu: Emulator) -> list[dict[str, object]]:
    return [r.json for r in emu.requests if r.json is not None]


async def test_embed_returns_mistral_vectors_in_order_without_input_type(emu: Emulator) -> None:
    texts = ["the first text", "a second one", "the first text"]
    async with manager_for(emu) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed", input_type="query"))
    assert len(result.vectors) == 3 and result.vectors[0].typecode == "f"  # type: ignore[attr-defined]
    assert all(
        vectors_close(v, vector(t, MODEL, 1024)) for v, t in zip(result.vectors, texts, strict=True)
    )
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (9, 9)
    assert (result.instance_id, result.provider, result.model) == (0, "mistral", MODEL)
    assert sent(emu) == [{"model": MODEL, "input": texts}]  # no input_type: Mistral has none
    assert emu.requests[0].path == "/v1/embeddings"


async def test_embed_batch_keeps_order_and_shares_usage(emu: Emulator) -> None:
    texts = [f"text number {i} " + "w " * (i % 3) for i in range(7)]
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed", batch_size=3, max_concurrency=2)
    assert all(
        vectors_close(r.vector, vector(t, MODEL, 1024)) for r, t in zip(results, texts, strict=True)
    )
    assert [len(r["input"]) for r in sent(emu)] == [3, 3, 1]  # type: ignore[arg-type]
    assert sum(r.usage.total_tokens for r in results) == sum(len(t.split()) for t in texts)


async def test_dimensions_go_as_output_dimension_to_codestral_embed(emu: Emulator) -> None:
    async with manager_for(emu, "codestral-embed") as manager:
        short = await manager.embed(
            EmbeddingRequest(["def f(): pass"], task="embed", dimensions=64)
        )
        default = await manager.embed(EmbeddingRequest(["def f(): pass"], task="embed"))
    assert len(short.vector) == 64 and len(default.vector) == 1536
    assert [r.get("output_dimension") for r in sent(emu)] == [64, None]


async def test_dimensions_on_mistral_embed_fail_before_sending_naming_the_instance(
    emu: Emulator,
) -> None:
    async with manager_for(emu) as manager:
        with pytest.raises(InvalidRequestError, match=r"instance 0 \(mistral/mistral-embed"):
            await manager.embed(EmbeddingRequest(["a"], task="embed", dimensions=256))
    assert emu.requests == []


async def test_a_too_large_input_is_split_out_and_fails_alone(emu: Emulator) -> None:
    texts = ["short text"] * 3 + ["word " * 30] + ["short text"] * 2  # 30 words > 20
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed")
        with pytest.raises(ContextLengthError, match="too large for model"):
            await manager.embed(EmbeddingRequest(texts, task="embed"))
    assert [r.success for r in results] == [True] * 3 + [False] + [True] * 2
    assert results[3].error_kind == "context_length"
    assert all(
        vectors_close(r.vector, vector("short text", MODEL, 1024)) for r in results if r.success
    )


async def test_too_many_tokens_for_one_request_is_split_in_half() -> None:
    # "w w ..." estimates at half its words: 100 inputs of 300 words pack into one request
    # (~15,100 estimated tokens) that the emulator counts as 30,000 > 16,384 and refuses.
    texts = ["w " * 300] * 100
    async with Emulator(provider="mistral") as emulator, manager_for(emulator) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed"))
        assert [len(r["input"]) for r in sent(emulator)] == [100, 50, 50]  # type: ignore[arg-type]
    assert len(result.vectors) == 100 and result.usage.total_tokens == 30_000


async def test_inputs_are_split_by_mistrals_input_count(emu: Emulator) -> None:
    async with manager_for(emu, "codestral-embed") as manager:
        result = await manager.embed(
            EmbeddingRequest([f"t{i}" for i in range(600)], task="embed", dimensions=8)
        )
    assert len(result.vectors) == 600
    assert [len(r["input"]) for r in sent(emu)] == [512, 88]  # type: ignore[arg-type]


async def test_mistral_models_or_dimensions_do_not_mix(emu: Emulator) -> None:
    async with manager_for(emu) as manager:
        manager.add_provider("mistral", KEY, "codestral-embed", ["embed"], base_url=emu.base_url)
        with pytest.raises(ConfigurationError, match="not comparable"):
            await manager.embed(EmbeddingRequest(["a"], task="embed"))
        code = TaskDefinition("code")
        manager.add_provider("mistral", KEY, "codestral-embed", [code], base_url=emu.base_url,
                             parameters={"dimensions": 256})  # fmt: skip
        manager.add_provider("mistral", KEY, "codestral-embed", ["code"], base_url=emu.base_url)
        with pytest.raises(ConfigurationError, match="dimensions 256"):
            await manager.embed(EmbeddingRequest(["a"], task="code"))
    assert emu.requests == []
