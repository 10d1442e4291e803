"""Task routing, parameter merging on the wire, and strategies' distributions."""

from __future__ import annotations

import logging
import random

import pytest

from flyllm import GenerationRequest, LlmManager, ProviderType, TaskDefinition
from flyllm.emulator import key_fingerprint
from flyllm.routing.strategies import WeightedRandom
from tests.integration.conftest import EmulatorFactory, body

SUMMARY = TaskDefinition("summary", {"max_tokens": 50, "temperature": 0.3})
CODE = TaskDefinition("code", {"max_tokens": 200, "temperature": 0.1})


async def test_requests_go_only_to_instances_serving_their_task(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    oa, an, go = await emulators("openai"), await emulators("anthropic"), await emulators("google")
    manager.add_provider(
        ProviderType.OPENAI, "k-oa", "gpt-4o-mini", [SUMMARY], base_url=oa.base_url
    )
    manager.add_provider("anthropic", "k-an", "claude-sonnet-4-5", [CODE], base_url=an.base_url)
    manager.add_provider(
        "gemini", "k-go", "gemini-2.5-flash", [SUMMARY, CODE], base_url=go.base_url
    )

    summaries = await manager.batch_generate(
        [GenerationRequest(prompt=f"summarize {i}", task="summary") for i in range(6)]
    )
    assert all(r.success for r in summaries)
    assert {r.instance_id for r in summaries} == {0, 2}
    assert an.stats()["requests"] == 0
    assert oa.stats()["requests"] + go.stats()["requests"] == 6

    codes = await manager.batch_generate(
        [GenerationRequest(prompt=f"code {i}", task="code") for i in range(6)]
    )
    assert {r.instance_id for r in codes} == {1, 2}
    assert oa.stats()["requests"] == 3  # unchanged by the code batch
    assert an.stats()["by_key"] == {key_fingerprint("k-an"): 3}
    assert {r.provider for r in codes} == {"anthropic", "google"}

    # A request without a task may go anywhere.
    anywhere = await manager.batch_generate([GenerationRequest(prompt=f"x{i}") for i in range(3)])
    assert {r.instance_id for r in anywhere} == {0, 1, 2}


async def test_parameters_merge_and_arrive_translated_on_the_wire(
    manager: LlmManager, emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    oa, an, go, mi = (
        await emulators("openai"), await emulators("anthropic"),
        await emulators("google"), await emulators("mistral"),
    )  # fmt: skip
    task = TaskDefinition(
        "t",
        {"max_tokens": 40, "temperature": 0.3, "top_k": 5},
        provider_params={"anthropic": {"metadata": {"user_id": "u1"}}},
    )
    defaults = {"temperature": 0.9, "top_p": 0.5, "seed": 7}
    manager.add_provider("openai", "k1", "gpt-4o-mini", [task], base_url=oa.base_url,
                         parameters=defaults)  # fmt: skip
    manager.add_provider("anthropic", "k2", "claude-sonnet-4-5", [task], base_url=an.base_url,
                         parameters=defaults)  # fmt: skip
    manager.add_provider("google", "k3", "gemini-2.5-flash", [task], base_url=go.base_url,
                         parameters=defaults)  # fmt: skip
    manager.add_provider("mistral", "k4", "mistral-small-latest", [task], base_url=mi.base_url,
                         parameters=defaults)  # fmt: skip
    request = GenerationRequest(
        prompt="hello", task="t", params={"max_tokens": 30, "stop": ["zzz"], "logprobs": False},
        system="be brief",
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="flyllm"):
        for _ in range(2):  # twice each: the dropped-parameter warning is logged once
            await manager.batch_generate([request] * 4, max_concurrency=1)

    o = body(oa)
    assert o["max_completion_tokens"] == 30 and "max_tokens" not in o
    assert o["temperature"] == 0.3 and o["top_p"] == 0.5 and o["seed"] == 7
    assert o["stop"] == ["zzz"] and o["logprobs"] is False and "top_k" not in o
    assert o["messages"][0] == {"role": "system", "content": "be brief"}

    a = body(an)
    assert a["max_tokens"] == 30 and a["temperature"] == 0.3 and a["top_k"] == 5
    assert a["stop_sequences"] == ["zzz"] and a["system"] == "be brief"
    assert a["metadata"] == {"user_id": "u1"} and "seed" not in a
    assert "metadata" not in o  # provider_params only for their provider

    g = body(go)
    cfg = g["generationConfig"]
    assert cfg["maxOutputTokens"] == 30 and cfg["topK"] == 5 and cfg["seed"] == 7
    assert cfg["stopSequences"] == ["zzz"] and cfg["temperature"] == 0.3
    assert g["systemInstruction"]["parts"][0]["text"] == "be brief"

    m = body(mi)
    assert m["max_tokens"] == 30 and m["random_seed"] == 7 and "seed" not in m
    assert "top_k" not in m

    top_k_warnings = [r for r in caplog.records if "top_k" in r.getMessage()]
    assert len(top_k_warnings) == 2  # openai and mistral, once each
    seed_warnings = [r for r in caplog.records if "seed" in r.getMessage()]
    assert len(seed_warnings) == 1  # anthropic


async def test_anthropic_new_api_version_leaves_sampling_out(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    an = await emulators("anthropic")
    manager.add_provider(
        "anthropic",
        "k",
        "claude-sonnet-4-5",
        api_version="2026-10-21",
        base_url=an.base_url,
        parameters={"temperature": 0.2, "top_p": 0.9},
    )
    response = await manager.generate(GenerationRequest(prompt="hi"))
    assert response.success
    assert an.requests[-1].headers["anthropic-version"] == "2026-10-21"
    sent = body(an)
    assert "temperature" not in sent and "top_p" not in sent
    assert sent["max_tokens"] == 4096  # the documented default when no layer sets it


@pytest.mark.parametrize("strategy", ["least_recently_used", "round_robin"])
async def test_even_strategies_spread_a_concurrent_batch_evenly(
    strategy: str, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai", latency_ms=2)
    async with LlmManager(strategy=strategy) as manager:
        for k in range(4):
            manager.add_provider("openai", f"key-{k}", "gpt-4o-mini", base_url=emu.base_url)
        responses = await manager.batch_generate(
            [GenerationRequest(prompt=f"p{i}") for i in range(102)], max_concurrency=16
        )
    assert all(r.success for r in responses)
    counts = emu.stats()["by_key"]
    assert sorted(counts.values()) == [25, 25, 26, 26]


async def test_weighted_random_follows_weights(emulators: EmulatorFactory) -> None:
    emu = await emulators("openai")
    async with LlmManager(strategy=WeightedRandom(random.Random(3))) as manager:
        manager.add_provider("openai", "heavy", "m", base_url=emu.base_url, weight=3)
        manager.add_provider("openai", "light", "m", base_url=emu.base_url, weight=1)
        await manager.batch_generate([GenerationRequest(prompt=f"p{i}") for i in range(400)])
    counts = emu.stats()["by_key"]
    assert 2.3 < counts[key_fingerprint("heavy")] / counts[key_fingerprint("light")] < 3.9


async def test_lowest_latency_learns_the_fast_instance(emulators: EmulatorFactory) -> None:
    fast = await emulators("openai", latency_ms=1)
    slow = await emulators("openai", latency_ms=40)
    async with LlmManager(strategy="lowest_latency") as manager:
        manager.add_provider("openai", "k", "m", base_url=slow.base_url)
        manager.add_provider("openai", "k", "m", base_url=fast.base_url)
        await manager.generate_sequentially([GenerationRequest(prompt=f"p{i}") for i in range(20)])
    assert slow.stats()["requests"] == 1  # tried once while untried, never favoured again
    assert fast.stats()["requests"] == 19


async def test_least_busy_keeps_in_flight_balanced(emulators: EmulatorFactory) -> None:
    emus = [await emulators("openai", latency_ms=20) for _ in range(2)]
    async with LlmManager(strategy="least_busy") as manager:
        for emu in emus:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url)
        await manager.batch_generate(
            [GenerationRequest(prompt=f"p{i}") for i in range(40)], max_concurrency=10
        )
    counts = [e.stats()["requests"] for e in emus]
    assert sum(counts) == 40 and abs(counts[0] - counts[1]) <= 2
    assert all(e.stats()["max_in_flight"] <= 5 for e in emus)
