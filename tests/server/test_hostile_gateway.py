"""Hostile bodies against every POST route: each ends in the caller's protocol's 400 or 413,
never a 500 or a hang. One gateway over one openai emulator serves the whole table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from flyllm.server import GatewaySettings
from tests.server.conftest import GatewayFactory

HI = b'[{"role":"user","content":"hi"}]'
CHAT = b'{"model":"chat","max_tokens":5,"messages":' + HI
ROUTES = ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/embeddings")
BODIES = {
    "not JSON": b"hello",
    "not an object": b"[1, 2]",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "5,000-digit integer": CHAT + b',"seed":' + b"9" * 5000 + b"}",
    "invalid UTF-8": b'{"model":"chat","input":"\xff\xfe","messages":' + HI + b"}",
    "empty model": b'{"model":"","max_tokens":5,"input":"a","messages":' + HI + b"}",
    "model a number": b'{"model":5,"max_tokens":5,"input":"a","messages":' + HI + b"}",
    "messages a string": b'{"model":"chat","max_tokens":5,"input":5,"messages":"hi"}',
}
CHAT_ONLY = {
    "NaN temperature": CHAT + b',"temperature":NaN}',
    "1e999 temperature": CHAT + b',"temperature":1e999}',
    "lone surrogate": b'{"model":"chat","max_tokens":5,"messages":'
    + b'[{"role":"user","content":"\\ud800"}]}',
    "stream a string": CHAT + b',"stream":"true"}',
    "content a number": b'{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":5}]}',
}


def _error_shape(route: str, body: object) -> bool:
    if not isinstance(body, dict):
        return False
    if route.startswith("/v1/messages"):
        return body.get("type") == "error" and isinstance(body["error"].get("message"), str)
    return isinstance(body.get("error"), dict) and isinstance(body["error"].get("message"), str)


@pytest.fixture
async def url(gateway: GatewayFactory) -> AsyncIterator[str]:
    served = await gateway("openai", settings=GatewaySettings(max_body_bytes=1_000_000))
    yield served.url


async def _post(url: str, route: str, data: object) -> tuple[int, object]:
    headers = {"anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url + route, data=data, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize("route", ROUTES)
async def test_hostile_bodies_are_400_in_the_routes_protocol(url: str, route: str) -> None:
    for name, body in BODIES.items():
        status, answer = await _post(url, route, body)
        assert status == 400, (name, answer)
        assert _error_shape(route, answer), (name, answer)


@pytest.mark.parametrize("route", ROUTES[:2])
async def test_hostile_fields_are_400(url: str, route: str) -> None:
    for name, body in CHAT_ONLY.items():
        status, answer = await _post(url, route, body)
        assert status == 400, (name, answer)
        assert _error_shape(route, answer), (name, answer)


async def test_include_usage_must_be_a_boolean(url: str) -> None:
    body = CHAT + b',"stream":true,"stream_options":{"include_usage":"yes"}}'
    status, answer = await _post(url, ROUTES[0], body)
    assert status == 400
    assert answer == {
        "error": {
            "message": "'stream_options.include_usage' must be a boolean",
            "type": "invalid_request_error",
            "param": "stream_options.include_usage",
            "code": None,
        }
    }


@pytest.mark.parametrize("route", ROUTES)
async def test_a_chunked_body_over_the_limit_is_413(url: str, route: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: aiohttp sends it chunked
        yield b'{"model":"chat","input":"'
        for _ in range(20):
            yield b"a" * 100_000

    status, answer = await _post(url, route, chunks())
    assert status == 413
    assert _error_shape(route, answer)


@pytest.mark.parametrize("route", ROUTES)
async def test_a_body_that_never_arrives_is_408_in_time(
    gateway: GatewayFactory, route: str
) -> None:
    served = await gateway("openai", settings=GatewaySettings(body_timeout=0.3))
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(  # the Content-Length lies: 10 of its 1,000 bytes ever come
            f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'anthropic-version: 2023-06-01\r\nContent-Length: 1000\r\n\r\n{"model":'.encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.read(2000), 5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert b"did not arrive" in body


IMAGE_SOURCE_A_STRING = (
    b'{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":'
    b'[{"type":"image","source":"x"}]}]}'
)
PART_TYPE_AN_ARRAY = (
    b'{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":'
    b'[{"type":["text"],"text":"hi"}]}]}'
)


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", PART_TYPE_AN_ARRAY),
        ("/v1/messages", IMAGE_SOURCE_A_STRING),
        ("/v1/messages/count_tokens", IMAGE_SOURCE_A_STRING),
    ],
)
async def test_a_part_of_the_wrong_shape_is_400_not_500(url: str, route: str, body: bytes) -> None:
    status, answer = await _post(url, route, body)
    assert status == 400, answer
    assert _error_shape(route, answer)


async def test_count_tokens_answers_an_unexpected_failure_in_anthropics_shape(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(call: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr("flyllm.server.anthropic_messages.estimate_tokens", broken)
    status, answer = await _post(url, "/v1/messages/count_tokens", CHAT + b"}")
    assert status == 500
    assert answer == {
        "type": "error",
        "error": {"type": "api_error", "message": "internal error in the gateway"},
    }
