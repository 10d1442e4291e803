"""The engine over a fake transport: one driver, one order of outcomes, for both kinds of
request; and the strategy it uses follows the manager's, in the one signature."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from flyllm import GenerationRequest, LlmManager
from flyllm._transport import Transport
from flyllm._wire import Timeouts
from flyllm.errors import AllAttemptsFailedError, ServerError
from flyllm.observe.events import Event
from flyllm.providers.base import HttpRequest, HttpResponse
from flyllm.routing.strategies import LeastRecentlyUsed, LowestCost
from tests.fixtures import fixture_bytes

OK = HttpResponse(200, {}, fixture_bytes("openai", "chat_completion.json"))
BOOM = HttpResponse(500, {}, b'{"error": {"message": "boom", "type": "server_error"}}')
STREAM = fixture_bytes("openai", "stream_basic.txt")
Script = list[HttpResponse | bytes | Exception]  # a head, a stream body, or a failure


class FakeBody:
    def __init__(self, data: bytes, fail: Exception | None = None) -> None:
        self._data, self._fail = data, fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self._data), 64):
            yield self._data[i : i + 64]
        if self._fail is not None:
            raise self._fail

    def progress(self) -> None:
        pass


class FakeTransport:
    """Answers from a script, one entry per attempt: no sockets."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sent: list[HttpRequest] = []
        self.open = 0  # streams not released

    async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
        self.sent.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, HttpResponse)
        return step

    @asynccontextmanager
    async def open_stream(
        self, request: HttpRequest, timeouts: Timeouts
    ) -> AsyncIterator[tuple[HttpResponse, FakeBody]]:
        self.sent.append(request)
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        self.open += 1
        try:
            if isinstance(step, HttpResponse):
                yield step, FakeBody(b"")
            else:
                cut = ServerError("cut") if step.endswith(b"CUT") else None
                yield HttpResponse(200, {}, b""), FakeBody(step.removesuffix(b"CUT"), cut)
        finally:
            self.open -= 1


def manager_with(
    script: Script, instances: int = 2
) -> tuple[LlmManager, FakeTransport, list[Event]]:
    manager = LlmManager()
    for i in range(instances):
        key = "-".join(["fake", "key", str(i)])
        manager.add_provider("openai", key, f"m{i}", base_url="http://127.0.0.1:9/v1")
    transport = FakeTransport(script)
    manager._engine.transport = cast(Transport, transport)
    events: list[Event] = []
    manager.add_hook(events.append)
    return manager, transport, events


def outline(events: list[Event]) -> list[tuple[str, int | None, bool | None, str | None]]:
    return [(e.kind, e.instance_id, e.success, e.reason) for e in events]


async def drain(manager: LlmManager) -> tuple[str, Any]:
    text = ""
    async with manager.stream(GenerationRequest(prompt="hi")) as stream:
        async for chunk in stream:
            text += chunk.text
    return text, stream.response


async def test_failover_then_success_is_recorded_in_the_same_order_streamed_or_not() -> None:
    plain, sent_plain, plain_events = manager_with([BOOM, OK])
    response = await plain.generate(GenerationRequest(prompt="hi"))
    streamed, sent_streamed, stream_events = manager_with([BOOM, STREAM])
    text, stream_response = await drain(streamed)
    expected = [
        ("attempt_start", 0, None, None),
        ("attempt_end", 0, False, None),
        ("attempt_start", 1, None, None),
        ("attempt_end", 1, True, None),
        ("request_end", None, True, None),
    ]
    assert outline(plain_events) == outline(stream_events) == expected
    assert response.success and response.attempts == 2 and response.instance_id == 1
    assert stream_response.success and stream_response.attempts == 2 and text
    assert stream_response.content == text and stream_response.usage is not None
    assert len(sent_plain.sent) == len(sent_streamed.sent) == 2 and sent_streamed.open == 0
    for manager in (plain, streamed):
        assert [i.stats.in_flight for i in manager._all] == [0, 0]
        assert [i.stats.failures for i in manager._all] == [1, 0]


async def test_raw_exceptions_are_typed_by_phase_in_both_modes() -> None:
    """A transport raising something untyped: the send phase, which fails over."""
    plain, _, _ = manager_with([RuntimeError("socket gone"), OK])
    assert (await plain.generate(GenerationRequest(prompt="hi"))).success
    streamed, _, events = manager_with([RuntimeError("socket gone"), STREAM])
    _, response = await drain(streamed)
    assert response.success
    failed = [e for e in events if e.kind == "attempt_end" and not e.success]
    assert [e.error_kind for e in failed] == ["connection"]


async def test_a_stream_failing_after_text_keeps_it_and_does_not_fail_over() -> None:
    manager, transport, events = manager_with([STREAM + b"CUT", STREAM])
    with pytest.raises(ServerError) as caught:
        await drain(manager)
    assert caught.value.partial_content and len(transport.script) == 1  # no second attempt
    assert transport.open == 0
    ends = [e for e in events if e.kind == "request_end"]
    assert [(e.success, e.error_kind) for e in ends] == [(False, "server")]


async def test_every_failure_ends_as_one_response_in_both_modes() -> None:
    plain, _, plain_events = manager_with([BOOM] * 6, instances=1)
    with pytest.raises(AllAttemptsFailedError):
        await plain.generate(GenerationRequest(prompt="hi", max_attempts=1))
    streamed, _, stream_events = manager_with([BOOM] * 6, instances=1)
    with pytest.raises(AllAttemptsFailedError):
        async with streamed.stream(GenerationRequest(prompt="hi", max_attempts=1)) as stream:
            async for _ in stream:
                pass
    assert not stream.response.success and stream.response.error_kind == "server"
    assert outline(plain_events) == outline(stream_events)
    assert [e.kind for e in plain_events][-1] == "request_end"


async def test_a_stream_failing_before_text_fails_over() -> None:
    manager, transport, events = manager_with([b"CUT", STREAM])
    text, response = await drain(manager)
    assert response.success and text and not transport.script and transport.open == 0
    assert [e.success for e in events if e.kind == "attempt_end"] == [False, True]


def test_the_engine_follows_a_reassigned_strategy() -> None:
    manager = LlmManager()
    engine = manager._engine
    first = engine.strategy
    assert isinstance(first, LeastRecentlyUsed) and engine.strategy is first  # cached
    manager.strategy = LowestCost()
    now: object = engine.strategy
    assert now is manager.strategy


def test_a_one_argument_strategy_still_works_with_a_deprecation_warning() -> None:
    class Old:
        def order(self, candidates: Sequence[Any]) -> list[Any]:
            return list(reversed(candidates))

    with pytest.warns(DeprecationWarning, match=r"order\(candidates, estimate\)"):
        manager = LlmManager(strategy=cast(Any, Old()))
    cands: list[Any] = [object(), object()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # adapted once, not on every request
        assert manager._engine.strategy.order(cands, (1, 1)) == cands[::-1]
    manager.strategy = cast(Any, Old())  # assigned later: adapted too
    with pytest.warns(DeprecationWarning):
        assert manager._engine.strategy.order(cands, (1, 1)) == cands[::-1]
