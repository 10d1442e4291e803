"""Structured output and images through the engine, over a scripted model: a non-conforming
answer is a failed attempt that fails over (within max_attempts) and leaves the breaker
alone; ``parsed`` holds the value (or the pydantic instance), streamed or not; the providers'
"not supported" answers are learned; routing names the capability no instance has."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pydantic
import pytest

from flyllm import (
    AllAttemptsFailedError,
    GenerationRequest,
    Image,
    JsonSchema,
    LlmManager,
    Message,
    NoInstanceAvailableError,
    StructuredOutputError,
    ToolCall,
    UnsupportedFeatureError,
)
from flyllm._transport import Transport
from flyllm._wire import SseEvent, Timeouts
from flyllm.providers.base import Completion, HttpRequest, HttpResponse
from flyllm.routing.resilience import REQUEST_KINDS
from flyllm.types import ErrorKind
from tests.unit.test_run_tools import USAGE, Script, ScriptedProvider, Step, answer, calls

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
INVOICE = JsonSchema(
    "invoice",
    {
        "type": "object",
        "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
        "required": ["total", "currency"],
        "additionalProperties": False,
    },
)
GOOD = '{"total": 12.5, "currency": "EUR"}'
EXTRACT = GenerationRequest(prompt="Extract the invoice: 12.50 EUR", response_format=INVOICE)
PICTURE = GenerationRequest(messages=[Message.user(["What is this?", Image.from_bytes(PNG)])])
ABLE = frozenset({"tools", "named_tool_choice", "structured_output", "images"})


class Invoice(pydantic.BaseModel):
    """An invoice's fields."""

    total: float
    currency: str


class _TextParser:
    def __init__(self) -> None:
        self.text = ""

    def feed(self, event: SseEvent) -> str | None:
        self.text += event.data
        return event.data

    def finish(self) -> Completion:
        return Completion(self.text, "stop", "stop", USAGE)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data

    def progress(self) -> None:
        pass


