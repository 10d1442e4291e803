"""manager.embed and manager.embed_batch against the emulator: order, splitting by limits, a
too-large rejection split and retried, failover within one model, the mixed-models set-up
error, usage per instance and task, and the sync manager."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from flyllm import (
    AllAttemptsFailedError,
    ConfigurationError,
    ContextLengthError,
    EmbeddingRequest,
    InvalidRequestError,
    LlmManager,
    NoInstanceAvailableError,
    SyncLlmManager,
    TaskDefinition,
)
from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.integration.conftest import ServerFactory, VirtualTime, emulator_in_thread, vectors_close

KEY = "-".join(["sk", "embed", "integration", "4242"])
MODEL = "text-embedding-3-small"
EMBED = TaskDefinition("embed")


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="openai", context_window=20) as emulator:
        yield emulator


def manager_for(*emulators: Emulator, model: str = MODEL, **kwargs: object) -> LlmManager:
    manager = LlmManager(**kwargs)  # type: ignore[arg-type]
    for emulator in emulators:
        manager.add_provider("openai", KEY, model, [EMBED], base_url=emulator.base_url)
    return manager


async def test_embed_returns_one_float32_vector_per_input_in_order(emu: Emulator) -> None:
    texts = ["the first text", "a second one", "the first text"]
    async with manager_for(emu) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed"))
        single = await manager.embed(EmbeddingRequest("just one", task="embed", dimensions=32))
    assert result.success and len(result.vectors) == 3
    assert all(
        vectors_close(v, vector(t, MODEL)) for v, t in zip(result.vectors, texts, strict=True)
    )
    assert result.vectors[0].typecode == "f"  # type: ignore[attr-defined]
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (9, 9)
    assert (result.instance_id, result.provider, result.model) == (0, "openai", MODEL)
    assert len(single.vector) == 32 and vectors_close(single.vector, vector("just one", MODEL, 32))
    assert emu.requests[0].json is not None
    assert emu.requests[0].json["encoding_format"] == "base64"  # asked compact on the wire
    assert emu.requests[1].json is not None and emu.requests[1].json["dimensions"] == 32


async def test_embed_batch_keeps_order_splits_by_batch_size_and_shares_usage(
    emu: Emulator,
) -> None:
    texts = [f"text number {i} " + "w " * (i % 3) for i in range(10)]
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed", batch_size=3, max_concurrency=2)
        report = manager.usage_report()
    assert [r.success for r in results] == [True] * 10
    assert all(
        vectors_close(r.vector, vector(t, MODEL)) for r, t in zip(results, texts, strict=True)
    )
    assert len(emu.requests) == 4  # 3 + 3 + 3 + 1
    words = sum(len(t.split()) for t in texts)
    assert sum(r.usage.total_tokens for r in results) == words
    # Each request's usage is shared by estimated size (4, 5, 5 tokens: 12 words -> 4, 4, 4).
    assert [r.usage.total_tokens for r in results[:3]] == [4, 4, 4]
    (task,) = [t for t in report["tasks"] if t["task"] == "embed"]
    assert task["prompt_tokens"] == words and task["requests"] == 4


async def test_inputs_are_split_by_the_providers_limits(emu: Emulator) -> None:
    texts = [f"t{i}" for i in range(2050)]
    async with manager_for(emu) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed", dimensions=4))
    assert len(result.vectors) == 2050 and result.attempts == 2
    assert [len(r.json["input"]) for r in emu.requests if r.json] == [2048, 2]


async def test_requests_are_packed_to_the_instances_tpm(emu: Emulator) -> None:
    texts = ["x" * 36] * 6  # ten estimated tokens each
    virtual = VirtualTime()  # the minute between requests passes at once
    async with LlmManager(clock=virtual.clock, sleep=virtual.sleep) as manager:
        manager.add_provider(
            "openai", KEY, MODEL, [EMBED], base_url=emu.base_url, tpm=25
        )  # two inputs a request
        result = await manager.embed(EmbeddingRequest(texts, task="embed", dimensions=4))
    assert len(result.vectors) == 6
    assert [len(r.json["input"]) for r in emu.requests if r.json] == [2, 2, 2]
    assert len(virtual.sleeps) >= 2  # each request after the first waited for the window


async def test_a_too_large_rejection_is_split_and_the_input_over_the_limit_fails_alone(
    emu: Emulator,
) -> None:
    texts = ["short text"] * 5 + ["word " * 30] + ["short text"] * 2  # 30 words > 20
    async with manager_for(emu) as manager:
        results = await manager.embed_batch(texts, task="embed")
        with pytest.raises(ContextLengthError, match="maximum context length is 20"):
            await manager.embed(EmbeddingRequest(texts, task="embed"))
    assert [r.success for r in results] == [True] * 5 + [False] + [True] * 2
    assert results[5].error_kind == "context_length" and results[5].vectors == ()
    assert all(vectors_close(r.vector, vector("short text", MODEL)) for i, r in enumerate(results)
               if i != 5)  # fmt: skip
    sizes = [len(r.json["input"]) for r in emu.requests[: len(emu.requests) // 2] if r.json]
    assert sizes[0] == 8 and sizes.count(1) >= 1 and 6 < len(sizes) < 12  # halved down to it


async def test_too_many_tokens_for_one_request_is_split_in_half() -> None:
    # "w w w ..." estimates at chars / 4 = half its words: the client packs all 2048 inputs
    # (~155k estimated tokens) where the emulator counts 307,200 and refuses the request.
    texts = ["w " * 150] * 2048
    async with Emulator(provider="openai") as emulator, manager_for(emulator) as manager:
        result = await manager.embed(EmbeddingRequest(texts, task="embed", dimensions=4))
        assert [len(r.json["input"]) for r in emulator.requests if r.json] == [2048, 1024, 1024]
    assert len(result.vectors) == 2048 and result.usage.total_tokens == 307_200


async def test_failover_stays_within_the_model() -> None:
    async with (
        Emulator(provider="openai") as first,
        Emulator(provider="openai") as second,
    ):
        first.schedule("server_error", 5)
        async with manager_for(first, second, strategy="round_robin") as manager:
            result = await manager.embed(EmbeddingRequest(["a b c"], task="embed"))
            health = manager.instance_health()
    assert result.instance_id == 1 and result.attempts == 2
    assert vectors_close(result.vectors[0], vector("a b c", MODEL))
    assert health[0].failures == 1


async def test_instances_of_different_models_or_dimensions_are_a_set_up_error(
    emu: Emulator,
) -> None:
    async with LlmManager() as manager:
        manager.add_provider("openai", KEY, MODEL, [EMBED], base_url=emu.base_url)
        manager.add_provider("openai", KEY, "text-embedding-3-large", ["embed"],
                             base_url=emu.base_url)  # fmt: skip
        with pytest.raises(ConfigurationError, match=r"not comparable.*mixed_models=True"):
            await manager.embed(EmbeddingRequest(["a"], task="embed"))
        failed = await manager.embed_batch(["a", "b"], task="embed")
        assert [r.error_kind for r in failed] == [None, None]  # a ConfigurationError has none
        assert all(not r.success and "not comparable" in (r.error or "") for r in failed)
        manager.add_provider("openai", KEY, MODEL, [TaskDefinition("dims")],
                             base_url=emu.base_url, parameters={"dimensions": 8})  # fmt: skip
        manager.add_provider("openai", KEY, MODEL, ["dims"], base_url=emu.base_url)
        with pytest.raises(ConfigurationError, match="dimensions 8"):
            await manager.embed(EmbeddingRequest(["a"], task="dims"))
        sized = TaskDefinition("sized", parameters={"dimensions": 16})  # wins for both
        manager.add_provider("openai", KEY, MODEL, [sized], base_url=emu.base_url,
                             parameters={"dimensions": 8})  # fmt: skip
        manager.add_provider("openai", KEY, MODEL, ["sized"], base_url=emu.base_url)
        assert len((await manager.embed(EmbeddingRequest(["a"], task="sized"))).vector) == 16
        manager.add_provider("openai", KEY, MODEL, [TaskDefinition("any", mixed_models=True)],
                             base_url=emu.base_url)  # fmt: skip
        manager.add_provider("openai", KEY, "text-embedding-3-large", ["any"],
                             base_url=emu.base_url)  # fmt: skip
        result = await manager.embed(EmbeddingRequest(["a"], task="any"))
    assert len(result.vectors) == 1
    assert emu.requests and all(r.json and r.json["model"] for r in emu.requests)


async def test_bad_requests_fail_before_anything_is_sent(emu: Emulator) -> None:
    async with manager_for(emu) as manager:
        manager.add_provider("anthropic", KEY, "claude-x", [TaskDefinition("chat")],
                             base_url=emu.url)  # fmt: skip
        for request, error in [
            (EmbeddingRequest([], task="embed"), InvalidRequestError),
            (EmbeddingRequest(["a", ""], task="embed"), InvalidRequestError),
            (EmbeddingRequest(["a", 3], task="embed"), InvalidRequestError),  # type: ignore[list-item]
            (EmbeddingRequest(["a"], task="embed", dimensions=0), InvalidRequestError),
            (EmbeddingRequest(["a"], task="embed", input_type="passage"), InvalidRequestError),
            (EmbeddingRequest(["a"], task="nope"), NoInstanceAvailableError),
            (EmbeddingRequest(["a"], task="chat"), NoInstanceAvailableError),
        ]:
            with pytest.raises(error):
                await manager.embed(request)
        with pytest.raises(InvalidRequestError, match="batch_size"):
            await manager.embed_batch(["a"], task="embed", batch_size=0)
        unknown = await manager.embed_batch(["a", "b"], task="nope")
    assert [r.error_kind for r in unknown] == ["no_instance", "no_instance"]
    assert emu.requests == []


async def test_a_dimensions_the_model_cannot_take_names_the_instance(emu: Emulator) -> None:
    async with manager_for(emu, model="text-embedding-ada-002") as manager:
        with pytest.raises(InvalidRequestError, match=r"instance 0 \(openai/text-embedding"):
            await manager.embed(EmbeddingRequest(["a"], task="embed", dimensions=8))
    assert emu.requests == []


async def test_cancelling_frees_the_instance(emu: Emulator) -> None:
    emu.set_latency(latency_ms=2_000)
    async with manager_for(emu) as manager:
        call = asyncio.ensure_future(manager.embed_batch(["a"] * 8, task="embed", batch_size=1))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert manager.instances()[0].in_flight == 0


def test_the_sync_manager_embeds_too() -> None:
    with emulator_in_thread("openai") as emu, SyncLlmManager() as manager:
        manager.add_provider("openai", KEY, MODEL, [EMBED], base_url=emu.base_url)
        one = manager.embed(EmbeddingRequest(["a b"], task="embed"))
        many = manager.embed_batch(["a", "b c"], task="embed", batch_size=1)
    assert math.isclose(sum(x * x for x in one.vector), 1.0, rel_tol=1e-5)
    assert [r.usage.total_tokens for r in many] == [1, 2]


async def test_compatible_presets_with_the_endpoint_embed_and_the_others_lack_it() -> None:
    async with Emulator(provider="vllm") as vllm, LlmManager() as manager:
        manager.add_provider("vllm", "", "bge-m3", [EMBED], base_url=vllm.base_url)
        manager.add_provider("groq", KEY, "llama", [TaskDefinition("g")], base_url=vllm.base_url)
        result = await manager.embed(EmbeddingRequest(["a b"], task="embed"))
        with pytest.raises(NoInstanceAvailableError, match="lacks embeddings"):
            await manager.embed(EmbeddingRequest(["a"], task="g"))
    assert vectors_close(result.vector, vector("a b", "bge-m3"))
    assert vllm.requests[0].path == "/v1/embeddings"
    assert vllm.requests[0].json is not None
    assert vllm.requests[0].json["encoding_format"] == "float"


async def test_hooks_see_embedding_attempts(emu: Emulator) -> None:
    events: list[tuple[str, object]] = []
    async with manager_for(emu) as manager:
        manager.add_hook(lambda e: events.append((e.kind, e.success)))
        await manager.embed(EmbeddingRequest(["a"], task="embed"))
    assert events == [("attempt_start", None), ("attempt_end", True), ("request_end", True)]


async def test_an_answer_with_the_wrong_number_of_vectors_fails_over(
    aiohttp_server_factory: ServerFactory,
) -> None:
    async def two_vectors(request: web.Request) -> web.Response:
        data = [{"index": i, "embedding": [0.5, 0.5]} for i in range(2)]
        return web.json_response({"data": data, "usage": {"prompt_tokens": 1}})

    url = await aiohttp_server_factory(two_vectors)
    async with Emulator(provider="openai") as good, LlmManager(strategy="round_robin") as manager:
        manager.add_provider("openai_compatible", "", MODEL, [EMBED], base_url=url)
        manager.add_provider("openai", KEY, MODEL, ["embed"], base_url=good.base_url)
        result = await manager.embed(EmbeddingRequest(["one input"], task="embed"))
        with pytest.raises(AllAttemptsFailedError, match="2 vectors for 1 inputs"):
            manager.disable_instance(1)
            await manager.embed(EmbeddingRequest(["one input"], task="embed"))
    assert result.instance_id == 1 and result.attempts == 2


async def test_a_request_carries_no_more_vectors_than_the_answer_size_allows(
    emu: Emulator,
) -> None:
    # 200,000 bytes * 0.9 / (3072 values * 6 bytes + 64) = 9 full-size vectors a request.
    async with manager_for(emu, max_response_bytes=200_000) as manager:
        result = await manager.embed(EmbeddingRequest([f"t{i}" for i in range(20)], task="embed"))
    assert len(result.vectors) == 20
    assert [len(r.json["input"]) for r in emu.requests if r.json] == [9, 9, 2]
