"""The manager's public calls: try_generate, read-only instances(), and the sync mirror."""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib

import pytest

from flyllm import (
    GenerationRequest,
    InstanceInfo,
    InvalidRequestError,
    LlmManager,
    ModelPrice,
    SyncLlmManager,
    TaskDefinition,
)
from flyllm.cli.batchrun import run_batch
from flyllm.emulator import Fault
from tests.integration.conftest import EmulatorFactory, emulator_in_thread


def _key() -> str:
    return "-".join(["sk", "snapshot", "secret"])  # built at run time: never in the source


async def test_try_generate_answers_success_and_failure_without_raising(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", [TaskDefinition("work")], base_url=emu.base_url)
    ok = await manager.try_generate(GenerationRequest(prompt="hi", task="work"))
    assert ok.success and ok.content and ok.attempts == 1
    unknown = await manager.try_generate(GenerationRequest(prompt="hi", task="nosuch"))
    assert not unknown.success and unknown.error_kind == "no_instance"
    assert "nosuch" in (unknown.error or "") and unknown.attempts == 0
    emu.set_faults([Fault("server_error")])
    failed = await manager.try_generate(GenerationRequest(prompt="hi", task="work", max_attempts=2))
    assert not failed.success and failed.error_kind == "server" and failed.attempts == 2
    assert emu.stats()["requests"] == 3


async def test_try_generate_turns_a_bug_below_into_a_failed_response(
    manager: LlmManager, emulators: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)

    async def broken(request: GenerationRequest) -> None:
        raise RuntimeError("a bug below the manager")

    monkeypatch.setattr(manager, "_answer", broken)
    response = await manager.try_generate(GenerationRequest(prompt="hi"))
    assert not response.success and response.error_kind is not None
    assert "RuntimeError" in (response.error or "")
    (batched,) = await manager.batch_generate([GenerationRequest(prompt="hi")])
    assert not batched.success and "RuntimeError" in (batched.error or "")


async def test_batch_runner_answers_each_line_with_try_generate(
    manager: LlmManager,
    emulators: EmulatorFactory,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)
    asked: list[GenerationRequest] = []
    real = manager.try_generate

    async def spy(request: GenerationRequest) -> object:
        asked.append(request)
        return await real(request)

    monkeypatch.setattr(manager, "try_generate", spy)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two", "task": "x"}\n')
    report = await run_batch(manager, str(inp), str(out), concurrency=2, err=io.StringIO())
    assert sorted(r.prompt or "" for r in asked) == ["one", "two"]
    assert (report.succeeded, report.failed) == (1, 1)
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["b"]["success"] is False and records["b"]["error_kind"] == "no_instance"


async def test_instances_are_read_only_snapshots(manager: LlmManager) -> None:
    url = "http://127.0.0.1:9/v1?token=" + _key()
    first = manager.add_provider(
        "openai", _key(), "m", [TaskDefinition("t")], base_url=url, weight=2.0,
        parameters={"temperature": 0.5, "stop": ["x"]},
    )  # fmt: skip
    (info,) = manager.instances()
    assert isinstance(info, InstanceInfo)
    assert (info.id, info.provider, info.model, info.tasks) == (
        first,
        "openai",
        "m",
        frozenset({"t"}),
    )
    assert (info.enabled, info.weight, info.state, info.requests, info.in_flight) == (
        True, 2.0, "closed", 0, 0,
    )  # fmt: skip
    assert _key() not in repr(info) and _key() not in info.base_url
    assert info.base_url.startswith("http://") and "127.0.0.1:9/v1" in info.base_url
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.enabled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.parameters["temperature"] = 1.0  # type: ignore[index]
    info.parameters["stop"].append("y")  # a copy: the instance's own defaults stay as they were
    assert manager._instance(first).parameters["stop"] == ["x"]
    manager.disable_instance(first)
    assert info.enabled and info.state == "closed"  # a snapshot does not follow the instance
    (now,) = manager.instances()
    assert not now.enabled and now.state == "disabled"
    manager.remove_instance(first)
    assert manager.instances() == []


def test_sync_manager_mirrors_the_new_calls() -> None:
    with emulator_in_thread("openai") as emu, SyncLlmManager() as sync:
        sync.add_provider("openai", "k", "m", [TaskDefinition("t")], base_url=emu.base_url)
        events: list[str] = []
        sync.add_hook(lambda event: events.append(event.kind))
        assert sync.try_generate(GenerationRequest(prompt="hi", task="t")).success
        assert not sync.try_generate(GenerationRequest(prompt="hi", task="nosuch")).success
        assert "request_end" in events
        assert [i.model for i in sync.instances()] == ["m"]
        assert [h.state for h in sync.instance_health()] == ["closed"]
        assert sync.usage_report()["total"]["requests"] == 1
        table = io.StringIO()
        sync.print_instance_health(table)
        assert "--- Instance Health ---" in table.getvalue()
        assert json.loads(sync.usage_report_json())["total"]["requests"] == 1


async def test_usage_report_sums_per_task_and_in_total(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    price = ModelPrice(1_000_000.0, 2_000_000.0)  # 1 USD per prompt token, 2 per completion
    priced = manager.add_provider(
        "openai", "k", "priced", [TaskDefinition("a")], base_url=emu.base_url, price=price
    )
    manager.add_provider(
        "openai", "k", "no-such-price", [TaskDefinition("b")], base_url=emu.base_url
    )
    ok = await manager.try_generate(GenerationRequest(prompt="hello there", task="a"))
    emu.set_faults([Fault("server_error")])
    failing = GenerationRequest(prompt="x", task="a", max_attempts=1)
    assert not (await manager.try_generate(failing)).success
    emu.set_faults([])
    await manager.try_generate(GenerationRequest(prompt="y", task="b"))
    report = manager.usage_report()
    a, b = report["tasks"]
    usage = ok.usage
    assert a == {
        "task": "a", "requests": 2, "failures": 1, "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens, "cost_usd": price.cost(usage), "cost_complete": True,
    }  # fmt: skip
    assert b["task"] == "b" and b["requests"] == 1 and b["failures"] == 0
    assert b["cost_usd"] == 0.0 and b["cost_complete"] is False  # tokens spent, price unknown
    total = report["total"]
    assert "task" not in total and total["requests"] == 3 and total["failures"] == 1
    assert total["total_tokens"] == a["total_tokens"] + b["total_tokens"]
    assert total["cost_usd"] == a["cost_usd"] and total["cost_complete"] is False
    by_id = {row["id"]: row for row in report["instances"]}
    assert by_id[priced]["requests"] == 2 and by_id[priced]["cost_usd"] == price.cost(usage)


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "2"])
async def test_batch_concurrency_is_checked_as_the_call_s_own_error(
    manager: LlmManager, limit: object
) -> None:
    with pytest.raises(InvalidRequestError, match=r"bad parameter: max_concurrency must be a pos"):
        await manager.batch_generate([GenerationRequest(prompt="p")], limit)  # type: ignore[arg-type]


def test_sync_manager_from_a_config_file(tmp_path: pathlib.Path) -> None:
    with emulator_in_thread("openai") as emu:
        path = tmp_path / "flyllm.toml"
        path.write_text(
            'max_attempts = 2\n[[instances]]\nprovider = "openai_compatible"\nmodel = "llama"\n'
            f'api_key = "k"\nbase_url = "{emu.base_url}"\n'
        )
        with SyncLlmManager.from_config(path) as sync:
            assert isinstance(sync, SyncLlmManager) and sync.manager.max_attempts == 2
            assert [i.model for i in sync.instances()] == ["llama"]
            assert sync.try_generate(GenerationRequest(prompt="hi")).success
        with pytest.raises(RuntimeError, match="closed"):
            sync.try_generate(GenerationRequest(prompt="hi"))