class FakeTransport:
    """Every request gets an empty 200; a stream carries the next scripted answer's text."""

    def __init__(self, script: Script) -> None:
        self.script = script

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        return HttpResponse(200, {}, b"{}")

    @asynccontextmanager
    async def open_stream(self, request: HttpRequest, timeouts: Timeouts) -> Any:
        step = self.script.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        text = step.content
        pieces = [text[: len(text) // 3], text[len(text) // 3 :]]
        body = b"".join(b"data: " + p.encode() + b"\n\n" for p in pieces if p)
        yield HttpResponse(200, {}, b""), _Body(body)

    async def aclose(self) -> None:
        pass


class StreamingScripted(ScriptedProvider):
    stream_framing = "sse"

    def stream_parser(self, endpoint: Any = None) -> Any:
        return _TextParser()


async def no_sleep(seconds: float) -> None:
    pass


def managed(
    steps: Sequence[Step],
    capabilities: Sequence[frozenset[str]] = (ABLE, ABLE),
    **options: Any,
) -> tuple[LlmManager, Script]:
    """Instances (one per entry of ``capabilities``) answering from ``steps``."""
    manager = LlmManager(strategy="round_robin", sleep=no_sleep, **options)
    script = Script(steps)
    for i, able in enumerate(capabilities):
        key = "-".join(["fake", "key", str(i)])
        manager.add_provider("openai", key, f"m{i}", base_url="http://127.0.0.1:9/v1")
        instance = manager._all[i]
        instance.provider = StreamingScripted(instance.provider, instance.id, script)
        instance.capabilities = able
    manager._engine.transport = cast(Transport, FakeTransport(script))
    return manager, script


async def collect(manager: LlmManager, request: GenerationRequest) -> tuple[str, Any]:
    text = ""
    async with manager.stream(request) as stream:
        async for chunk in stream:
            text += chunk.text
    return text, stream


# -- parsed -----------------------------------------------------------------------------------


async def test_parsed_holds_the_value_a_json_answer_or_the_pydantic_instance() -> None:
    manager, script = managed([answer(GOOD)] * 3)
    response = await manager.generate(EXTRACT)
    assert response.parsed == {"total": 12.5, "currency": "EUR"} and response.content == GOOD
    loose = await manager.generate(dataclasses.replace(EXTRACT, response_format="json"))
    assert loose.parsed == {"total": 12.5, "currency": "EUR"}
    typed = await manager.generate(dataclasses.replace(EXTRACT, response_format=Invoice))
    assert typed.parsed == Invoice(total=12.5, currency="EUR")
    assert isinstance(typed.parsed, Invoice)
    plain = managed([answer("hello")])[0]
    assert (await plain.generate(GenerationRequest(prompt="hi"))).parsed is None
    assert len(script.sent) == 3


async def test_a_non_conforming_answer_fails_over_and_leaves_the_breaker_closed() -> None:
    manager, script = managed([answer("Sure! The total is 12.50"), answer(GOOD)])
    response = await manager.generate(EXTRACT)
    assert response.parsed == {"total": 12.5, "currency": "EUR"}
    assert response.attempts == 2 and [s.instance_id for s in script.sent] == [0, 1]
    first = manager.instance_health()[0]
    assert first.state == "closed" and first.consecutive_failures == 0
    assert ErrorKind.STRUCTURED_OUTPUT in REQUEST_KINDS


async def test_when_every_answer_is_wrong_each_error_carries_the_raw_text_and_errors() -> None:
    wrong = ['{"total": "12.50"}', "not json at all", "[]"]
    manager, script = managed([answer(w) for w in wrong])
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(EXTRACT)  # both instances, then a new round: max_attempts=3
    errors = caught.value.attempts
    assert [type(e) for e in errors] == [StructuredOutputError] * 3
    first, second, _ = cast(Sequence[StructuredOutputError], errors)
    assert first.raw_text == wrong[0] and second.raw_text == wrong[1]
    assert any("total" in e for e in first.errors) and any("currency" in e for e in first.errors)
    assert second.errors and "not JSON" in second.errors[0]
    assert first.instance_id == 0 and first.provider == "openai"
    assert "invoice" in str(first)
    assert all(h.consecutive_failures == 0 for h in manager.instance_health())
    failed = (await managed([answer("nope")] * 3)[0].batch_generate([EXTRACT]))[0]
    assert failed.error_kind == "structured_output" and not failed.success
    assert len(script.sent) == 3


async def test_max_attempts_bounds_the_retries_of_a_wrong_answer() -> None:
    manager, script = managed([answer("no")] * 3, (ABLE, ABLE, ABLE), max_attempts=2)
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(EXTRACT)
    assert len(caught.value.attempts) == 2 and len(script.sent) == 2
    one, script = managed([answer("no")] * 3, (ABLE, ABLE, ABLE))
    with pytest.raises(AllAttemptsFailedError):
        await one.generate(dataclasses.replace(EXTRACT, max_attempts=1))
    assert len(script.sent) == 1


# -- streams ----------------------------------------------------------------------------------


async def test_a_stream_with_a_schema_has_parsed_at_its_end() -> None:
    manager, _ = managed([answer(GOOD)])
    text, stream = await collect(manager, dataclasses.replace(EXTRACT, response_format=Invoice))
    assert text == GOOD and stream.response.content == GOOD
    assert stream.response.parsed == Invoice(total=12.5, currency="EUR")


async def test_a_wrong_streamed_answer_raises_after_its_text_without_failing_over() -> None:
    manager, script = managed([answer("Sure! 12.50 EUR"), answer(GOOD)])
    text = ""
    with pytest.raises(StructuredOutputError) as caught:
        async with manager.stream(EXTRACT) as stream:
            async for chunk in stream:
                text += chunk.text
    assert text == "Sure! 12.50 EUR"  # the text went out: no second answer spliced on
    assert caught.value.raw_text == text and caught.value.partial_content == text
    assert len(script.sent) == 1 and len(script.steps) == 1
    assert stream.response.success is False and stream.response.error_kind == "structured_output"
    assert manager.instance_health()[0].consecutive_failures == 0


# -- capabilities -----------------------------------------------------------------------------


@pytest.mark.parametrize(("feature", "request_"), [("structured_output", EXTRACT),
                                                   ("images", PICTURE)])  # fmt: skip
async def test_a_not_supported_answer_is_learned(
    feature: str, request_: GenerationRequest, caplog: pytest.LogCaptureFixture
) -> None:
    refusal = UnsupportedFeatureError(f"this model cannot do {feature}", feature=feature)
    manager, script = managed([refusal, answer(GOOD), answer(GOOD), answer("hi")])
    with caplog.at_level(logging.WARNING, logger="flyllm"):
        response = await manager.generate(request_)
        assert response.instance_id == 1 and response.attempts == 2
        await manager.generate(request_)  # instance 0 is skipped now
        manager.disable_instance(1)
        with pytest.raises(NoInstanceAvailableError, match=f"needs {feature}; instance 0"):
            await manager.generate(request_)
        await manager.generate(GenerationRequest(prompt="hi"))  # text still goes there
    assert [s.instance_id for s in script.sent] == [0, 1, 1, 0]
    assert manager.instances()[0].capabilities == ABLE - {feature}
    assert manager.instance_health()[0].consecutive_failures == 0
    assert any(f"cannot do {feature!r}" in r.getMessage() for r in caplog.records)


async def test_no_capable_instance_names_the_missing_capability_before_sending() -> None:
    text_only = frozenset({"tools"})
    manager, script = managed([], (text_only, ABLE - {"images"}))
    with pytest.raises(NoInstanceAvailableError) as caught:
        await manager.generate(dataclasses.replace(PICTURE, response_format="json"))
    message = str(caught.value)
    assert "needs images, structured_output" in message
    assert "instance 0 (openai/m0#0) lacks images, structured_output" in message
    assert "instance 1 (openai/m1#1) lacks images" in message
    with pytest.raises(NoInstanceAvailableError, match="needs structured_output"):
        managed([], (text_only,))[0].stream(EXTRACT)
    assert script.sent == []


# -- run_tools ----------------------------------------------------------------------------------


def weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: sunny, 21 C"


async def test_run_tools_with_a_response_format_parses_the_final_answer() -> None:
    report = JsonSchema(
        "report",
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
            "required": ["city", "celsius"],
        },
    )
    steps: list[Step] = [
        calls(ToolCall("c1", "weather", {"city": "Oslo"})),
        answer('{"city": "Oslo", "celsius": 21}'),
    ]
    manager, script = managed(steps)
    request = GenerationRequest(prompt="Weather in Oslo, as JSON", response_format=report)
    response = await manager.run_tools(request, [weather])
    assert response.parsed == {"city": "Oslo", "celsius": 21}
    assert response.attempts == 2 and len(script.sent) == 2  # the tool step was not refused
    assert [m.role for m in response.messages] == ["user", "assistant", "tool", "assistant"]


async def test_tool_calls_in_answer_to_a_request_without_tools_are_not_the_answer() -> None:
    # A hostile or broken server: without tools offered, calls cannot stand for the JSON.
    made = ToolCall("c1", "get_weather", {"city": "Oslo"})
    manager, script = managed([calls(made), answer(GOOD)])
    response = await manager.generate(EXTRACT)
    assert response.parsed == {"total": 12.5, "currency": "EUR"} and response.attempts == 2
    assert len(script.sent) == 2
    manager, _ = managed([calls(made)], (ABLE,), max_attempts=1)
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(EXTRACT)
    (err,) = cast(Sequence[StructuredOutputError], caught.value.attempts)
    assert err.errors == ("the answer calls tools (get_weather), but the request offered none",)
