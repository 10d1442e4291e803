"""State stores: one contract suite run against the memory and the Redis store, then what only
a shared store can do (several managers and processes on one pool of keys, Redis dying)."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from flyllm import GenerationRequest, LlmManager, NoInstanceAvailableError
from flyllm.emulator import Fault
from flyllm.routing.redis_state import RedisStore
from flyllm.routing.state import MemoryStore, StateStore, shared_key
from tests.conftest import start_redis
from tests.integration.conftest import EmulatorFactory

StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["memory", "redis"])
async def store_factory(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[StoreFactory]:
    """A factory of stores of one kind; Redis stores share a fresh namespace per test."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"

    def make() -> StateStore:
        if request.param == "memory":
            import time

            return MemoryStore(time.monotonic)
        return RedisStore(redis_url, namespace=namespace)

    yield make


async def test_contract_rpm_is_held(
    store_factory: StoreFactory, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    async with LlmManager(state=store_factory()) as manager:
        manager.add_provider("openai", "k", "m", base_url=emu.base_url, rpm=3)
        responses = await manager.batch_generate(
            [GenerationRequest(prompt=f"p{i}", deadline=1.0) for i in range(5)]
        )
    assert sum(r.success for r in responses) == 3
    assert {r.error_kind for r in responses if not r.success} == {"no_instance"}
    assert emu.stats()["requests"] == 3


async def test_contract_concurrency_is_held(
    store_factory: StoreFactory, emulators: EmulatorFactory
) -> None:
    emu = await emulators("anthropic", latency_ms=20)
    async with LlmManager(state=store_factory()) as manager:
        manager.add_provider("anthropic", "k", "m", base_url=emu.base_url, max_concurrent=2)
        responses = await manager.batch_generate(
            [GenerationRequest(prompt=f"p{i}") for i in range(10)], max_concurrency=8
        )
    assert all(r.success for r in responses)
    assert emu.stats()["max_in_flight"] == 2


async def test_contract_cooldown_steers_traffic_and_totals_add_up(
    store_factory: StoreFactory, emulators: EmulatorFactory
) -> None:
    a, b = await emulators("openai"), await emulators("mistral")
    store = store_factory()
    async with LlmManager(state=store) as manager:
        manager.add_provider("openai", "k", "m", base_url=a.base_url)
        manager.add_provider("mistral", "k", "m", base_url=b.base_url)
        a.schedule(Fault("rate_limit", retry_after=30.0))
        responses = await manager.generate_sequentially([GenerationRequest(prompt="x")] * 6)
        assert all(r.success for r in responses)
        assert a.stats()["requests"] == 1 and b.stats()["requests"] == 6
        totals = await store.totals(manager._all)
    served = sum(r.usage.total_tokens for r in responses)
    assert totals[1]["total_tokens"] == served and totals[1]["requests"] == 6
    assert totals[0]["failures"] == totals[0]["requests"] == 1


async def test_contract_an_abandoned_stream_frees_its_slot(
    store_factory: StoreFactory, emulators: EmulatorFactory
) -> None:
    emu = await emulators("google", reply_tokens=300, chunk_delay_ms=5)
    async with LlmManager(state=store_factory()) as manager:
        manager.add_provider("google", "k", "g", base_url=emu.base_url, max_concurrent=1)
        async with manager.stream(GenerationRequest(prompt="long")) as stream:
            async for _ in stream:
                break
        response = await manager.generate(
            GenerationRequest(prompt="next", params={"max_tokens": 3}, deadline=5.0)
        )
    assert response.success


async def test_two_managers_share_one_rate_window(
    redis_url: str, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    managers = [LlmManager(state=RedisStore(redis_url, namespace=namespace)) for _ in range(2)]
    for manager in managers:
        manager.add_provider("openai", "shared-key", "m", base_url=emu.base_url, rpm=4)
    results = await asyncio.gather(
        *(
            m.batch_generate([GenerationRequest(prompt=f"p{i}", deadline=1.0) for i in range(4)])
            for m in managers
        )
    )
    for manager in managers:
        await manager.aclose()
    assert sum(r.success for batch in results for r in batch) == 4
    assert emu.stats()["requests"] == 4  # not 8: the window was one for both


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from flyllm import GenerationRequest, LlmManager
    from flyllm.routing.redis_state import RedisStore

    async def main() -> None:
        url, namespace, base_a, base_b = sys.argv[1:5]
        async with LlmManager(state=RedisStore(url, namespace=namespace)) as manager:
            manager.add_provider("openai", "key-a", "m", base_url=base_a, rpm=5)
            manager.add_provider("openai", "key-b", "m", base_url=base_b, rpm=5)
            requests = [GenerationRequest(prompt=f"w{i}", deadline=1.5) for i in range(8)]
            responses = await manager.batch_generate(requests, max_concurrency=4)
        print(json.dumps([r.usage.total_tokens if r.success else None for r in responses]))

    asyncio.run(main())
    """
)


async def test_four_processes_share_two_instances_within_their_limits(
    redis_url: str, emulators: EmulatorFactory
) -> None:
    a, b = await emulators("openai"), await emulators("openai")
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-c", WORKER, redis_url, namespace, a.base_url, b.base_url]
    procs = [await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE) for _ in range(4)]
    outputs = [json.loads((await p.communicate())[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    served = [tokens for out in outputs for tokens in out if tokens is not None]
    assert len(served) == 10  # 5 per minute per instance, across all four processes
    assert a.stats()["requests"] == 5 and b.stats()["requests"] == 5
    store = RedisStore(redis_url, namespace=namespace)
    async with LlmManager(state=store) as reader:  # usage survives the processes
        reader.add_provider("openai", "key-a", "m", base_url=a.base_url)
        reader.add_provider("openai", "key-b", "m", base_url=b.base_url)
        totals = await store.totals(reader._all)
    assert totals[0]["total_tokens"] + totals[1]["total_tokens"] == sum(served)
    assert totals[0]["requests"] == 5 and totals[1]["requests"] == 5


async def test_killing_redis_mid_run_loses_no_request(
    emulators: EmulatorFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc, url = start_redis(tmp_path)
    emu = await emulators("openai", latency_ms=5)
    store = RedisStore(url, namespace="dying")
    try:
        async with LlmManager(state=store) as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url, rpm=10_000)
            batch = asyncio.ensure_future(
                manager.batch_generate(
                    [GenerationRequest(prompt=f"p{i}") for i in range(300)], max_concurrency=8
                )
            )
            await asyncio.sleep(0.1)
            proc.kill()
            with caplog.at_level(logging.WARNING, logger="flyllm"):
                responses = await batch
    finally:
        proc.kill()
        proc.wait()
    assert all(r.success for r in responses)
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per request


async def test_redis_coming_back_resyncs_pending_records(
    emulators: EmulatorFactory, tmp_path: Path
) -> None:
    proc, url = start_redis(tmp_path / "one")
    port = url.rsplit(":", 1)[1].split("/")[0]
    emu = await emulators("openai")
    store = RedisStore(url, namespace="resync", retry_after=0.05)
    async with LlmManager(state=store) as manager:
        manager.add_provider("openai", "k", "m", base_url=emu.base_url)
        await manager.generate(GenerationRequest(prompt="before"))
        await store.flush()
        proc.kill()
        proc.wait()
        emu.schedule("server_error", 2)  # failures while it is down are records too
        during = await manager.batch_generate([GenerationRequest(prompt="during")] * 12)
        assert sum(r.success for r in during) == 12  # local state carries on
        binary = str(proc.args[0])  # type: ignore[index]
        second = await asyncio.create_subprocess_exec(
            binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            after = 0
            for _ in range(200):  # until Redis answers again (the new one starts empty)
                await asyncio.sleep(0.02)
                response = await manager.generate(GenerationRequest(prompt="after"))
                assert response.success
                after += 1
                if (await store.totals(manager._all))[0]["requests"] >= 1:
                    break
            totals = await store.totals(manager._all)
            # Every attempt made during the outage is written once Redis is back: 12
            # answered, 2 failed first, then every one made since.
            assert (totals[0]["requests"], totals[0]["failures"]) == (14 + after, 2)
        finally:
            second.kill()
            await second.wait()


async def test_records_past_max_pending_are_counted_and_logged_once(
    emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    emu = await emulators("openai")
    store = RedisStore("redis://127.0.0.1:1/0", namespace="full", max_pending=4)  # never up
    with caplog.at_level(logging.WARNING, logger="flyllm"):
        async with LlmManager(state=store) as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url)
            responses = await manager.batch_generate([GenerationRequest(prompt="x")] * 10)
            assert all(r.success for r in responses)
            assert len(store._pending) == 4  # the instance's labels, then 3 records
            assert store.dropped_records == 7
    full = [r for r in caplog.records if "dropping newer ones" in r.getMessage()]
    assert len(full) == 1


def test_shared_keys_are_stable_and_never_contain_the_key() -> None:
    one = shared_key("openai", "gpt-4o", "https://api.openai.com/v1/", "sk-secret-123")
    assert one == shared_key("openai", "gpt-4o", "https://api.openai.com/v1", "sk-secret-123")
    assert one != shared_key("openai", "gpt-4o", "https://api.openai.com/v1", "sk-other")
    assert "secret" not in one and len(one) == 24
    assert "sk-" not in repr(RedisStore("redis://:password@127.0.0.1:1/0"))


async def test_unknown_state_and_missing_instance_errors() -> None:
    from flyllm import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown state store"):
        LlmManager(state="postgres://x")
    manager = LlmManager(state="memory")
    with pytest.raises(NoInstanceAvailableError):
        await manager.generate(GenerationRequest(prompt="x"))


async def test_cli_usage_reads_the_shared_totals(
    redis_url: str, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    async with LlmManager(state=RedisStore(redis_url, namespace=namespace)) as manager:
        manager.add_provider("openai", "sk-cli-secret-1", "gpt-4o-mini", base_url=emu.base_url)
        responses = await manager.batch_generate([GenerationRequest(prompt="x")] * 3)
    served = sum(r.usage.total_tokens for r in responses)
    cmd = [sys.executable, "-m", "flyllm.cli", "usage", "--state", redis_url,
           "--namespace", namespace]  # fmt: skip
    table = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
    out = (await table.communicate())[0].decode()
    assert table.returncode == 0 and "gpt-4o-mini" in out and str(served) in out
    as_json = await asyncio.create_subprocess_exec(*cmd, "--json", stdout=subprocess.PIPE)
    rows = json.loads((await as_json.communicate())[0])["rows"]
    assert [(r["model"], r["total_tokens"], r["requests"]) for r in rows] == [
        ("gpt-4o-mini", served, 3)
    ]
    assert rows[0]["cost_usd"] > 0 and "sk-cli-secret-1" not in out + json.dumps(rows)


async def test_cli_usage_with_redis_down_is_a_one_line_error() -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    cmd = [sys.executable, "-m", "flyllm.cli", "usage", "--state",
           f"redis://:{secret}@127.0.0.1:1/0"]  # fmt: skip
    done = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = (b.decode() for b in await done.communicate())
    assert done.returncode == 1 and out == ""
    assert err.startswith(
        "flyllm: the shared state store at redis://***@127.0.0.1:1/0 cannot be read"
    )
    assert err.count("\n") == 1 and secret not in err


async def test_least_busy_sees_other_processes_requests_in_flight(
    redis_url: str, emulators: EmulatorFactory
) -> None:
    busy, idle = await emulators("openai", latency_ms=400), await emulators("openai")
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    other = LlmManager(state=RedisStore(redis_url, namespace=namespace))
    other.add_provider("openai", "k", "m", base_url=busy.base_url)
    mine = LlmManager("least_busy", state=RedisStore(redis_url, namespace=namespace))
    mine.add_provider("openai", "k", "m", base_url=busy.base_url)
    mine.add_provider("openai", "k", "m", base_url=idle.base_url)
    elsewhere = asyncio.ensure_future(
        other.batch_generate([GenerationRequest(prompt=f"slow {i}") for i in range(4)])
    )
    await asyncio.sleep(0.1)  # four requests in flight on the busy instance, in the other manager
    await mine.generate(GenerationRequest(prompt="first"))  # learns the others' load
    assert mine._instance(0).stats.remote_in_flight >= 3
    before = busy.stats()["requests"]
    await mine.generate(GenerationRequest(prompt="second"))
    assert busy.stats()["requests"] == before  # it went to the idle instance
    await elsewhere
    await other.aclose()
    await mine.aclose()
