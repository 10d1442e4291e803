"""manager.embed and manager.embed_batch on Gemini instances against the emulator: order,
input_type and dimensions on the wire, splitting by Gemini's 100 inputs, a too-large rejection
split and retried, the mixed-models rule, and usage estimated when an answer reports none."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

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
from tests.integration.conftest import ServerFactory, vectors_close

KEY = "-".join(["AIza", "embed", "integration", "4242"])
MODEL = "gemini-embedding-001"
EMBED = TaskDefinition("embed")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="google", context_window=20) as emulator:
        yield emulator


def manager_for(emu: Emulator, model: str = MODEL) -> LlmManager:
    manager = LlmManager()
    manager.add_provider("google", KEY, model, [EMBED], base_url=emu.base_url)
    return manager


def entries(emu: Emulator, i: int) -> list[dict[str, object]]:
    sent = emu.requests[i].json
    assert isinstance(sent, dict)
    return sent["requests"]  # type: ignore[no-any-return]


async def test_embed_in_order_with_input_type_and_dimensions_on_the_wire(emu: Emulator) -> None:
    texts = ["the first text", "a second one", "the first text"]
    async with manager_for(emu) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed", input_type="query"))
        short = await manager.embed(
            EmbeddingRequest("just one", task="embed", dimensions=256, input_type="document")
        )
    assert len(result.vectors) == 3 and result.vectors[0].typecode == "f"  # type: ignore[attr-defined]
    assert all(
        vectors_close(v, vector(t, MODEL)) for v, t in zip(result.vectors, texts, strict=True)
    )
    assert (result.usage.prompt_tokens, result.provider, result.model) == (9, "google", MODEL)
    assert emu.requests[0].path == f"/v1/models/{MODEL}:batchEmbedContents"
    assert [e["taskType"] for e in entries(emu, 0)] == ["RETRIEVAL_QUERY"] * 3
    assert vectors_close(short.vector, vector("just one", MODEL)[:256])  # as sent: not renormalised
    assert not math.isclose(sum(x * x for x in short.vector), 1.0, rel_tol=1e-3)
    (sent,) = entries(emu, 1)
    assert (sent["taskType"], sent["outputDimensionality"]) == ("RETRIEVAL_DOCUMENT", 256)


async def test_embed_batch_keeps_order_over_geminis_100_inputs(emu: Emulator) -> None:
    texts = [f"text number {i}" for i in range(230)]
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed", max_concurrency=3, dimensions=8)
    assert all(r.success for r in results)
    assert all(
        vectors_close(r.vector, vector(t, MODEL)[:8]) for r, t in zip(results, texts, strict=True)
    )
    assert sorted(len(entries(emu, i)) for i in range(len(emu.requests))) == [30, 100, 100]
    assert sum(r.usage.total_tokens for r in results) == 3 * 230


async def test_a_too_large_rejection_is_split_and_the_input_over_the_limit_fails_alone(
    emu: Emulator,
) -> None:
    texts = ["short text"] * 5 + ["word " * 30] + ["short text"] * 2  # 30 words > 20
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed")
        with pytest.raises(ContextLengthError, match="exceeds the maximum number of tokens"):
            await manager.embed(EmbeddingRequest(texts, task="embed"))
    assert [r.success for r in results] == [True] * 5 + [False] + [True] * 2
    assert results[5].error_kind == "context_length"
    sizes = [len(entries(emu, i)) for i in range(len(emu.requests) // 2)]
    assert sizes[0] == 8 and sizes.count(1) >= 1  # halved down to the one input


async def test_mixed_models_are_a_set_up_error_and_a_model_without_dimensions_is_refused(
    emu: Emulator,
) -> None:
    async with manager_for(emu) as manager:
        manager.add_provider("google", KEY, "text-embedding-004", ["embed"], base_url=emu.base_url)
        with pytest.raises(ConfigurationError, match="not comparable"):
            await manager.embed(EmbeddingRequest(["a"], task="embed"))
        manager.add_provider("google", KEY, "embedding-001", [TaskDefinition("old")],
                             base_url=emu.base_url)  # fmt: skip
        with pytest.raises(InvalidRequestError, match=r"instance 2 \(google/embedding-001"):
            await manager.embed(EmbeddingRequest(["a"], task="old", dimensions=64))
    assert emu.requests == []


async def test_a_batch_size_refusal_is_split_and_missing_usage_is_estimated(
    aiohttp_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    async def gemini(request: web.Request) -> web.Response:
        sent = (await request.json())["requests"]
        seen.append(len(sent))
        if len(sent) > 2:
            message = (
                "* BatchEmbedContentsRequest.requests: at most 2 requests can be in one batch\n"
            )
            error = {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
            return web.json_response({"error": error}, status=400)
        return web.json_response({"embeddings": [{"values": [0.5, 0.5]} for _ in sent]})

    url = (await aiohttp_server_factory(gemini)).removesuffix("/v1")
    caplog.set_level(logging.WARNING)
    async with LlmManager() as manager:
        manager.add_provider("google", KEY, MODEL, [EMBED], base_url=url)
        result = await manager.embed(EmbeddingRequest(["x" * 40] * 4, task="embed"))
    assert len(result.vectors) == 4 and sorted(seen) == [2, 2, 4]  # refused, then halves
    assert result.usage.total_tokens == 4 * 11  # characters / 4 + 1 each
    assert "flyllm estimates it" in caplog.text and KEY not in caplog.text
    assert json.dumps(list(result.vectors[0])) == "[0.5, 0.5]"
