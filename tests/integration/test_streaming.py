"""Streaming against the emulator: exact text, usage, failover before the first chunk, errors
after it, and connections closed at once when the caller leaves."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from flyllm import (
    AllAttemptsFailedError,
    GenerationRequest,
    InvalidRequestError,
    LlmManager,
    OverloadedError,
    ProviderError,
    ServerError,
    StreamInterruptedError,
    SyncLlmManager,
    TaskDefinition,
)
from flyllm.emulator import Fault
from tests.integration.conftest import EmulatorFactory, body, emulator_in_thread

PROVIDERS = ["openai", "anthropic", "google", "mistral"]


async def _drain(manager: LlmManager, request: GenerationRequest) -> tuple[list[str], object]:
    async with manager.stream(request) as stream:
        texts = [chunk.text async for chunk in stream]
    return texts, stream.response


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_text_and_usage_match_the_non_streamed_answer(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider)
    manager.add_provider(provider, "k", "model-x", base_url=emu.base_url)
    request = GenerationRequest(prompt="tell me a story", params={"max_tokens": 25})
    plain = await manager.generate(request)

    chunks = []
    async with manager.stream(request) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    final = stream.response

    assert "".join(c.text for c in chunks) == plain.content == final.content
    assert len([c for c in chunks if c.text]) > 5  # really streamed, chunk by chunk
    last = chunks[-1]
    assert last.finish_reason == plain.finish_reason == final.finish_reason == "length"
    assert last.usage == plain.usage == final.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert {(c.instance_id, c.provider, c.model) for c in chunks} == {(0, provider, "model-x")}
    assert final.success and final.attempts == 1
    usage = manager.token_usage()[0]
    assert usage.requests == 2 and usage.total_tokens == 2 * plain.usage.total_tokens
    if provider == "openai":
        assert body(emu)["stream_options"] == {"include_usage": True}
    assert emu.stats()["streams_completed"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "fault", ["rate_limit", "server_error", "overloaded", "stream_error", "stream_cut", "malformed"]
)
async def test_errors_before_the_first_chunk_fail_over(
    provider: str, fault: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad, good = await emulators(provider), await emulators(provider)
    manager.add_provider(provider, "k", "m", base_url=bad.base_url)
    manager.add_provider(provider, "k", "m", base_url=good.base_url)
    bad.schedule(Fault(fault, after_chunks=0), count=1)  # stream faults strike before any text
    texts, response = await _drain(manager, GenerationRequest(prompt="hello there"))
    plain = await manager.generate(GenerationRequest(prompt="hello there"))
    # Failed before any text: the whole answer came from the second instance, once.
    assert "".join(texts) == plain.content
    assert response.instance_id == 1 and response.attempts == 2  # type: ignore[attr-defined]
    assert bad.stats()["faults_injected"] == {fault: 1}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_cut_after_text_raises_with_the_partial_content(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider, reply_tokens=40)
    other = await emulators(provider)
    manager.add_provider(provider, "k", "m", base_url=emu.base_url)
    manager.add_provider(provider, "k", "m", base_url=other.base_url)
    emu.set_faults([Fault("stream_cut")])
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async with manager.stream(GenerationRequest(prompt="long answer")) as stream:
            async for chunk in stream:
                received.append(chunk.text)
    assert received, "the cut comes mid-way, after some text"
    assert caught.value.partial_content == "".join(received)
    assert caught.value.instance_id == 0
    assert other.stats()["requests"] == 0  # no splice of another instance's text


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_error_event_after_text_raises_the_providers_error(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider, reply_tokens=30)
    other = await emulators(provider)
    manager.add_provider(provider, "k", "m", base_url=emu.base_url)
    manager.add_provider(provider, "k", "m", base_url=other.base_url)
    emu.set_faults([Fault("stream_error", after_chunks=3)])
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async with manager.stream(GenerationRequest(prompt="x")) as stream:
            async for chunk in stream:
                received.append(chunk.text)
    expected = OverloadedError if provider == "anthropic" else ServerError
    assert type(caught.value) is expected and caught.value.status == 200
    assert len(received) == 3 and caught.value.partial_content == "".join(received)
    assert other.stats()["requests"] == 0


async def test_response_after_a_failed_stream_is_the_failed_response(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai", reply_tokens=30)
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)
    emu.schedule(Fault("stream_cut", after_chunks=4))
    stream = manager.stream(GenerationRequest(prompt="x", max_attempts=1))
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as caught:
        async with stream:
            async for chunk in stream:
                received.append(chunk.text)
    failed = stream.response
    assert not failed.success and failed.exception is caught.value
    assert failed.content == "".join(received) != ""
    assert failed.error == str(caught.value) and failed.error_kind == "stream_interrupted"
    assert failed.instance_id == 0 and failed.attempts == 1

    emu.set_faults([Fault("server_error")])  # every attempt fails before any text
    stream = manager.stream(GenerationRequest(prompt="x", max_attempts=2))
    with pytest.raises(AllAttemptsFailedError) as every:
        async for _ in stream:
            pass
    failed = stream.response
    assert not failed.success and failed.exception is every.value
    assert failed.content == "" and failed.error_kind == "server"
    assert failed.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_slow_first_chunk_and_per_chunk_delay(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider, latency_ms=150, chunk_delay_ms=10, reply_tokens=12)
    manager.add_provider(provider, "k", "m", base_url=emu.base_url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    arrivals: list[float] = []
    async with manager.stream(GenerationRequest(prompt="slowly")) as stream:
        async for chunk in stream:
            if chunk.text:
                arrivals.append(loop.time() - started)
    assert arrivals[0] >= 0.14  # the first chunk waited for the time to first chunk
    assert arrivals[-1] - arrivals[0] >= 0.09  # later chunks trickled in, not all at once
    assert stream.response.usage.completion_tokens == 12


async def test_all_attempts_failing_before_text(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai", faults=[Fault("server_error")])
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)
    with pytest.raises(AllAttemptsFailedError) as caught:
        async for _ in manager.stream(GenerationRequest(prompt="x", max_attempts=2)):
            pass
    assert [a.kind.value for a in caught.value.attempts] == ["server", "server"]


@pytest.mark.parametrize("how", ["leave_block", "aclose", "cancel"])
async def test_leaving_early_closes_the_connection_at_once(
    how: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai", reply_tokens=500, chunk_delay_ms=5)
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)

    async def consume() -> None:
        async with manager.stream(GenerationRequest(prompt="endless")) as stream:
            async for _ in stream:
                if how == "leave_block":
                    break
                if how == "aclose":
                    await stream.aclose()
                    break
                await asyncio.sleep(10)  # cancelled from outside

    if how == "cancel":
        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await consume()
    for _ in range(100):
        if emu.stats()["streams_cancelled"] == 1:
            break
        await asyncio.sleep(0.01)
    assert emu.stats()["streams_cancelled"] == 1
    assert emu.stats()["in_flight"] == 0
    assert manager._instance(0).stats.in_flight == 0
    # The pool still works for the next requests.
    response = await manager.generate(GenerationRequest(prompt="next", params={"max_tokens": 5}))
    assert response.success


async def test_stream_rejects_bad_input_before_sending(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)
    with pytest.raises(InvalidRequestError):
        manager.stream(GenerationRequest())
    stream = manager.stream(GenerationRequest(prompt="x"))
    with pytest.raises(RuntimeError, match="not ended"):
        _ = stream.response
    await stream.aclose()
    assert emu.stats()["requests"] == 0


def test_sync_stream_is_a_plain_iterator() -> None:
    with emulator_in_thread("google", chunk_delay_ms=5) as emu, SyncLlmManager() as manager:
        manager.add_provider("google", "k", "gemini-2.5-flash", base_url=emu.base_url)
        request = GenerationRequest(prompt="sync please", params={"max_tokens": 8})
        with manager.stream(request) as stream:
            texts = [chunk.text for chunk in stream]
        assert "".join(texts) == stream.response.content
        assert stream.response.usage.completion_tokens == 8
        with manager.stream(GenerationRequest(prompt="long", params={"max_tokens": 200})) as early:
            first = next(iter(early))
        assert first.text and first.provider == "google"
        for _ in range(100):
            if emu.stats()["streams_cancelled"] == 1:
                break
            time.sleep(0.01)
        assert emu.stats()["streams_cancelled"] == 1


async def test_an_abandoned_stream_is_closed_when_collected(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("anthropic", reply_tokens=400, chunk_delay_ms=5)
    manager.add_provider("anthropic", "k", "m", base_url=emu.base_url)

    async def start_and_forget() -> None:
        stream = manager.stream(GenerationRequest(prompt="forgotten"))
        await stream.__anext__()  # one chunk, then the stream is dropped unclosed

    await start_and_forget()
    gc.collect()
    for _ in range(200):
        if emu.stats()["streams_cancelled"] == 1:
            break
        await asyncio.sleep(0.01)
    assert emu.stats()["streams_cancelled"] == 1
    assert manager._instance(0).stats.in_flight == 0


async def test_streams_follow_task_routing_and_parameters(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    oa, go = await emulators("openai"), await emulators("google")
    task = TaskDefinition("poem", {"max_tokens": 7, "temperature": 0.5})
    manager.add_provider("openai", "k", "gpt", [TaskDefinition("other")], base_url=oa.base_url)
    manager.add_provider("google", "k", "gemini", [task], base_url=go.base_url)
    for _ in range(3):
        async with manager.stream(GenerationRequest(prompt="p", task="poem")) as stream:
            async for _chunk in stream:
                pass
        assert stream.response.provider == "google"
        assert stream.response.usage.completion_tokens == 7
    assert oa.stats()["requests"] == 0
    config = body(go)["generationConfig"]
    assert config["maxOutputTokens"] == 7 and config["temperature"] == 0.5
    assert go.requests[-1].path.endswith(":streamGenerateContent")
    assert manager.token_usage()[1].requests == 3
