"""Cohere chat v2 dialect on the wire: content blocks, two usage counts, named events, strict
schema, errors and faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault, generate_text
from tests.emulator.conftest import post, sse_events

KEY = "co-good-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "command-a-03-2025"


def chat(content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("cohere", api_keys={KEY}, models={MODEL}, seed=7) as instance:
        yield instance


def url(emu: Emulator) -> str:
    return emu.base_url + "/v2/chat"


def named_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    pairs = []
    for event in sse_events(raw):
        name, data = event.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:].decode()
        pairs.append((payload["type"], payload))
    return pairs


async def test_non_stream_answer(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat(max_tokens=100), AUTH)
    assert status == 200
    data = json.loads(raw)
    text = " ".join(generate_text("Hello there", seed=7))
    assert data["message"] == {"role": "assistant", "content": [{"type": "text", "text": text}]}
    assert data["finish_reason"] == "COMPLETE" and len(data["id"]) == 36
    n = len(text.split())
    assert data["usage"] == {
        "billed_units": {"input_tokens": 5, "output_tokens": n},
        "tokens": {"input_tokens": 5 + 66, "output_tokens": n},
    }


async def test_stream_events(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, response, raw = await post(session, url(emu), chat(stream=True), AUTH)
    assert status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    events = named_events(raw)
    names = [name for name, _ in events]
    assert names[:2] == ["message-start", "content-start"] and names[-2:] == [
        "content-end",
        "message-end",
    ]
    text = "".join(
        e["delta"]["message"]["content"]["text"] for n, e in events if n == "content-delta"
    )
    assert text == " ".join(generate_text("Hello there", seed=7))
    end = events[-1][1]["delta"]
    assert end["finish_reason"] == "COMPLETE"
    assert end["usage"]["billed_units"]["output_tokens"] == names.count("content-delta")
    assert b"[DONE]" not in raw


async def test_limits_and_stop_sequences(emu: Emulator, session: aiohttp.ClientSession) -> None:
    words = generate_text("Hello there", seed=7)
    limited = json.loads((await post(session, url(emu), chat(max_tokens=3), AUTH))[2])
    assert limited["finish_reason"] == "MAX_TOKENS"
    stopped = json.loads((await post(session, url(emu), chat(stop_sequences=[words[4]]), AUTH))[2])
    assert stopped["finish_reason"] == "STOP_SEQUENCE"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (chat(top_p=0.5), 400, "unknown field: parameter top_p is not a valid field"),
        (chat(temperature=1.5), 400, "temperature must be between 0 and 1"),
        (chat(p=1.0), 400, "p must be between 0.01 and 0.99"),
        (chat(stop_sequences=list("abcdef")), 400, "at most 5"),
        ({"messages": [{"role": "user", "content": "x"}]}, 400, "model parameter is required"),
        (chat(model="command-x"), 404, "model 'command-x' not found"),
        (chat("[[context_length]] long"), 400, "too many tokens"),
    ],
)
async def test_errors(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], status: int, message: str
) -> None:
    got, _, raw = await post(session, url(emu), body, AUTH)
    data = json.loads(raw)
    assert got == status and message in data["message"] and len(data["id"]) == 36


async def test_auth(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), chat())
    assert status == 401 and json.loads(raw)["message"] == "no api key supplied"
    status, _, raw = await post(session, url(emu), chat(), {"Authorization": "Bearer nope"})
    assert status == 401 and json.loads(raw)["message"] == "invalid api token"


@pytest.mark.parametrize(
    ("kind", "status"),
    [("rate_limit", 429), ("quota", 402), ("server_error", 500), ("overloaded", 503),
     ("bad_gateway", 502), ("unauthorized", 401)],
)  # fmt: skip
async def test_fault_answers(session: aiohttp.ClientSession, kind: str, status: int) -> None:
    async with Emulator("cohere", faults=[Fault(kind)]) as emu:
        got, _, raw = await post(session, url(emu), chat(), AUTH)
        assert got == status and json.loads(raw)["message"]


async def test_stream_error_is_an_error_finish(session: aiohttp.ClientSession) -> None:
    async with Emulator("cohere", reply_tokens=10) as emu:
        emu.schedule(Fault("stream_error", after_chunks=2))
        events = named_events((await post(session, url(emu), chat(stream=True), AUTH))[2])
        assert [n for n, _ in events].count("content-delta") == 2
        assert events[-1][1]["delta"] == {
            "error": "internal server error",
            "finish_reason": "ERROR",
        }
