"""Batches (order, concurrency bound), bad input, usage, the sync manager, runtime changes."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from flyllm import (
    ConfigurationError,
    GenerationRequest,
    InvalidRequestError,
    LlmManager,
    Message,
    NoInstanceAvailableError,
    ProviderType,
    SyncLlmManager,
    TaskDefinition,
    Usage,
)
from flyllm.emulator import generate_text
from tests.integration.conftest import EmulatorFactory, body, emulator_in_thread


async def test_batch_keeps_input_order_and_the_concurrency_bound(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emus = [await emulators(p, latency_ms=15) for p in ("openai", "anthropic", "google")]
    for emu in emus:
        manager.add_provider(emu.provider, "k", "m", base_url=emu.base_url)
    prompts = [f"question number {i}" for i in range(60)]
    responses = await manager.batch_generate(
        [GenerationRequest(prompt=p) for p in prompts], max_concurrency=6
    )
    for prompt, response in zip(prompts, responses, strict=True):
        assert response.success
        assert response.content.split()[0] == generate_text(prompt)[0]  # the prompt's tag
    assert sum(e.stats()["max_in_flight"] for e in emus) <= 6
    assert max(e.stats()["max_in_flight"] for e in emus) == 2  # 6 spread over 3 by LRU


async def test_default_concurrency_bound_and_large_batches(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai", latency_ms=5)
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)
    responses = await manager.batch_generate([GenerationRequest(prompt="p")] * 300)
    assert len(responses) == 300 and all(r.success for r in responses)
    assert emu.stats()["max_in_flight"] <= manager.max_concurrency == 64
    with pytest.raises(InvalidRequestError, match="max_concurrency"):
        await manager.batch_generate([GenerationRequest(prompt="p")], max_concurrency=0)
    assert await manager.batch_generate([]) == []


async def test_conversations_and_system_prompts(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    an = await emulators("anthropic")
    go = await emulators("google")
    manager.add_provider("anthropic", "k", "claude", base_url=an.base_url)
    manager.add_provider("google", "k", "gemini", base_url=go.base_url)
    conversation = [
        Message("system", "You are terse."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "How are you?"),
    ]
    responses = await manager.generate_sequentially([GenerationRequest(messages=conversation)] * 2)
    assert all(r.success for r in responses)
    a = body(an)
    assert a["system"] == "You are terse."
    assert [m["role"] for m in a["messages"]] == ["user", "assistant", "user"]
    g = body(go)
    assert [c["role"] for c in g["contents"]] == ["user", "model", "user"]
    assert g["systemInstruction"]["parts"][0]["text"] == "You are terse."


NOT_A_STRING: Any = 42
TOOL_ROLE: Any = "robot"
BAD_REQUESTS = [
    (GenerationRequest(), InvalidRequestError, "neither a prompt nor messages"),
    (GenerationRequest(messages=[]), InvalidRequestError, "empty"),
    (GenerationRequest(messages=[Message("system", "s")]), InvalidRequestError, "empty"),
    (GenerationRequest(prompt="x", task="nope"), NoInstanceAvailableError, "unknown task 'nope'"),
    (GenerationRequest(prompt="x", task="idle"), NoInstanceAvailableError, "no enabled instance"),
    (
        GenerationRequest(prompt="x", params={"max_tokens": "ten"}),
        InvalidRequestError,
        "max_tokens",
    ),
    (GenerationRequest(prompt="x", params={"stop": 5}), InvalidRequestError, "stop"),
    (GenerationRequest(prompt="x", max_attempts=0), InvalidRequestError, "max_attempts"),
    (GenerationRequest(prompt=NOT_A_STRING), InvalidRequestError, "prompt must be a string"),
    (GenerationRequest(messages=[Message(TOOL_ROLE, "x")]), InvalidRequestError, "role 'robot'"),
    (
        GenerationRequest(prompt="x", provider_params={"nosuch": {"a": 1}}),
        InvalidRequestError,
        "nosuch",
    ),
]


@pytest.mark.parametrize(("request_", "error", "message"), BAD_REQUESTS)
async def test_bad_input_fails_before_sending_and_names_the_culprit(
    request_: GenerationRequest,
    error: type[Exception],
    message: str,
    manager: LlmManager,
    emulators: EmulatorFactory,
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", [TaskDefinition("work")], base_url=emu.base_url)
    manager.add_provider("openai", "k", "m", [TaskDefinition("idle")], False, base_url=emu.base_url)
    with pytest.raises(error, match=message):
        await manager.generate(request_)
    (failed,) = await manager.batch_generate([request_])
    assert not failed.success and failed.attempts == 0 and message in (failed.error or "")
    assert failed.error_kind == (
        "no_instance" if error is NoInstanceAvailableError else "invalid_request"
    )
    (failed,) = await manager.generate_sequentially([request_])
    assert not failed.success
    assert emu.stats()["requests"] == 0


def test_bad_setup_raises_configuration_errors() -> None:
    manager = LlmManager()
    with pytest.raises(ConfigurationError, match=r"valid.*openai.*anthropic"):
        manager.add_provider("nosuch", "k", "m")
    with pytest.raises(ConfigurationError, match="empty"):
        manager.add_provider("openai", "", "m")
    with pytest.raises(ConfigurationError, match="base_url"):
        manager.add_provider(ProviderType.OPENAI_COMPATIBLE, "", "llama")
    manager.add_provider("openai", "k", "m", [TaskDefinition("s", {"max_tokens": 5})])
    with pytest.raises(ConfigurationError, match="already defined"):
        manager.add_provider("openai", "k", "m", [TaskDefinition("s", {"max_tokens": 6})])
    manager.add_provider("openai", "k", "m", [TaskDefinition("s", {"max_tokens": 5}), "s"])
    with pytest.raises(ConfigurationError, match="unknown task 'x'"):
        manager.add_provider("openai", "k", "m", ["x"])
    with pytest.raises(ConfigurationError, match="max_tokens"):
        manager.add_provider("openai", "k", "m", parameters={"max_tokens": "many"})
    with pytest.raises(ConfigurationError, match="strategy"):
        LlmManager(strategy="best")
    with pytest.raises(ConfigurationError, match="max_attempts"):
        LlmManager(max_attempts=0)
    assert [i.id for i in manager.instances()] == [0, 1]


async def test_usage_is_tracked_per_instance(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    oa, mi = await emulators("openai"), await emulators("mistral")
    manager.add_provider("openai", "k", "gpt-4o-mini", base_url=oa.base_url, name="primary")
    manager.add_provider("mistral", "k", "mistral-small", base_url=mi.base_url)
    responses = await manager.batch_generate([GenerationRequest(prompt=f"p{i}") for i in range(10)])
    total = sum((r.usage for r in responses), Usage())
    rows = manager.token_usage()
    assert [r.name for r in rows] == ["primary", "mistral/mistral-small#1"]
    assert sum(r.total_tokens for r in rows) == total.total_tokens > 0
    assert sum(r.prompt_tokens for r in rows) == total.prompt_tokens
    assert [r.requests for r in rows] == [5, 5] and all(r.failures == 0 for r in rows)
    for r in responses:
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        assert r.usage.completion_tokens == len(r.content.split())
    out = io.StringIO()
    manager.print_token_usage(out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "--- Token Usage Statistics ---"
    for column in ("ID", "Provider", "Model", "Prompt Tokens", "Completion Tokens", "Total Tokens"):
        assert column in lines[1]
    assert "gpt-4o-mini" in out.getvalue() and str(total.total_tokens) in lines[-1]


async def test_instances_can_be_disabled_enabled_and_removed(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    a, b = await emulators("openai"), await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=a.base_url)
    manager.add_provider("openai", "k", "m", base_url=b.base_url)
    manager.disable_instance(0)
    await manager.batch_generate([GenerationRequest(prompt="x")] * 4)
    assert a.stats()["requests"] == 0 and b.stats()["requests"] == 4
    manager.enable_instance(0)
    manager.remove_instance(1)
    await manager.batch_generate([GenerationRequest(prompt="x")] * 2)
    assert a.stats()["requests"] == 2 and b.stats()["requests"] == 4
    assert [u.id for u in manager.token_usage()] == [0]
    manager.disable_instance(0)
    with pytest.raises(NoInstanceAvailableError):
        await manager.generate(GenerationRequest(prompt="x"))
    with pytest.raises(ConfigurationError, match="no instance with id 7"):
        manager.enable_instance(7)


def _sync_roundtrip(base_url: str) -> list[str]:
    with SyncLlmManager() as manager:
        manager.add_provider("openai", "k", "gpt-4o-mini", base_url=base_url)
        one = manager.generate(GenerationRequest(prompt="hello"))
        many = manager.batch_generate([GenerationRequest(prompt=f"p{i}") for i in range(5)])
        seq = manager.generate_sequentially([GenerationRequest(prompt="a")])
        assert manager.token_usage()[0].requests == 7
        return [one.content, *(r.content for r in many), seq[0].content]


def test_sync_manager_in_a_plain_script() -> None:
    with emulator_in_thread("openai") as emu:
        contents = _sync_roundtrip(emu.base_url)
        assert len(contents) == 7 and all(contents)
        assert emu.stats()["requests"] == 7


def test_sync_manager_inside_a_running_loop_like_jupyter() -> None:
    async def notebook_cell() -> list[str]:
        return _sync_roundtrip(emu.base_url)  # a plain call while this loop is running

    with emulator_in_thread("openai") as emu:
        contents = asyncio.run(notebook_cell())
    assert len(contents) == 7 and all(contents)


async def test_batch_progress_bar_draws_only_on_a_terminal(
    manager: LlmManager, emulators: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    responses = await manager.batch_generate([GenerationRequest(prompt="x")] * 5, progress=True)
    assert all(r.success for r in responses)
    assert "5/5" in terminal.getvalue()
    plain = io.StringIO()
    monkeypatch.setattr("sys.stderr", plain)
    await manager.batch_generate([GenerationRequest(prompt="x")] * 3, progress=True)
    assert plain.getvalue() == ""


def test_the_same_task_object_may_be_given_to_several_instances() -> None:
    manager = LlmManager()
    task = TaskDefinition("s", {"stop": "END", "temperature": 1}, fallback=["t"])
    manager.define_task(TaskDefinition("t"))
    manager.add_provider("openai", "k", "m", [task])
    manager.add_provider("openai", "k", "m", [task])  # list fallback, str stop: still the same
    assert manager.tasks["s"].fallback == ("t",)


def test_addressing_mistakes_fail_at_setup_and_env_base_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager = LlmManager()
    with pytest.raises(ConfigurationError, match="instance 'azure/gpt-4o#0'"):
        manager.add_provider("azure", "k", "gpt-4o")  # no resource, no base_url
    monkeypatch.setenv("OLLAMA_HOST", "10.1.2.3")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    ids = [
        manager.add_provider("ollama", "", "llama3.2"),
        manager.add_provider("azure", "k", "gpt-4o"),
        manager.add_provider("openai", "k", "gpt-4o-mini"),
    ]
    by_id = {instance.id: instance for instance in manager._all}
    urls = [by_id[i].endpoint.base_url for i in ids]
    assert urls == [
        "http://10.1.2.3:11434",
        "https://contoso.openai.azure.com",
        "http://127.0.0.1:9/v1",
    ]
