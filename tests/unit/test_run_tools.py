"""run_tools over a scripted model: each attempt's Completion (with the tool calls the model
"makes") comes from a script, no sockets. The instances' providers are wrapped to answer from
the script and record what each step sent; the transport is a fake."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import threading
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from flyllm import GenerationRequest, LlmManager, Message, SyncLlmManager, Tool, ToolCall, Usage
from flyllm._transport import Transport
from flyllm._wire import Timeouts
from flyllm.errors import (
    AllAttemptsFailedError,
    InvalidRequestError,
    ServerError,
    ToolLoopError,
)
from flyllm.events import Event
from flyllm.params import ToolSet
from flyllm.providers.base import Completion, HttpRequest, HttpResponse

USAGE = Usage(10, 5, 15)
Step = Completion | Exception


def calls(*made: ToolCall) -> Completion:
    """The model asks for these calls."""
    return Completion("", "tool_calls", "tool_calls", USAGE, tool_calls=made)


def answer(text: str = "done") -> Completion:
    return Completion(text, "stop", "stop", USAGE)


@dataclasses.dataclass
class Sent:
    instance_id: int
    messages: tuple[Message, ...]
    tools: ToolSet | None


class Script:
    """The model: one entry per attempt, whichever instance takes it."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.sent: list[Sent] = []


class ScriptedProvider:
    """Wraps an instance's provider: build records the step, parse answers from the script."""

    def __init__(self, inner: Any, instance_id: int, script: Script) -> None:
        self._inner, self._id, self._script = inner, instance_id, script

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def build(
        self,
        endpoint: Any,
        messages: Any,
        params: Any,
        *,
        stream: bool = False,
        tools: Any = None,
        output: Any = None,
    ) -> HttpRequest:
        self._script.sent.append(Sent(self._id, tuple(messages), tools))
        return HttpRequest("POST", "http://127.0.0.1:9/v1/chat/completions", {}, b"{}")

    def parse(self, response: Any, endpoint: Any = None) -> Completion:
        step = self._script.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


class NoNetwork:
    """The transport: every request gets an empty 200."""

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        return HttpResponse(200, {}, b"{}")

    @asynccontextmanager
    async def open_stream(self, request: HttpRequest, timeouts: Timeouts) -> Any:
        raise AssertionError("run_tools does not stream")
        yield  # pragma: no cover

    async def aclose(self) -> None:
        pass


def scripted(manager: LlmManager, steps: Sequence[Step], instances: int = 1) -> Script:
    """Add ``instances`` OpenAI instances; then every instance answers from ``steps``."""
    script = Script(steps)
    for i in range(instances):
        key = "-".join(["fake", "key", str(i)])
        manager.add_provider("openai", key, f"m{i}", base_url="http://127.0.0.1:9/v1")
    for instance in manager._all:
        instance.provider = ScriptedProvider(instance.provider, instance.id, script)
    manager._engine.transport = cast(Transport, NoNetwork())
    return script


def weather(city: str, days: int = 1) -> str:
    """Current weather for a city."""
    return f"{city}: sunny for {days} day(s)"


ASK = GenerationRequest(prompt="Weather in Oslo and Lima?")


# -- the loop ---------------------------------------------------------------------------------


async def test_parallel_async_calls_run_concurrently_results_in_call_order() -> None:
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def a(x: int) -> str:
        started["a"].set()
        await asyncio.wait_for(started["b"].wait(), 5)  # b must run at the same time
        return f"a{x}"

    async def b(x: int) -> dict[str, int]:
        started["b"].set()
        await asyncio.wait_for(started["a"].wait(), 5)
        return {"b": x}

    manager = LlmManager()
    script = scripted(
        manager, [calls(ToolCall("c1", "b", {"x": 1}), ToolCall("c2", "a", {"x": 2})), answer()]
    )
    response = await manager.run_tools(ASK, [a, b])
    assert response.content == "done" and response.finish_reason == "stop"
    user, turn, first, second, final = response.messages
    assert user == Message.user(ASK.prompt or "") and [c.id for c in turn.tool_calls] == [
        "c1",
        "c2",
    ]
    assert (first.tool_call_id, first.tool_name, first.content) == ("c1", "b", '{"b": 1}')
    assert (second.tool_call_id, second.tool_name, second.content) == ("c2", "a", "a2")
    assert not first.is_error and not second.is_error and final.content == "done"
    assert script.sent[1].messages == response.messages[:4]  # step 2 saw the results


