"""LlmManagerBuilder: the fluent form builds the same manager as add_provider calls, and every
misuse is a ConfigurationError that says what to do."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from flyllm import ConfigurationError, LlmManager, ProviderType, RetryPolicy, TaskDefinition
from flyllm.config.builder import LlmManagerBuilder, instance_option_names, manager_option_names
from flyllm.routing.instance import LlmInstance

SUMMARY = TaskDefinition("summary", {"max_tokens": 500, "temperature": 0.3})
CODE = TaskDefinition("code", {"max_tokens": 2000}, {"anthropic": {"top_k": 40}})
KEY = "sk-builder-secret-4242"


def _snapshot(instance: LlmInstance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "name": instance.name,
        "provider": instance.provider_type,
        "endpoint": instance.endpoint,
        "tasks": instance.tasks,
        "enabled": instance.enabled,
        "weight": instance.weight,
        "parameters": instance.parameters,
        "provider_params": instance.provider_params,
    }


def test_builder_equals_the_add_provider_calls() -> None:
    policy = RetryPolicy(base=0.5)
    built = (
        LlmManagerBuilder()
        .define_task(SUMMARY)
        .define_task(CODE)
        .strategy("lowest_latency")
        .max_attempts(4)
        .connect_timeout(3.0)
        .read_timeout(30.0)
        .max_concurrency(8)
        .retry_policy(policy)
        .add_instance(ProviderType.OPENAI, model="gpt-4o-mini", api_key=KEY)
        .supports("summary")
        .supports_many(["code"])
        .enabled(True)
        .base_url("http://127.0.0.1:9/v1")
        .name("primary")
        .weight(2.5)
        .parameters({"temperature": 0.5})
        .headers({"OpenAI-Organization": "org-1"})
        .add_instance("anthropic", model="claude-sonnet-4-5", api_key="k2")
        .supports(CODE)
        .enabled(False)
        .api_version("2023-06-01")
        .provider_params({"anthropic": {"top_k": 10}})
        .options({"region": "eu"})
        .build()
    )
    manual = LlmManager(
        "lowest_latency", 4, connect_timeout=3.0, read_timeout=30.0, max_concurrency=8,
        retry_policy=policy,
    )  # fmt: skip
    manual.add_provider(
        ProviderType.OPENAI, KEY, "gpt-4o-mini", [SUMMARY, CODE], True,
        base_url="http://127.0.0.1:9/v1", name="primary", weight=2.5,
        parameters={"temperature": 0.5}, headers={"OpenAI-Organization": "org-1"},
    )  # fmt: skip
    manual.add_provider(
        "anthropic", "k2", "claude-sonnet-4-5", ["code"], False, api_version="2023-06-01",
        provider_params={"anthropic": {"top_k": 10}}, options={"region": "eu"},
    )  # fmt: skip
    assert [_snapshot(i) for i in built._all] == [_snapshot(i) for i in manual._all]
    assert built.tasks == manual.tasks
    assert type(built.strategy) is type(manual.strategy)
    assert (built.max_attempts, built.max_concurrency) == (4, 8)
    assert (built.connect_timeout, built.read_timeout) == (3.0, 30.0)
    assert built.retry_policy is policy


def test_llm_manager_builder_entry_point() -> None:
    assert hasattr(LlmManager, "builder")
    builder = LlmManager.builder()
    assert isinstance(builder, LlmManagerBuilder)
    manager = builder.add_instance("openai", model="m", api_key="k").build()
    assert [i.model for i in manager.instances()] == ["m"]


def test_generic_options_follow_the_signatures() -> None:
    sig = inspect.signature(LlmManager.__init__)
    assert set(manager_option_names()) == set(sig.parameters) - {"self"}
    add = inspect.signature(LlmManager.add_provider)
    fixed = {"self", "provider", "api_key", "model", "tasks"}
    assert set(instance_option_names()) == set(add.parameters) - fixed
    manager = (
        LlmManagerBuilder()
        .manager_option("max_attempts", 7)
        .add_instance("openai", model="m", api_key="k")
        .instance_option("weight", 3.0)
        .build()
    )
    assert manager.max_attempts == 7
    assert manager.instances()[0].weight == 3.0


def test_every_keyword_of_add_provider_passes_through() -> None:
    # Whatever add_provider accepts now (limits, timeouts...) the builder takes by name.
    builder = LlmManagerBuilder().add_instance("openai", model="m", api_key="k")
    parameters = inspect.signature(LlmManager.add_provider).parameters
    for name in instance_option_names():
        builder.instance_option(name, parameters[name].default)
    assert len(builder.build().instances()) == 1


def _misuse(build: Callable[[], object], *fragments: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        build()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert KEY not in message
    return message


def _one() -> LlmManagerBuilder:
    return LlmManagerBuilder().add_instance("openai", model="gpt-4o-mini", api_key=KEY)


@pytest.mark.parametrize(
    "setter", ["supports", "enabled", "base_url", "name", "weight", "headers", "api_version"]
)
def test_instance_setter_before_any_instance(setter: str) -> None:
    value: Any = {"supports": "summary", "enabled": True, "weight": 1.0, "headers": {}}.get(
        setter, "x"
    )
    _misuse(lambda: getattr(LlmManagerBuilder(), setter)(value), f"{setter}()", "add_instance")


def test_supports_many_and_instance_option_before_any_instance() -> None:
    _misuse(lambda: LlmManagerBuilder().supports_many(["a"]), "supports_many()", "add_instance")
    _misuse(lambda: LlmManagerBuilder().instance_option("weight", 1), "add_instance")


def test_task_no_instance_serves() -> None:
    _misuse(
        lambda: _one().define_task(SUMMARY).define_task(CODE).supports("summary").build(),
        "task 'code'",
        "no instance supports it",
        ".supports('code')",
    )


def test_supported_task_never_defined() -> None:
    _misuse(
        lambda: _one().supports("sumary").build(),
        "instance #0 (openai gpt-4o-mini)",
        "'sumary'",
        "not defined",
        "define_task",
    )


def test_building_twice() -> None:
    builder = _one()
    builder.build()
    _misuse(builder.build, "already built", "new LlmManagerBuilder()")


def test_unknown_options_list_the_valid_ones() -> None:
    message = _misuse(
        lambda: LlmManagerBuilder().manager_option("timeoutt", 1), "'timeoutt'", "max_attempts"
    )
    assert "read_timeout" in message
    _misuse(lambda: _one().instance_option("wieght", 1), "'wieght'", "weight", "base_url")
    _misuse(lambda: _one().instance_option("model", "x"), "use add_instance() and supports()")


def test_bad_values_and_arguments() -> None:
    _misuse(lambda: LlmManagerBuilder().add_instance("opena", model="m", api_key=KEY), "opena")
    _misuse(lambda: LlmManagerBuilder().add_instance("openai", model="", api_key=KEY), "model")
    _misuse(
        lambda: LlmManagerBuilder().add_instance("openai", model="m", api_key=42),  # type: ignore[arg-type]
        "api_key must be a string",
    )
    _misuse(lambda: _one().enabled("yes"), "True or False")  # type: ignore[arg-type]
    _misuse(lambda: _one().supports(3), "task name")  # type: ignore[arg-type]
    _misuse(lambda: _one().supports_many("summary"), "list of tasks")
    _misuse(lambda: LlmManagerBuilder().define_task("summary"), "TaskDefinition")  # type: ignore[arg-type]
    _misuse(lambda: LlmManagerBuilder().define_task(TaskDefinition("")), "non-empty name")
    _misuse(
        lambda: LlmManagerBuilder().define_task(SUMMARY).define_task(TaskDefinition("summary")),
        "'summary' is already defined",
    )
    _misuse(lambda: LlmManagerBuilder().build(), "no instance", "add_instance")


def test_errors_of_add_provider_and_the_manager_name_the_instance() -> None:
    _misuse(lambda: _one().weight(-1).build(), "instance #0 (openai gpt-4o-mini)", "weight")
    _misuse(lambda: _one().name("main").weight(-1).build(), "instance #0 (main)")
    _misuse(lambda: LlmManagerBuilder().add_instance("openai", model="m", api_key="").build(),
            "empty")  # fmt: skip
    _misuse(lambda: _one().max_attempts(0).build(), "max_attempts")
    _misuse(lambda: _one().strategy("fastest").build(), "unknown strategy 'fastest'")


def test_defining_the_same_task_twice_is_harmless() -> None:
    manager = _one().define_task(SUMMARY).supports(SUMMARY).supports("summary").build()
    assert manager.instances()[0].tasks == frozenset({"summary"})
