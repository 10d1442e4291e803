"""The chaos suite, CI-sized: six emulated instances in a bad hour, counted outcomes.

Four instances (one per provider) each answer 25% of requests with a mixed transient fault
(429 with retry-after, 500, 502, 503, 529, a hang past the read timeout, a reset, a malformed
body, a stream cut or an error event before the first chunk); a fifth has a revoked key and a
sixth is out of quota. The suite checks that every request is answered, at least 99.5%
successfully, none cross-wired, no key in any log line, no leaked connection, and that a
server stopped mid-run is left within its breaker threshold and taken back after it restarts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from flyllm import (
    BreakerPolicy,
    FlyLLMError,
    GenerationRequest,
    LlmManager,
    LlmResponse,
    RetryPolicy,
)
from flyllm.emulator import Emulator, Fault
from flyllm.emulator.text import prompt_tag

SCALE = int(os.environ.get("FLYLLM_CHAOS_SCALE", "1"))  # `make chaos`: the full run, 10x
PROVIDERS = ("openai", "anthropic", "google", "mistral")
KEYS = {p: f"sk-chaos-{p}-0123456789abcdef" for p in PROVIDERS}
REVOKED_KEY = "sk-chaos-revoked-0123456789abcdef"
QUOTA_KEY = "sk-chaos-quota-0123456789abcdef"
TRANSIENT = [  # 25% in all, before any text reaches the caller
    Fault("rate_limit", 0.04, retry_after=0.05),
    Fault("server_error", 0.03),
    Fault("bad_gateway", 0.03),
    Fault("unavailable", 0.03),
    Fault("overloaded", 0.03),
    Fault("hang", 0.015),
    Fault("reset", 0.03),
    Fault("malformed", 0.015),
    Fault("stream_cut", 0.01, after_chunks=0),
    Fault("stream_error", 0.01, after_chunks=0),
]


@dataclass
class Fleet:
    """The emulators, the manager over them, and what the loop and logs reported."""

    manager: LlmManager
    emulators: dict[str, Emulator]
    loop_errors: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def fleet(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Fleet]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    caplog.set_level(logging.DEBUG, logger="flyllm")
    async with AsyncExitStack() as stack:
        emus = {}
        for seed, provider in enumerate(PROVIDERS):
            emus[provider] = await stack.enter_async_context(
                Emulator(provider, seed=seed + 1, faults=TRANSIENT, api_keys={KEYS[provider]})
            )
        emus["revoked"] = await stack.enter_async_context(
            Emulator("openai", api_keys={"the-real-key"})
        )
        emus["quota"] = await stack.enter_async_context(
            Emulator("anthropic", faults=[Fault("quota")])
        )
        manager = LlmManager(
            max_attempts=6,
            read_timeout=0.5,
            retry_policy=RetryPolicy(base=0.02, cap=0.2),
            breaker=BreakerPolicy(failure_threshold=5, cooldown=0.5, max_cooldown=1.0),
        )
        for provider in PROVIDERS:
            manager.add_provider(provider, KEYS[provider], f"{provider}-model",
                                 base_url=emus[provider].base_url)  # fmt: skip
        manager.add_provider(
            "openai", REVOKED_KEY, "gpt-revoked", base_url=emus["revoked"].base_url
        )
        manager.add_provider(
            "anthropic", QUOTA_KEY, "claude-broke", base_url=emus["quota"].base_url
        )
        fleet = Fleet(manager, emus, errors)
        yield fleet
        await manager.aclose()
        await _settle(emus.values())
        for name, emu in emus.items():
            stats = emu.stats()
            assert stats["open_connections"] == 0, name  # nothing leaked
            assert stats["in_flight"] == 0, name
    loop.set_exception_handler(None)
    captured = caplog.text
    for key in (*KEYS.values(), REVOKED_KEY, QUOTA_KEY):
        assert key not in captured  # not at debug level either
    assert errors == []  # no "Task exception was never retrieved", no unhandled error


async def _settle(emus: Any) -> None:
    for _ in range(100):
        if all(e.stats()["open_connections"] == 0 for e in emus):
            return
        await asyncio.sleep(0.01)


def _check_answers(requests: list[GenerationRequest], responses: list[LlmResponse]) -> None:
    assert len(responses) == len(requests)  # every request answered, in order
    for request, response in zip(requests, responses, strict=True):
        if response.success:
            assert request.prompt is not None
            assert response.content.split()[0] == prompt_tag(request.prompt)  # its own answer
        else:
            assert response.error and response.error_kind and response.exception
    for response in responses:
        for key in (*KEYS.values(), REVOKED_KEY, QUOTA_KEY):
            assert key not in (response.error or "")


async def test_batch_through_the_bad_hour(fleet: Fleet) -> None:
    manager = fleet.manager
    requests = [GenerationRequest(prompt=f"chaos question {i}") for i in range(2000 * SCALE)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        responses = await manager.batch_generate(requests, max_concurrency=64)
        gc.collect()
    _check_answers(requests, responses)
    succeeded = sum(r.success for r in responses)
    assert succeeded / len(responses) >= 0.995, [r.error for r in responses if not r.success][:5]
    failed_kinds = {r.error_kind for r in responses if not r.success}
    assert not failed_kinds & {"authentication", "quota"}  # the broken keys cost nobody
    usage = {u.name: u for u in manager.token_usage()}
    revoked, broke = usage["openai/gpt-revoked#4"], usage["anthropic/claude-broke#5"]
    # They leave the rotation after their first failure; only requests already sent by then
    # (at most one per concurrent worker's first pick) may reach them.
    assert revoked.requests == revoked.failures <= 64 // 6 + 1
    assert broke.requests == broke.failures <= 64 // 6 + 1
    healthy = sum(u.requests - u.failures for u in manager.token_usage())
    assert healthy == succeeded
    injected = sum(sum(fleet.emulators[p].stats()["faults_injected"].values()) for p in PROVIDERS)
    assert injected > 300 * SCALE  # the bad hour really happened
    attempts = sum(r.attempts for r in responses)
    print(f"chaos batch: {succeeded}/{len(responses)} succeeded, {injected} faults injected, "
          f"{attempts / len(responses):.3f} attempts per request, revoked instance "
          f"{revoked.requests} request(s), out-of-quota {broke.requests}")  # fmt: skip
    assert all(i.stats.in_flight == 0 for i in manager._all)


async def test_streams_through_the_bad_hour(fleet: Fleet) -> None:
    manager = fleet.manager
    outcomes = {"ok": 0, "error": 0}

    async def one(i: int) -> None:
        prompt = f"chaos stream {i}"
        try:
            async with manager.stream(GenerationRequest(prompt=prompt)) as stream:
                text = "".join([chunk.text async for chunk in stream])
            assert text == stream.response.content
            assert text.split()[0] == prompt_tag(prompt)
            outcomes["ok"] += 1
        except FlyLLMError as exc:
            assert exc.kind is not None
            outcomes["error"] += 1

    semaphore = asyncio.Semaphore(32)

    async def bounded(i: int) -> None:
        async with semaphore:
            await one(i)

    await asyncio.gather(*(bounded(i) for i in range(200 * SCALE)))
    assert outcomes["ok"] + outcomes["error"] == 200 * SCALE
    print(f"chaos streams: {outcomes}")
    assert outcomes["ok"] >= 0.995 * 200 * SCALE


async def test_faults_after_the_first_chunk_end_in_typed_errors_with_partial_text(
    fleet: Fleet,
) -> None:
    manager = fleet.manager
    for provider in PROVIDERS:
        fleet.emulators[provider].set_faults(
            [Fault("stream_cut", 0.5, after_chunks=3), Fault("stream_error", 1.0, after_chunks=3)]
        )
    manager.disable_instance(4)
    manager.disable_instance(5)
    kinds: dict[str, int] = {}
    for i in range(40):
        received: list[str] = []
        with pytest.raises(FlyLLMError) as caught:
            async with manager.stream(GenerationRequest(prompt=f"cut {i}")) as stream:
                async for chunk in stream:
                    received.append(chunk.text)
        error = caught.value
        assert received and getattr(error, "partial_content", None) == "".join(received)
        assert error.kind is not None
        kinds[error.kind.value] = kinds.get(error.kind.value, 0) + 1
    assert set(kinds) <= {"stream_interrupted", "server", "overloaded"} and len(kinds) >= 2
    print(f"streams cut after text: {kinds}")


async def test_a_server_stopped_mid_run_is_left_and_taken_back(fleet: Fleet) -> None:
    manager = fleet.manager
    for provider in PROVIDERS:
        fleet.emulators[provider].set_faults([])
    victim = fleet.emulators["google"]
    port = victim.port
    await manager.batch_generate([GenerationRequest(prompt=f"warm {i}") for i in range(40)])
    await victim.stop()
    failures_before = manager._instance(2).stats.failures
    down = await manager.batch_generate(
        [GenerationRequest(prompt=f"down {i}") for i in range(400)], max_concurrency=16
    )
    assert all(r.success for r in down)
    lost = manager._instance(2).stats.failures - failures_before
    assert 5 <= lost <= 5 + 16  # its breaker threshold, plus requests already in flight
    print(f"stopped server: {lost} failed attempts before its circuit opened")
    assert manager.instance_health()[2].state in ("open", "half_open")
    restarted = Emulator("google", port=port, api_keys={KEYS["google"]})
    await restarted.start()
    try:
        await asyncio.sleep(1.1)  # past the (doubled) breaker cooldown
        back = await manager.batch_generate(
            [GenerationRequest(prompt=f"back {i}") for i in range(60)], max_concurrency=4
        )
        assert all(r.success for r in back)
        assert restarted.stats()["requests"] >= 5  # the probe, then its share again
        assert manager.instance_health()[2].state == "closed"
    finally:
        await manager.aclose()
        await restarted.stop()