async def test_plain_functions_run_in_threads_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=5)  # both must be inside at once
    loop_threads: set[int] = set()

    def left() -> str:
        loop_threads.add(threading.get_ident())
        barrier.wait()
        return "left"

    def right() -> str:
        loop_threads.add(threading.get_ident())
        barrier.wait()
        return "right"

    manager = LlmManager()
    scripted(manager, [calls(ToolCall("1", "left", {}), ToolCall("2", "right", {})), answer()])
    response = await manager.run_tools(ASK, {"left": left, "right": right})
    assert [m.content for m in response.messages[2:4]] == ["left", "right"]
    assert threading.get_ident() not in loop_threads and len(loop_threads) == 2


async def test_what_goes_wrong_in_a_call_is_an_error_result_the_model_reads() -> None:
    ran: list[str] = []

    def lookup(city: str) -> str:
        ran.append(city)
        if city == "Atlantis":
            raise LookupError("no such city")
        return city

    def odd(city: str) -> set[str]:
        return {city}

    manager = LlmManager()
    script = scripted(
        manager,
        [
            calls(
                ToolCall("1", "lookup", {"city": "Atlantis"}),
                ToolCall("2", "lookup", {"city": 3}),
                ToolCall("3", "lookup", {}, raw_arguments='{"city": "Os'),
                ToolCall("4", "nope", {}),
                ToolCall("5", "odd", {"city": "Oslo"}),
                ToolCall("6", "lookup", {"city": "Oslo", "extra": 1}),
            ),
            answer(),
        ],
    )
    response = await manager.run_tools(ASK, [lookup, odd])
    results = response.messages[2:8]
    assert all(r.is_error for r in results)
    assert results[0].content == "LookupError: no such city"
    assert "$.city: expected string, got 3" in results[1].content
    assert "not a JSON object" in results[2].content and '{"city": "Os' in results[2].content
    assert "unknown tool 'nope'" in results[3].content and "lookup, odd" in results[3].content
    assert "returned a set" in results[4].content
    assert '$: unexpected property "extra"' in results[5].content
    assert ran == ["Atlantis"]  # invalid arguments never reach the function
    assert [r.tool_name for r in results] == ["lookup", "lookup", "lookup", "nope", "odd", "lookup"]
    assert "Traceback" not in results[0].content
    assert len(script.sent) == 2


async def test_max_steps_raises_with_the_transcript_and_summed_usage() -> None:
    manager = LlmManager()
    steps = [calls(ToolCall(f"c{i}", "weather", {"city": "Oslo"})) for i in range(3)]
    scripted(manager, steps)
    with pytest.raises(ToolLoopError, match="max_steps=3") as caught:
        await manager.run_tools(ASK, [weather], max_steps=3)
    err = caught.value
    assert len(err.messages) == 1 + 3 * 2  # the prompt, then each call and its answered result
    assert err.messages[-1].role == "tool" and err.messages[-1].tool_call_id == "c2"
    assert err.response.usage == Usage(30, 15, 45) and err.response.messages == err.messages
    assert err.response.attempts == 3
    script = scripted(manager, [answer("at last")], instances=0)  # continue where it stopped
    again = await manager.run_tools(GenerationRequest(messages=err.messages), [weather])
    assert script.sent[0].messages == err.messages and again.messages[:-1] == err.messages
    assert again.content == "at last"


async def test_usage_and_attempts_are_summed_and_each_step_is_a_request() -> None:
    manager = LlmManager()
    events: list[Event] = []
    manager.add_hook(events.append)
    scripted(manager, [calls(ToolCall("1", "weather", {"city": "Oslo", "days": 2})), answer()])
    response = await manager.run_tools(ASK, {"weather": weather})
    assert response.usage == Usage(20, 10, 30) and response.attempts == 2
    assert response.messages[2].content == "Oslo: sunny for 2 day(s)"
    assert [e.kind for e in events].count("request_end") == 2
    assert manager.token_usage()[0].requests == 2


async def test_failover_mid_loop_continues_the_conversation_elsewhere() -> None:
    manager = LlmManager()
    script = scripted(
        manager,
        [calls(ToolCall("1", "weather", {"city": "Lima"})), ServerError("boom"), answer()],
        instances=2,
    )
    response = await manager.run_tools(ASK, [weather])
    assert [s.instance_id for s in script.sent] == [0, 1, 0]
    assert script.sent[1].messages == script.sent[2].messages  # the same conversation
    assert response.instance_id == 0 and response.attempts == 3 and response.content == "done"


async def test_a_step_failing_everywhere_raises_like_generate() -> None:
    manager = LlmManager(max_attempts=2)
    scripted(
        manager,
        [calls(ToolCall("1", "weather", {"city": "Lima"})), ServerError("a"), ServerError("b")],
        instances=2,
    )
    with pytest.raises(AllAttemptsFailedError):
        await manager.run_tools(ASK, [weather])


