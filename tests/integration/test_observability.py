"""Hooks, Prometheus metrics, the request journal, cost and usage reports, lowest_cost."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import pathlib

import pytest
from prometheus_client import CollectorRegistry

from flyllm import GenerationRequest, LlmManager, TaskDefinition
from flyllm.emulator import Fault
from flyllm.observe.events import Event
from flyllm.observe.journal import Journal
from flyllm.observe.metrics import PrometheusMetrics
from flyllm.pricing import ModelPrice, lookup_price
from tests.integration.conftest import EmulatorFactory


async def test_hooks_see_every_attempt_wait_and_request_end(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad, good = await emulators("openai"), await emulators("mistral")
    manager.define_task(TaskDefinition("t"))
    manager.add_provider("openai", "sk-hook-secret-123", "gpt", ["t"], base_url=bad.base_url)
    manager.add_provider("mistral", "k2", "mistral", ["t"], base_url=good.base_url)
    events: list[Event] = []
    manager.add_hook(events.append)
    bad.schedule("server_error")
    await manager.generate(GenerationRequest(prompt="hi", task="t", params={"max_tokens": 5}))
    kinds = [e.kind for e in events]
    assert kinds == ["attempt_start", "attempt_end", "attempt_start", "attempt_end", "request_end"]
    first_end, second_end, done = events[1], events[3], events[4]
    assert first_end.success is False and first_end.error_kind == "server"
    assert first_end.status == 500 and first_end.provider == "openai"
    assert second_end.success and second_end.usage and second_end.usage.completion_tokens == 5
    assert second_end.params == {"max_tokens": 5} and second_end.content
    assert done.success and done.attempt == 2 and done.task == "t"
    assert len({e.request_id for e in events}) == 1
    assert "sk-hook-secret-123" not in repr(events)

    def broken(_event: Event) -> None:
        raise RuntimeError("hook bug")

    manager.add_hook(broken)
    response = await manager.generate(GenerationRequest(prompt="again", task="t"))
    assert response.success  # a failing hook never breaks a request
    manager.remove_hook(broken)


async def test_prometheus_metrics_count_requests_tokens_errors_and_health(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    registry = CollectorRegistry()
    manager.add_hook(PrometheusMetrics(registry=registry))
    a, b = await emulators("anthropic"), await emulators("google")
    manager.add_provider("anthropic", "k", "claude", name="claude-1", base_url=a.base_url)
    manager.add_provider("google", "k", "gemini", name="gemini-1", base_url=b.base_url)
    a.schedule(Fault("rate_limit", retry_after=3.0))
    await manager.batch_generate([GenerationRequest(prompt=f"p{i}") for i in range(6)])
    async with manager.stream(GenerationRequest(prompt="s")) as stream:
        async for _ in stream:
            pass

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    assert value("flyllm_requests_total", task="", stream="false", outcome="success") == 6
    assert value("flyllm_requests_total", task="", stream="true", outcome="success") == 1
    assert value("flyllm_errors_total", instance="claude-1", provider="anthropic",
                 model="claude", task="", stream="false", kind="rate_limit") == 1  # fmt: skip
    assert value("flyllm_failovers_total", task="", stream="false") == 1
    prompt = value("flyllm_tokens_total", instance="gemini-1", provider="google", model="gemini",
                   task="", stream="false", type="prompt")  # fmt: skip
    assert prompt > 0
    assert value("flyllm_attempt_latency_seconds_count", instance="gemini-1", provider="google",
                 model="gemini", task="", stream="false") >= 1  # fmt: skip
    assert value("flyllm_instance_health", instance="gemini-1", provider="google",
                 model="gemini") == 1.0  # fmt: skip


async def test_journal_writes_one_line_per_attempt_without_keys(
    manager: LlmManager, emulators: EmulatorFactory, tmp_path: pathlib.Path
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "sk-journal-secret-9", "gpt", base_url=emu.base_url)
    path = tmp_path / "journal.jsonl"
    with Journal(path, include_content=True) as journal:
        manager.add_hook(journal)
        emu.schedule("server_error")
        await manager.generate_sequentially([GenerationRequest(prompt=f"p{i}") for i in range(3)])
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["outcome"] for line in lines] == ["server", "success", "success", "success"]
    assert lines[1]["usage"]["total_tokens"] > 0 and lines[1]["content"]
    assert lines[0]["status"] == 500 and lines[0]["instance"] == "openai/gpt#0"
    assert "sk-journal-secret-9" not in text


async def test_usage_report_per_instance_and_task_with_costs(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    oa, local = await emulators("openai"), await emulators("openai")
    manager.define_task(TaskDefinition("a"))
    manager.define_task(TaskDefinition("b"))
    manager.add_provider("openai", "k", "gpt-4o-mini", ["a", "b"], base_url=oa.base_url)
    manager.add_provider("openai_compatible", "local", "my-llama", ["a"], base_url=local.base_url)
    await manager.batch_generate(
        [GenerationRequest(prompt=f"p{i}", task="a" if i % 2 else "b") for i in range(8)]
    )
    report = manager.usage_report()
    by_model = {row["model"]: row for row in report["instances"]}
    gpt = by_model["gpt-4o-mini"]
    price = lookup_price("openai", "gpt-4o-mini")
    assert price is not None and price.input_per_mtok > 0
    expected = (gpt["prompt_tokens"] * price.input_per_mtok
                + gpt["completion_tokens"] * price.output_per_mtok) / 1e6  # fmt: skip
    assert gpt["cost_usd"] == pytest.approx(expected)
    assert by_model["my-llama"]["cost_usd"] is None  # unknown, never reported as 0
    tasks = {row["task"]: row for row in report["tasks"]}
    assert tasks["a"]["requests"] + tasks["b"]["requests"] == 8
    assert tasks["b"]["cost_complete"] and not tasks["a"]["cost_complete"]
    assert report["total"]["total_tokens"] == sum(r["total_tokens"] for r in report["instances"])
    assert json.loads(manager.usage_report_json()) == report
    out = io.StringIO()
    manager.print_token_usage(out)
    assert "Cost (USD)" in out.getvalue() and "unknown" in out.getvalue()
    assert f"{gpt['cost_usd']:.6f}" in out.getvalue()


async def test_lowest_cost_routes_to_the_cheapest_model(emulators: EmulatorFactory) -> None:
    emu = await emulators("openai")
    prices = {"cheap": ModelPrice(0.1, 0.4), "dear": ModelPrice(5.0, 15.0)}
    async with LlmManager(strategy="lowest_cost", prices=prices) as manager:
        manager.add_provider("openai", "k", "dear", base_url=emu.base_url)
        manager.add_provider("openai", "k", "cheap", base_url=emu.base_url)
        manager.add_provider("openai", "k", "mystery", base_url=emu.base_url)
        responses = await manager.batch_generate([GenerationRequest(prompt="x")] * 5)
        assert {r.model for r in responses} == {"cheap"}
        manager.disable_instance(1)
        (second,) = await manager.batch_generate([GenerationRequest(prompt="x")])
        assert second.model == "dear"  # known prices before unknown ones


async def test_a_wait_over_a_second_is_logged_at_info_and_carried_by_the_event(
    manager: LlmManager, emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await emulators("openai"), await emulators("openai")
    manager.add_provider("openai", "k", "m", name="alpha", base_url=a.base_url)
    manager.add_provider("openai", "k", "m", name="beta", base_url=b.base_url)
    events: list[Event] = []
    manager.add_hook(events.append)
    a.schedule(Fault("rate_limit", retry_after=5.0))
    b.schedule(Fault("rate_limit", retry_after=3.0))
    with caplog.at_level(logging.INFO, logger="flyllm"):
        response = await manager.generate(GenerationRequest(prompt="x"))
    assert response.success
    (wait,) = [e for e in events if e.kind == "wait"]
    assert wait.wait == pytest.approx(3.0, abs=0.1) and wait.message
    for text in ("alpha", "beta", "rate_limit", "3.0 s", "until "):
        assert text in wait.message, (text, wait.message)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in infos] == [wait.message]

    events.clear()  # a short wait is neither logged nor described
    caplog.clear()
    a.schedule(Fault("rate_limit", retry_after=0.5))
    b.schedule(Fault("rate_limit", retry_after=0.5))
    with caplog.at_level(logging.INFO, logger="flyllm"):
        await manager.generate(GenerationRequest(prompt="x"))
    (wait,) = [e for e in events if e.kind == "wait"]
    assert wait.message is None
    assert not [r for r in caplog.records if r.levelno == logging.INFO]


async def test_a_long_wait_for_a_concurrency_slot_is_logged_after_a_second(
    emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emu = await emulators("openai", latency_ms=1300)
    async with LlmManager() as manager:
        manager.add_provider("openai", "k", "m", name="solo", base_url=emu.base_url,
                             max_concurrent=1)  # fmt: skip
        events: list[Event] = []
        manager.add_hook(events.append)
        with caplog.at_level(logging.INFO, logger="flyllm"):
            first, second = await asyncio.gather(
                manager.generate(GenerationRequest(prompt="one")),
                manager.generate(GenerationRequest(prompt="two")),
            )
        assert first.success and second.success
    told = [e.message for e in events if e.kind == "wait" and e.message]
    assert len(told) == 1 and "solo" in told[0] and "concurren" in told[0]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == told
