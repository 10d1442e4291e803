"""Fixtures and small wire helpers shared by the emulator tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, aiohttp.ClientResponse, bytes]:
    """POST ``body`` (JSON-encoded unless bytes); return the status, the response and its body."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    async with session.post(url, data=data, headers=all_headers) as response:
        raw = await response.read()
    return response.status, response, raw


def sse_events(raw: bytes, separator: bytes = b"\n\n") -> list[bytes]:
    """Split an SSE body into its events (without separators), asserting it ends cleanly."""
    assert raw.endswith(separator), raw[-80:]
    return raw[: -len(separator)].split(separator)


def sse_data(raw: bytes, separator: bytes = b"\n\n") -> list[Any]:
    """The JSON payloads of the ``data:`` lines of an SSE body (``[DONE]`` kept as a string)."""
    payloads: list[Any] = []
    for event in sse_events(raw, separator):
        for line in event.split(separator[:-1] if separator == b"\r\n\r\n" else b"\n"):
            if line.startswith(b"data: "):
                text = line[6:].decode()
                payloads.append(text if text == "[DONE]" else json.loads(text))
    return payloads


def anthropic_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an Anthropic stream."""
    pairs = []
    for event in sse_events(raw):
        name_line, data_line = event.split(b"\n")
        assert name_line.startswith(b"event: ") and data_line.startswith(b"data: ")
        pairs.append((name_line[7:].decode(), json.loads(data_line[6:])))
    return pairs


def provider_request(
    emu: Any, stream: bool = False, text: str = "Hello there", key: str = "k"
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(url, headers, body) of a valid request in ``emu``'s dialect."""
    messages = [{"role": "user", "content": text}]
    if emu.provider == "openai":
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages, "stream": stream}
        return emu.base_url + "/chat/completions", {"Authorization": f"Bearer {key}"}, body
    if emu.provider == "anthropic":
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "messages": messages,
            "stream": stream,
        }
        return (
            emu.base_url + "/v1/messages",
            {"x-api-key": key, "anthropic-version": "2023-06-01"},
            body,
        )
    if emu.provider == "google":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        return f"{emu.base_url}/v1/models/gemini-2.5-flash:{action}", {"x-goog-api-key": key}, body
    body = {"model": "mistral-small-latest", "messages": messages, "stream": stream}
    return emu.base_url + "/v1/chat/completions", {"Authorization": f"Bearer {key}"}, body


PROVIDERS = ("openai", "anthropic", "google", "mistral")


async def settle(
    emu: Any, condition: Callable[[dict[str, Any]], bool], timeout: float = 3.0
) -> None:
    """Wait until ``condition(emu.stats())`` holds (server-side bookkeeping lags the client)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition(emu.stats()):
        assert loop.time() < deadline, emu.stats()
        await asyncio.sleep(0.01)
