"""Routing by capabilities: a request with tools goes only to instances that can take it
(declared with ``capabilities=``, or learned from an UnsupportedFeatureError), and its token
estimate counts the tools, the calls and the results."""

from __future__ import annotations

import dataclasses
import logging
import pathlib

import pytest

from flyllm import (
    GenerationRequest,
    LlmManager,
    LlmManagerBuilder,
    Message,
    NoInstanceAvailableError,
    Tool,
    ToolCall,
)
from flyllm._toolplan import declared_capabilities, prompt_chars
from flyllm.config import load_config
from flyllm.errors import AllAttemptsFailedError, ConfigurationError, UnsupportedFeatureError
from flyllm.params import ToolSet
from flyllm.types import Capability, ErrorKind
from tests.unit.test_run_tools import answer, scripted

WEATHER = Tool(
    "weather",
    "Current weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TOOLS = GenerationRequest(prompt="Weather in Oslo?", tools=[WEATHER])
NAMED = dataclasses.replace(TOOLS, tool_choice="weather")
PLAIN = GenerationRequest(prompt="Hello")
ALL = frozenset({"tools", "named_tool_choice", "structured_output", "images"})


def two(first: list[Capability] | None, second: list[Capability] | None = None) -> LlmManager:
    manager = LlmManager(strategy="round_robin")
    for i, able in enumerate((first, second)):
        key = "-".join(["fake", "key", str(i)])
        manager.add_provider(
            "openai", key, f"m{i}", base_url="http://127.0.0.1:9/v1", capabilities=able
        )
    return manager


# -- declared ---------------------------------------------------------------------------------


def test_capabilities_default_to_the_providers_and_show_in_instance_info() -> None:
    manager = two(None, [])
    assert [i.capabilities for i in manager.instances()] == [ALL | {"embeddings"}, frozenset()]
    narrowed = two(["tools"])
    assert narrowed.instances()[0].capabilities == frozenset({"tools"})


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (["images"], "capability 'images' is not one deepseek offers"),
        ("tools", "must be a list of capability names"),
        (3, "must be a list of capability names"),
    ],
)
def test_capabilities_may_only_narrow(declared: object, message: str) -> None:
    manager = LlmManager()
    with pytest.raises(ConfigurationError, match=message) as caught:
        manager.add_provider("deepseek", "k", "m", name="mine", capabilities=declared)  # type: ignore[arg-type]
    assert "instance 'mine'" in str(caught.value)
    assert manager.instances() == []


def test_naming_one_the_provider_lacks_is_refused() -> None:
    lesser = frozenset({"tools"})  # a provider that cannot force a named tool (Cohere)
    assert declared_capabilities(None, lesser, "cohere") == lesser
    assert declared_capabilities(["tools"], lesser, "cohere") == lesser
    with pytest.raises(ConfigurationError, match="'named_tool_choice' is not one cohere offers"):
        declared_capabilities(["named_tool_choice"], lesser, "cohere")