@pytest.mark.parametrize("forced", ["required", "weather"])
async def test_a_forcing_choice_becomes_auto_after_a_step_with_calls(forced: str) -> None:
    manager = LlmManager()
    steps = [calls(ToolCall(str(i), "weather", {"city": "Oslo"})) for i in range(2)]
    script = scripted(manager, [*steps, answer()])
    request = dataclasses.replace(ASK, tool_choice=forced)
    await manager.run_tools(request, [weather])
    assert [s.tools.choice for s in script.sent if s.tools] == [forced, "auto", "auto"]


async def test_none_and_auto_are_kept() -> None:
    manager = LlmManager()
    script = scripted(manager, [calls(ToolCall("1", "weather", {"city": "Oslo"})), answer()])
    await manager.run_tools(dataclasses.replace(ASK, tool_choice="none"), [weather])
    assert [s.tools.choice for s in script.sent if s.tools] == ["none", "none"]


async def test_functions_are_offered_with_their_schemas_or_the_requests_tools() -> None:
    manager = LlmManager()
    script = scripted(manager, [answer(), answer()])
    await manager.run_tools(ASK, [weather])
    offered = script.sent[0].tools
    assert offered is not None and offered.tools == (Tool.from_function(weather),)
    mine = Tool("get_weather", "mine", {"type": "object", "properties": {}})
    request = dataclasses.replace(ASK, tools=[mine], system="be brief")
    response = await manager.run_tools(request, {"get_weather": weather})
    tools = script.sent[1].tools
    assert tools is not None and tools.tools == (mine,)
    assert response.messages[0] == Message.system("be brief")


async def test_bad_set_ups_fail_before_anything_is_sent() -> None:
    manager = LlmManager()
    script = scripted(manager, [])
    lonely = Tool("lonely", "", {"type": "object", "properties": {}})

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    for request, functions, max_steps, message in [
        (dataclasses.replace(ASK, tools=[lonely]), [weather], 8, "tool 'lonely' has no function"),
        (ASK, [untyped], 8, "'untyped' cannot be offered.*no type annotation"),
        (ASK, [], 8, "at least one function"),
        (ASK, "weather", 8, "functions must map"),
        (ASK, [weather, weather], 8, "two functions are named 'weather'"),
        (ASK, [weather], 0, "max_steps must be a positive integer"),
        (GenerationRequest(), [weather], 8, "neither a prompt nor messages"),
    ]:
        with pytest.raises(InvalidRequestError, match=message):
            await manager.run_tools(request, functions, max_steps=max_steps)  # type: ignore[arg-type]
    assert script.sent == []


async def test_cancelling_the_loop_cancels_running_functions() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    manager = LlmManager()
    scripted(manager, [calls(ToolCall("1", "slow", {})), answer()])
    task = asyncio.ensure_future(manager.run_tools(ASK, [slow]))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()


class Unit(enum.Enum):
    C = "c"
    F = "f"


@dataclasses.dataclass
class Span:
    start: int
    end: int = 7


async def test_arguments_arrive_as_the_annotated_types() -> None:
    seen: list[Any] = []

    async def forecast(span: Span, unit: Unit = Unit.C) -> str:
        seen.append((span, unit))
        return "ok"

    manager = LlmManager()
    scripted(
        manager,
        [calls(ToolCall("1", "forecast", {"span": {"start": 1}, "unit": "f"})), answer()],
    )
    await manager.run_tools(ASK, [forecast])
    assert seen == [(Span(1, 7), Unit.F)]


def test_the_sync_manager_runs_the_loop() -> None:
    with SyncLlmManager() as sync:
        scripted(sync.manager, [calls(ToolCall("1", "weather", {"city": "Oslo"})), answer()])
        response = sync.run_tools(ASK, [weather], max_steps=2)
    assert response.content == "done" and response.messages[2].content.startswith("Oslo")


class Unreadable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@dataclasses.dataclass
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


async def test_odd_failures_of_the_callers_code_are_error_results_too() -> None:
    def unreadable() -> str:
        raise Unreadable

    def silent() -> str:
        raise KeyError

    def checked(value: Checked) -> int:
        return value.n

    manager = LlmManager()
    made = (
        ToolCall("1", "unreadable", {}),
        ToolCall("2", "silent", {}),
        ToolCall("3", "checked", {"value": {"n": -1}}),
        ToolCall("4", "checked", {"value": {"n": 2}}),
    )
    scripted(manager, [calls(*made), answer()])
    response = await manager.run_tools(ASK, [unreadable, silent, checked])
    results = [(m.content, m.is_error) for m in response.messages[2:6]]
    assert results == [
        ("Unreadable: (its message could not be read)", True),
        ("KeyError", True),
        ("ValueError: n must not be negative", True),
        ("2", False),
    ]
