"""Resilience against the emulator: cooldowns steer traffic, circuits open and heal, waits only
when every candidate is cooling and only within the deadline, fallback tasks, client-side rate
limits, headroom learned from headers, per-attempt timeouts and oversized answers."""

from __future__ import annotations

import asyncio
import io

import pytest
from aiohttp import web

from flyllm import (
    AllAttemptsFailedError,
    BreakerPolicy,
    ContentFilterError,
    GenerationRequest,
    LlmManager,
    NoInstanceAvailableError,
    TaskDefinition,
)
from flyllm.emulator import Fault
from tests.integration.conftest import SLEEPS, EmulatorFactory, ServerFactory


async def test_a_rate_limited_instance_cools_down_while_others_take_the_traffic(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    limited, other = await emulators("openai"), await emulators("anthropic")
    manager.add_provider("openai", "k", "m", base_url=limited.base_url)
    manager.add_provider("anthropic", "k", "m", base_url=other.base_url)
    limited.schedule(Fault("rate_limit", retry_after=30.0))
    responses = await manager.generate_sequentially([GenerationRequest(prompt="x")] * 6)
    assert all(r.success for r in responses)
    assert limited.stats()["requests"] == 1  # the 429, then nothing while it cools
    assert other.stats()["requests"] == 6
    (health,) = [h for h in manager.instance_health() if h.id == 0]
    assert health.state == "cooling" and health.reason == "rate_limit"
    assert 25 < health.cooldown_left <= 30
    assert SLEEPS == []  # nobody waited: there was useful work elsewhere


async def test_when_every_candidate_cools_the_request_waits_for_the_earliest(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    a, b = await emulators("openai"), await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=a.base_url)
    manager.add_provider("openai", "k", "m", base_url=b.base_url)
    a.schedule(Fault("rate_limit", retry_after=5.0))
    b.schedule(Fault("rate_limit", retry_after=2.0))
    response = await manager.generate(GenerationRequest(prompt="x"))
    assert response.success and response.instance_id == 1 and response.attempts == 3
    assert len(SLEEPS) == 1 and SLEEPS[0] == pytest.approx(2.0, abs=0.05)


async def test_a_wait_past_the_deadline_fails_at_once_saying_when(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("anthropic")
    manager.add_provider("anthropic", "k", "claude", base_url=emu.base_url, name="main")
    emu.schedule(Fault("rate_limit", retry_after=45.0))
    with pytest.raises(AllAttemptsFailedError, match=r"instance 0 \(main\), is ready in 4\d"):
        await manager.generate(GenerationRequest(prompt="x", deadline=10.0))
    assert SLEEPS == []
    with pytest.raises(NoInstanceAvailableError, match="ready in 4"):
        await manager.generate(GenerationRequest(prompt="x", deadline=10.0))
    assert emu.stats()["requests"] == 1
    response = await manager.generate(GenerationRequest(prompt="x"))  # no deadline: may wait
    assert response.success and SLEEPS and 40 < SLEEPS[0] <= 45


async def test_circuit_opens_after_consecutive_failures_and_heals_after_a_probe(
    emulators: EmulatorFactory,
) -> None:
    from tests.integration.conftest import VirtualTime

    time = VirtualTime()
    sick, healthy = await emulators("mistral"), await emulators("mistral")
    policy = BreakerPolicy(failure_threshold=3, cooldown=30.0)
    async with LlmManager(breaker=policy, clock=time.clock, sleep=time.sleep) as manager:
        manager.add_provider("mistral", "k", "m", base_url=sick.base_url)
        manager.add_provider("mistral", "k", "m", base_url=healthy.base_url)
        sick.set_faults([Fault("server_error")])
        await manager.generate_sequentially([GenerationRequest(prompt="x")] * 10)
        assert sick.stats()["requests"] == 3  # then its circuit opened
        out = io.StringIO()
        manager.print_instance_health(out)
        assert "open" in out.getvalue() and "server" in out.getvalue()
        sick.set_faults([])
        time.offset += 31.0  # the cooldown passes
        await manager.generate_sequentially([GenerationRequest(prompt="x")] * 4)
        assert sick.stats()["requests"] == 5  # one probe, then back in the rotation
        assert {h.state for h in manager.instance_health()} == {"closed"}


async def test_fallback_task_takes_a_too_long_prompt(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    small = await emulators("openai", context_window=20)
    large = await emulators("google", context_window=2000)
    manager.define_task(TaskDefinition("summary_large", {"max_tokens": 50}))
    manager.define_task(TaskDefinition("summary", {"max_tokens": 10}, fallback=["summary_large"]))
    manager.add_provider("openai", "k", "small", ["summary"], base_url=small.base_url)
    manager.add_provider("google", "k", "large", ["summary_large"], base_url=large.base_url)
    long_prompt = "word " * 100
    response = await manager.generate(GenerationRequest(prompt=long_prompt, task="summary"))
    assert response.success and response.model == "large" and response.attempts == 2
    assert large.requests[-1].json["generationConfig"]["maxOutputTokens"] == 50  # type: ignore[index]
    with pytest.raises(ContentFilterError):  # refusals do not fall back unless the task says so
        await manager.generate(GenerationRequest(prompt="[[refusal]] x", task="summary"))


async def test_fallback_on_outage_and_on_content_filter_when_allowed(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    down, backup = await emulators("anthropic"), await emulators("mistral")
    manager.define_task(TaskDefinition("backup"))
    manager.define_task(
        TaskDefinition("main", fallback=["backup"], fallback_on_content_filter=True)
    )
    manager.add_provider("anthropic", "k", "claude", ["main"], base_url=down.base_url)
    manager.add_provider("mistral", "k", "mistral", ["backup"], base_url=backup.base_url)
    refused = await manager.generate(GenerationRequest(prompt="[[refusal]] x", task="main"))
    assert refused.success and refused.provider == "mistral"
    down.set_faults([Fault("overloaded")])
    responses = await manager.generate_sequentially(
        [GenerationRequest(prompt="y", task="main")] * 3
    )
    assert all(r.success and r.provider == "mistral" for r in responses)
    with pytest.raises(NoInstanceAvailableError, match="fallback task of 'x', 'nope'"):
        manager.define_task(TaskDefinition("x", fallback=["nope"]))
        await manager.generate(GenerationRequest(prompt="y", task="x"))


async def test_requests_per_minute_are_held_client_side(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=emu.base_url, rpm=3)
    started = manager.clock()
    responses = await manager.batch_generate([GenerationRequest(prompt="x")] * 7)
    assert all(r.success for r in responses)
    assert emu.stats()["requests"] == 7 and emu.stats()["responses_by_status"] == {"200": 7}
    assert 119.0 < manager.clock() - started < 125.0  # 3 now, 3 a minute later, 1 after that


async def test_tokens_per_minute_and_concurrency_limits(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai", latency_ms=20)
    manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=2)
    await manager.batch_generate([GenerationRequest(prompt="x")] * 12, max_concurrency=8)
    assert emu.stats()["max_in_flight"] == 2
    manager.add_provider("openai", "k", "m", base_url=emu.base_url, tpm=100, name="tiny")
    manager.disable_instance(0)
    with pytest.raises(NoInstanceAvailableError):  # 4000 estimated tokens never fit 100 TPM
        await manager.generate(GenerationRequest(prompt="x", params={"max_tokens": 4000}))


async def test_headroom_from_response_headers_slows_down_before_a_429(
    manager: LlmManager, aiohttp_server_factory: ServerFactory
) -> None:
    calls: list[float] = []

    async def spent(request: web.Request) -> web.Response:
        calls.append(asyncio.get_running_loop().time())
        body = {
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip
        headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"}
        return web.json_response(body, headers=headers)

    url = await aiohttp_server_factory(spent)
    manager.add_provider("openai", "k", "m", base_url=url)
    await manager.generate_sequentially([GenerationRequest(prompt="x")] * 3)
    assert len(calls) == 3
    assert len(SLEEPS) == 2  # waited for the reset each time
    assert all(abs(s - 20.0) < 0.5 for s in SLEEPS)


async def test_a_hung_instance_costs_its_read_timeout_then_fails_over(
    emulators: EmulatorFactory,
) -> None:
    hung, ok = await emulators("google"), await emulators("google")
    hung.set_faults([Fault("hang")])
    async with LlmManager(read_timeout=30.0) as manager:
        manager.add_provider("google", "k", "g", base_url=hung.base_url, read_timeout=0.2)
        manager.add_provider("google", "k", "g", base_url=ok.base_url)
        started = asyncio.get_running_loop().time()
        response = await manager.generate(GenerationRequest(prompt="x"))
        assert response.success and response.attempts == 2
        assert asyncio.get_running_loop().time() - started < 2.0
        hung_only = await manager.batch_generate(
            [GenerationRequest(prompt="y", deadline=0.3, read_timeout=10.0)]
        )
    assert hung_only[0].error_kind == "timeout" and "deadline" in (hung_only[0].error or "")


async def test_an_oversized_answer_is_cut_off_with_a_clear_error(
    emulators: EmulatorFactory,
) -> None:
    big, small = await emulators("openai", reply_tokens=5000), await emulators("openai")
    async with LlmManager(max_response_bytes=10_000) as manager:
        manager.add_provider("openai", "k", "m", base_url=big.base_url)
        manager.add_provider("openai", "k", "m", base_url=small.base_url)
        response = await manager.generate(GenerationRequest(prompt="x"))
        assert response.success and response.instance_id == 1
        manager.disable_instance(1)
        (failed,) = await manager.batch_generate([GenerationRequest(prompt="x")])
        assert failed.error_kind == "malformed_response"
        assert "larger than 10000 bytes" in (failed.error or "")
        with pytest.raises(AllAttemptsFailedError, match="longer than 10000 bytes"):
            async with manager.stream(GenerationRequest(prompt="x", max_attempts=1)) as stream:
                async for _ in stream:
                    pass


async def test_a_retry_hint_outlasts_the_breaker_cooldown_it_opened(
    emulators: EmulatorFactory, aiohttp_server_factory: ServerFactory
) -> None:
    from tests.integration.conftest import VirtualTime

    async def unavailable(request: web.Request) -> web.StreamResponse:
        error = {"error": {"message": "overloaded", "type": "server_error"}}
        return web.json_response(error, status=503, headers={"Retry-After": "2"})

    time = VirtualTime()
    sick, healthy = await aiohttp_server_factory(unavailable), await emulators("openai")
    policy = BreakerPolicy(failure_threshold=1, cooldown=0.7)
    async with LlmManager(breaker=policy, clock=time.clock, sleep=time.sleep) as manager:
        manager.add_provider("openai", "k", "m", base_url=sick)
        manager.add_provider("openai", "k", "m", base_url=healthy.base_url)
        response = await manager.generate(GenerationRequest(prompt="x"))
        assert response.success and response.instance_id == 1 and response.attempts == 2
        (health,) = [h for h in manager.instance_health() if h.id == 0]
        assert health.state == "open" and health.cooldown_left > 1.9  # the hint, not 0.7 s
        time.offset += 1.0  # past the breaker's own cooldown, within the hint
        for _ in range(3):
            response = await manager.generate(GenerationRequest(prompt="x"))
            assert response.instance_id == 1 and response.attempts == 1
