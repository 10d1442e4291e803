"""Proof with real clients: LiteLLM's ``acompletion`` as an OpenAI-compatible client, streamed
and not; one OpenAI-format tool conversation served by each of the openai, anthropic, gemini
and mistral instances; and a conversation whose turns are served by different providers in
turn (the one it started on fails mid-conversation)."""

from __future__ import annotations

import importlib
import json
import logging
import os
from typing import Any

import openai
import pytest

from flyllm import TaskDefinition
from flyllm.emulator import Fault
from tests.server.conftest import GatewayFactory, Served

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
QUESTION = "Weather in Oslo and Lima?"
# LiteLLM offline and quiet: the bundled cost map, no fetch (the loopback guard would fail it).
_LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOG": "ERROR",
}


def client(served: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)


def _litellm() -> Any:
    for key, value in _LITELLM_ENV.items():
        os.environ.setdefault(key, value)
    module: Any = importlib.import_module("litellm")
    module.telemetry = False
    module.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
    return module


async def test_litellm_acompletion_streamed_and_not(gateway: GatewayFactory) -> None:
    litellm = _litellm()
    served = await gateway("openai")
    options: Any = {
        "model": "openai/chat", "api_base": served.url + "/v1", "api_key": "unused",
        "messages": [{"role": "user", "content": "tell me more"}], "max_tokens": 50,
    }  # fmt: skip
    plain = await litellm.acompletion(**options)
    text = plain.choices[0].message.content
    assert text and plain.usage.completion_tokens > 0
    stream = await litellm.acompletion(**options, stream=True)
    streamed = ""
    async for chunk in stream:
        streamed += chunk.choices[0].delta.content or ""
    assert streamed == text
    tool = await litellm.acompletion(
        **{**options, "messages": [{"role": "user", "content": QUESTION}]}, tools=[WEATHER]
    )
    calls = tool.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "Lima"]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "mistral"])
async def test_one_tool_conversation_on_each_provider(
    gateway: GatewayFactory, provider: str
) -> None:
    served = await gateway(provider)
    async with client(served) as c:
        history: list[Any] = [{"role": "user", "content": QUESTION}]
        first = await c.chat.completions.create(model="chat", messages=history, tools=[WEATHER])
        answer = await _answer_calls(c, history, first)
        assert first.choices[0].finish_reason == "tool_calls"
    assert "snow in Oslo" in answer and "fog in Lima" in answer
    assert len(served.emulators[provider].requests) == 2


async def _answer_calls(
    c: openai.AsyncOpenAI, history: list[Any], first: Any, model: str = "chat"
) -> str:
    """Appends the model's calls and their results to ``history``; returns the next answer."""
    message = first.choices[0].message
    calls = message.tool_calls or []
    assert [json.loads(t.function.arguments) for t in calls] == [{"city": "Oslo"},
                                                                 {"city": "Lima"}]  # fmt: skip
    sky = {"Oslo": "snow", "Lima": "fog"}
    history.append(message.model_dump(exclude_none=True))
    for t in calls:
        city = json.loads(t.function.arguments)["city"]
        history.append({"role": "tool", "tool_call_id": t.id, "content": f"{sky[city]} in {city}"})
    second = await c.chat.completions.create(model=model, messages=history, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    return second.choices[0].message.content or ""


async def test_failover_mid_conversation(gateway: GatewayFactory) -> None:
    """Task "conv" is Gemini, falling back to task "backup" (Anthropic, Mistral). The tool
    call comes from Gemini; Gemini then fails and Anthropic reads the results (ids rewritten,
    Gemini's state dropped); the next turn goes to Mistral."""
    served = await gateway("google", "anthropic", "mistral", max_attempts=1)
    manager = served.manager
    manager.define_task(TaskDefinition("backup"))
    manager.define_task(TaskDefinition("conv", fallback=["backup"]))
    ids = {}
    for provider, task in (("google", "conv"), ("anthropic", "backup"), ("mistral", "backup")):
        url = served.emulators[provider].base_url
        ids[provider] = manager.add_provider(provider, "k", f"{provider}-model", [task],
                                             base_url=url)  # fmt: skip
    manager.disable_instance(ids["mistral"])
    history: list[Any] = [{"role": "user", "content": QUESTION}]
    async with client(served) as c:
        first = await c.chat.completions.with_raw_response.create(
            model="conv", messages=history, tools=[WEATHER]
        )
        assert first.headers["x-flyllm-provider"] == "google"
        served.emulators["google"].set_faults([Fault("server_error")])
        answer = await _answer_calls(c, history, first.parse(), "conv")
        assert "snow in Oslo" in answer and "fog in Lima" in answer
        assert len(served.emulators["anthropic"].requests) == 1
        manager.disable_instance(ids["anthropic"])
        manager.enable_instance(ids["mistral"])
        history += [{"role": "assistant", "content": answer},
                    {"role": "user", "content": "Thanks. Was Oslo cold?"}]  # fmt: skip
        last = await c.chat.completions.with_raw_response.create(
            model="conv", messages=history, tools=[WEATHER], tool_choice="none"
        )
    assert last.headers["x-flyllm-provider"] == "mistral"
    assert last.headers["x-flyllm-attempts"] == "2"  # Gemini failed first
    assert last.parse().choices[0].message.content
    sent: Any = served.emulators["mistral"].requests[-1].json
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant", "user"]