def test_capabilities_in_config_files_and_the_builder(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "flyllm.toml"
    text = '[[instances]]\nprovider = "openai"\nmodel = "m"\napi_key = "k"\n'
    path.write_text(text + 'capabilities = ["tools"]\n')
    assert load_config(path).instances()[0].capabilities == frozenset({"tools"})
    path.write_text(text + "capabilities = []\n")
    assert load_config(path).instances()[0].capabilities == frozenset()
    path.write_text(text + 'capabilities = ["vision"]\n')
    with pytest.raises(ConfigurationError, match=r"instances\[0\]\.capabilities\[0\]"):
        load_config(path)
    built = (
        LlmManagerBuilder()
        .add_instance("openai", model="m", api_key="k")
        .instance_option("capabilities", [])
        .build()
    )
    assert built.instances()[0].capabilities == frozenset()


# -- routing ----------------------------------------------------------------------------------


async def test_requests_with_tools_skip_instances_without_them() -> None:
    manager = two([], None)
    script = scripted(manager, instances=0, steps=[answer()] * 4)
    for _ in range(2):
        await manager.generate(TOOLS)
    assert [s.instance_id for s in script.sent] == [1, 1]
    for _ in range(2):  # without tools both take turns
        await manager.generate(PLAIN)
    assert sorted(s.instance_id for s in script.sent[2:]) == [0, 1]


async def test_a_named_choice_needs_named_tool_choice() -> None:
    manager = two(["tools"], None)
    script = scripted(manager, instances=0, steps=[answer()] * 3)
    await manager.generate(NAMED)
    await manager.generate(NAMED)
    await manager.generate(TOOLS)
    assert [s.instance_id for s in script.sent] == [1, 1, 0]


async def test_no_capable_instance_fails_before_sending_naming_what_is_missing() -> None:
    manager = two([], ["tools"])
    script = scripted(manager, instances=0, steps=[])
    with pytest.raises(NoInstanceAvailableError) as caught:
        await manager.generate(NAMED)
    message = str(caught.value)
    assert "needs named_tool_choice, tools" in message
    assert "instance 0 (openai/m0#0) lacks named_tool_choice, tools" in message
    assert "instance 1 (openai/m1#1) lacks named_tool_choice" in message
    assert script.sent == []
    with pytest.raises(NoInstanceAvailableError, match="needs tools; instance 0"):
        two([], []).stream(TOOLS)  # streams too, when the stream is made


async def test_an_unsupported_answer_is_learned_logged_once_and_fails_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager = two(None, None)
    refusal = UnsupportedFeatureError("this model does not support tools", feature="tools")
    script = scripted(manager, instances=0, steps=[refusal, answer(), answer(), answer()])
    with caplog.at_level(logging.WARNING, logger="flyllm"):
        response = await manager.generate(TOOLS)
        assert response.instance_id == 1 and response.attempts == 2
        await manager.generate(TOOLS)
        manager.disable_instance(1)
        with pytest.raises(NoInstanceAvailableError, match="lacks tools"):
            await manager.generate(TOOLS)  # instance 0 is no candidate now
        await manager.generate(PLAIN)  # text still goes there
    assert [s.instance_id for s in script.sent] == [0, 1, 1, 0]
    assert manager.instances()[0].capabilities == (ALL | {"embeddings"}) - {"tools"}
    learned = [r.getMessage() for r in caplog.records if "cannot do" in r.getMessage()]
    assert learned == [
        "instance 0 (openai/m0#0) cannot do 'tools', the provider said: requests that need it "
        "skip this instance from now on"
    ]
    health = manager.instance_health()[0]
    assert health.state == "closed" and health.consecutive_failures == 0


async def test_requests_without_tools_do_not_pay_for_the_filter() -> None:
    manager = two([], None)
    plan = manager._plan(PLAIN)
    assert plan.tiers is manager._tiers(None)  # the cached tiers, untouched
    assert manager._plan(TOOLS).tiers is not manager._tiers(None)


# -- the token estimate -----------------------------------------------------------------------


def test_prompt_chars_counts_tools_calls_and_results() -> None:
    call = ToolCall("c1", "weather", {"city": "Oslo"})
    bad = ToolCall("c2", "weather", {}, raw_arguments="{oops")
    messages = (
        Message.user("hi"),
        Message.assistant("", [call, bad]),
        Message.tool_result("c1", "sunny"),
    )
    tools = ToolSet((WEATHER,))
    schema = '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
    assert prompt_chars(messages[:1], None) == 2
    assert prompt_chars(messages, None) == 2 + len("weather") * 2 + len('{"city":"Oslo"}') + 5 + 5
    assert prompt_chars(messages[:1], tools) == 2 + len("weather") + len("Current weather") + len(
        schema
    )


def test_the_plan_estimate_counts_the_tools() -> None:
    manager = two(None)
    plain = manager._plan(GenerationRequest(prompt="x" * 400))
    with_tools = manager._plan(GenerationRequest(prompt="x" * 400, tools=[WEATHER]))
    assert with_tools.estimate[0] > plain.estimate[0] == 101
    assert with_tools.tokens - plain.tokens == with_tools.estimate[0] - plain.estimate[0]


async def test_when_every_instance_refuses_the_next_request_fails_before_sending() -> None:
    manager = two(None, None)
    refusals = [UnsupportedFeatureError(f"no tools {i}", feature="tools") for i in range(2)]
    script = scripted(manager, instances=0, steps=refusals)
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(TOOLS)
    assert caught.value.kind is ErrorKind.UNSUPPORTED and len(script.sent) == 2
    with pytest.raises(NoInstanceAvailableError, match=r"instance 1 .* lacks tools"):
        await manager.generate(TOOLS)
    assert len(script.sent) == 2
