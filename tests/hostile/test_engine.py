"""The manager, attempt loop and streams under abuse: abandoned and cancelled requests release
everything and say so, and one request's raw exception never costs its siblings."""

from __future__ import annotations

import _thread
import asyncio
import gc
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from flyllm import (
    AllAttemptsFailedError,
    FlyLLMError,
    GenerationRequest,
    InvalidRequestError,
    LlmManager,
    MalformedResponseError,
    SyncLlmManager,
)
from flyllm.emulator import Emulator
from flyllm.observe.events import Event
from flyllm.observe.metrics import PrometheusMetrics
from tests.hostile.conftest import budget, http_server
from tests.integration.conftest import emulator_in_thread

DEEP = b"[" * 200_000  # a JSON body nested past any recursion limit


@contextmanager
def no_gc() -> Iterator[None]:
    """Prove a release does not wait for the garbage collector."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def settle(condition: Any, turns: int = 100) -> bool:
    """Let the event loop turn until ``condition()`` holds (at most ``turns`` short sleeps)."""
    for _ in range(turns):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return bool(condition())


@asynccontextmanager
async def emulator(**kwargs: Any) -> AsyncIterator[Emulator]:
    async with Emulator(provider="openai", **kwargs) as emu:
        yield emu


def _answer(text: str) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    return {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [choice],
        "usage": usage,
    }


async def poisoned(request: web.Request) -> web.StreamResponse:
    """An OpenAI-shaped server answering normally, except a deeply nested body to "poison"."""
    sent = await request.json()
    prompt = sent["messages"][-1]["content"]
    body = DEEP if prompt == "poison" else json.dumps(_answer(f"echo {prompt}")).encode()
    return web.Response(body=body, content_type="application/json")


# -- abandoned and cancelled requests (issue 13 item 12) --------------------------------------


async def test_a_stream_never_iterated_holds_no_connection_or_slot() -> None:
    with budget(seconds=10, megabytes=50):
        async with emulator() as emu, LlmManager() as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=1)
            streams = [manager.stream(GenerationRequest(prompt=f"p{i}")) for i in range(5)]
            assert manager._instance(0).stats.in_flight == 0
            answer = await manager.generate(GenerationRequest(prompt="next", deadline=2.0))
            assert answer.success and emu.stats()["requests"] == 1
            del streams


async def test_a_dropped_stream_frees_its_slot_and_connection_without_a_gc() -> None:
    with budget(seconds=10, megabytes=50), no_gc():
        async with (
            emulator(reply_tokens=400, chunk_delay_ms=5) as emu,
            LlmManager() as manager,
        ):
            manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=1)
            events: list[Event] = []
            manager.add_hook(events.append)

            async def read_one_and_drop() -> None:
                stream = manager.stream(GenerationRequest(prompt="forgotten"))
                await stream.__anext__()  # one chunk, then dropped unclosed

            await read_one_and_drop()
            assert await settle(lambda: emu.stats()["streams_cancelled"] == 1)
            assert manager._instance(0).stats.in_flight == 0
            ends = [e for e in events if e.kind == "request_end"]
            assert len(ends) == 1 and ends[0].reason == "cancelled" and not ends[0].success
            # max_concurrent=1: the next request gets the slot at once.
            answer = await manager.generate(GenerationRequest(prompt="next", deadline=2.0))
            assert answer.success


def test_a_dropped_sync_stream_frees_its_slot_without_a_gc() -> None:
    with (
        budget(seconds=10, megabytes=50),
        no_gc(),
        emulator_in_thread("openai", reply_tokens=400, chunk_delay_ms=5) as emu,
        SyncLlmManager() as manager,
    ):
        manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=1)

        def read_one_and_drop() -> None:
            stream = manager.stream(GenerationRequest(prompt="forgotten"))
            next(iter(stream))

        read_one_and_drop()
        for _ in range(100):
            if emu.stats()["streams_cancelled"] == 1:
                break
            time.sleep(0.01)
        assert emu.stats()["streams_cancelled"] == 1
        assert manager.manager._instance(0).stats.in_flight == 0
        assert manager.generate(GenerationRequest(prompt="next", deadline=2.0)).success


async def test_cancelled_requests_end_as_cancelled_and_leave_no_state() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    with budget(seconds=10, megabytes=50):
        async with emulator(latency_ms=5000) as emu, LlmManager() as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=2)
            events: list[Event] = []
            manager.add_hook(events.append)
            manager.add_hook(metrics)
            for i in range(20):  # generate() and stream(), cancelled while the attempt hangs
                task: asyncio.Future[Any] = asyncio.ensure_future(
                    manager.generate(GenerationRequest(prompt="x"))
                    if i % 2
                    else _drain(manager, GenerationRequest(prompt="y"))
                )
                await settle(lambda: manager._instance(0).stats.in_flight == 1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert manager._instance(0).stats.in_flight == 0
            ends = [e for e in events if e.kind == "request_end"]
            assert len(ends) == 20 and {e.reason for e in ends} == {"cancelled"}
            assert {e.request_id for e in ends} == set(range(1, 21))
            assert metrics._last_instance == {}  # no per-request entry outlives its request
            assert manager._engine._capacity is None and len(manager._task_usage) <= 1
            assert len(manager._transport._timeouts) <= 2 and not manager._engine._broken_hooks
            assert await settle(lambda: emu.stats()["in_flight"] == 0)  # connections dropped
            cancelled = registry.get_sample_value(
                "flyllm_requests_total", {"task": "", "stream": "false", "outcome": "cancelled"}
            )
            assert cancelled == 10
            assert manager._instance(0).stats.failures == 0  # leaving is not the server's fault


async def test_leaving_after_the_last_chunk_is_a_success_not_a_cancel() -> None:
    with budget(seconds=10, megabytes=50):
        async with emulator(reply_tokens=5) as emu, LlmManager() as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url)
            events: list[Event] = []
            manager.add_hook(events.append)
            async with manager.stream(GenerationRequest(prompt="x")) as stream:
                async for chunk in stream:
                    if chunk.finish_reason:
                        break  # the answer is complete: the caller does not wait for the end
            assert stream.response.success and stream.response.attempts == 1
            (end,) = [e for e in events if e.kind == "request_end"]
            assert end.success and end.reason is None
            assert manager._instance(0).stats.successes == 1


async def test_a_request_cancelled_while_waiting_ends_as_cancelled() -> None:
    with budget(seconds=10, megabytes=50):
        async with emulator(latency_ms=5000) as emu, LlmManager() as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=1)
            events: list[Event] = []
            manager.add_hook(events.append)
            busy = asyncio.ensure_future(manager.generate(GenerationRequest(prompt="busy")))
            await settle(lambda: manager._instance(0).stats.in_flight == 1)
            waiting = asyncio.ensure_future(manager.generate(GenerationRequest(prompt="waits")))
            await settle(lambda: any(e.kind == "wait" for e in events))
            waiting.cancel()
            busy.cancel()
            await asyncio.gather(busy, waiting, return_exceptions=True)
            ends = [e for e in events if e.kind == "request_end"]
            assert len(ends) == 2 and {e.reason for e in ends} == {"cancelled"}
            assert manager._instance(0).stats.in_flight == 0


async def _drain(manager: LlmManager, request: GenerationRequest) -> None:
    async with manager.stream(request) as stream:
        async for _ in stream:
            pass


# -- raw exceptions never escape the error tree, nor cost a batch (issue 13 item 4) ----------


async def test_deep_nesting_fails_one_request_and_keeps_its_siblings() -> None:
    with budget(seconds=15, megabytes=100):
        async with http_server(poisoned) as url, LlmManager(max_attempts=1) as manager:
            manager.add_provider("openai", "k", "m", base_url=url)
            prompts = ["a", "b", "poison", "c", "d"]
            responses = await manager.batch_generate([GenerationRequest(prompt=p) for p in prompts])
            assert [r.success for r in responses] == [True, True, False, True, True]
            assert [r.content for r in responses if r.success] == [
                "echo a", "echo b", "echo c", "echo d",
            ]  # fmt: skip
            failed = responses[2]
            assert failed.error and failed.error_kind == "malformed_response"
            assert isinstance(failed.exception, FlyLLMError)
            with pytest.raises(AllAttemptsFailedError) as caught:
                await manager.generate(GenerationRequest(prompt="poison"))
            (attempt,) = caught.value.attempts
            assert isinstance(attempt, MalformedResponseError)


class _Broken:
    """A provider whose build or parse raises a raw exception for one prompt."""

    def __init__(self, inner: Any, where: str, exc: BaseException) -> None:
        self._inner, self._where, self._exc = inner, where, exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def build(self, endpoint: Any, messages: Any, params: Any, **kwargs: Any) -> Any:
        if self._where == "build" and messages[-1].content == "boom":
            raise self._exc
        return self._inner.build(endpoint, messages, params, **kwargs)

    def parse(self, response: Any, endpoint: Any = None) -> Any:
        if self._where == "parse" and b"boom" in response.body:
            raise self._exc
        return self._inner.parse(response, endpoint)


@pytest.mark.parametrize(
    ("where", "exc", "error"),
    [
        ("build", TypeError("unhashable"), InvalidRequestError),
        ("build", RecursionError("too deep"), InvalidRequestError),
        ("parse", TypeError("'int' object is not subscriptable"), AllAttemptsFailedError),
        ("parse", KeyError("choices"), AllAttemptsFailedError),
    ],
)
async def test_a_raw_exception_below_is_one_typed_failure(
    where: str, exc: BaseException, error: type[FlyLLMError]
) -> None:
    with budget(seconds=10, megabytes=50):
        async with http_server(poisoned) as url, LlmManager(max_attempts=1) as manager:
            manager.add_provider("openai", "k", "m", base_url=url)
            instance = manager._instance(0)
            instance.provider = _Broken(instance.provider, where, exc)
            events: list[Event] = []
            manager.add_hook(events.append)
            requests = [GenerationRequest(prompt=p) for p in ["one", "boom", "two"]]
            responses = await manager.batch_generate(requests)
            assert [r.success for r in responses] == [True, False, True]
            failed = responses[1]
            assert isinstance(failed.exception, error)
            assert type(exc).__name__ in (failed.error or "")
            with pytest.raises(error) as caught:
                await manager.generate(GenerationRequest(prompt="boom"))
            cause = caught.value
            if isinstance(cause, AllAttemptsFailedError):
                cause = cause.attempts[0]
                assert isinstance(cause, MalformedResponseError)
            assert cause.__cause__ is exc  # chained, for the traceback
            assert instance.stats.in_flight == 0
            assert len([e for e in events if e.kind == "request_end"]) == 4


async def test_a_deeply_nested_stream_event_is_a_typed_failure() -> None:
    async def deep_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + DEEP + b"\n\n")
        return response

    with budget(seconds=10, megabytes=100):
        async with http_server(deep_stream) as url, LlmManager(max_attempts=1) as manager:
            manager.add_provider("openai", "k", "m", base_url=url)
            stream = manager.stream(GenerationRequest(prompt="x"))
            with pytest.raises(AllAttemptsFailedError) as caught:
                async for _ in stream:
                    pass
            assert isinstance(caught.value.attempts[0], MalformedResponseError)
            assert not stream.response.success and manager._instance(0).stats.in_flight == 0


async def test_a_raw_exception_quoting_secrets_is_scrubbed() -> None:
    with budget(seconds=10, megabytes=50):
        secret = "-".join(["sk", "raw", "5e1f0a9b"])  # built at run time
        async with http_server(poisoned) as url, LlmManager(max_attempts=1) as manager:
            host = url.split("://", 1)[1]
            manager.add_provider(
                "anthropic", secret, "c", base_url=f"http://u:{secret}x@{host}/?key={secret}y",
                headers={"X-Gateway-Key": secret + "z"},
            )  # fmt: skip
            instance = manager._instance(0)
            endpoint = instance.endpoint
            leak = ValueError(f"{endpoint.base_url} {endpoint.headers} {endpoint.api_key}")
            instance.provider = _Broken(instance.provider, "build", leak)
            (failed,) = await manager.batch_generate([GenerationRequest(prompt="boom")])
            assert isinstance(failed.exception, InvalidRequestError) and "ValueError" in str(
                failed.exception
            )
            assert secret not in (failed.error or "") and "***" in (failed.error or "")


def test_an_interrupted_sync_call_cancels_its_request() -> None:
    with (
        budget(seconds=10, megabytes=50),
        emulator_in_thread("openai", latency_ms=5000) as emu,
        SyncLlmManager() as manager,
    ):
        manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=1)
        events: list[Event] = []
        manager.manager.add_hook(events.append)
        # Ctrl-C while it waits (the answer takes 5 s; 1 s leaves a loaded machine time to send)
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            manager.generate(GenerationRequest(prompt="slow"))
        timer.join()
        for _ in range(500):
            if any(e.kind == "request_end" for e in events):
                break
            time.sleep(0.01)
        ends = [e for e in events if e.kind == "request_end"]
        assert len(ends) == 1 and ends[0].reason == "cancelled"
        assert manager.manager._instance(0).stats.in_flight == 0


async def test_an_attempt_is_released_once_whatever_happens_after_its_outcome() -> None:
    with budget(seconds=10, megabytes=50):
        async with emulator() as emu, LlmManager() as manager:
            manager.add_provider("openai", "k", "m", base_url=emu.base_url, max_concurrent=1)
            events: list[Event] = []

            def hook(event: Event) -> None:
                events.append(event)
                if event.kind == "attempt_end":
                    raise asyncio.CancelledError  # the caller leaves just after the outcome

            manager.add_hook(hook)
            with pytest.raises(asyncio.CancelledError):
                await manager.generate(GenerationRequest(prompt="x"))
            assert manager._instance(0).stats.in_flight == 0  # not -1: released once
            assert [e.kind for e in events][-1] == "request_end"
