"""The transport against hostile servers: decompression bombs, redirects, slow drips, and
requests aiohttp refuses to send. Each case runs in a budget of wall time and peak memory.

Cases drive the Transport directly, and the same attacks go through ``LlmManager`` (openai and
anthropic instances whose ``base_url`` is the hostile server, a well-behaved one behind it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import secrets
import socket
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from aiohttp import web

from flyllm import LlmManager
from flyllm._transport import Transport
from flyllm._wire import Timeouts
from flyllm.errors import (
    AllAttemptsFailedError,
    FlyLLMError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderTimeoutError,
    RedirectError,
)
from flyllm.providers.base import HttpRequest
from flyllm.routing.attempts import Attempt, Plan
from flyllm.types import GenerationRequest
from tests.fixtures import fixture_bytes
from tests.hostile.conftest import (
    RawHandler,
    budget,
    http_server,
    raw_server,
    read_request_head,
)

OPENAI_ANSWER = fixture_bytes("openai", "chat_completion.json")
MiB = 1024 * 1024
LIMIT = MiB  # max_response_bytes of the transports under attack


def fake_key() -> str:
    """A key-shaped string built at run time (no key-shaped literal is committed)."""
    return "sk-" + "hostile-" + secrets.token_hex(12)


# -- decompression bombs ---------------------------------------------------------------------


@functools.cache
def bomb(encoding: str, mebibytes: int) -> bytes:
    """``mebibytes`` MiB of zeros, compressed (about 1 KB per MiB). Built from one independent
    deflate segment repeated (a full flush resets the compressor), as compressing the real
    thing takes seconds; the trailer's checksum is not computed, since a client that stops at
    its limit never reaches it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    deflated = segment * mebibytes + b"\x03\x00"  # an empty final block
    if encoding == "gzip":
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + deflated + struct.pack("<II", 0, 0)
    return b"\x78\xda" + deflated + b"\x00\x00\x00\x00"  # zlib-wrapped, as HTTP's deflate is


def compressed(encoding: str, data: bytes) -> bytes:
    """``data`` as a server would send it with this Content-Encoding."""
    wbits = {"gzip": 31, "deflate": 15, "raw-deflate": -15}[encoding]
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


def post(url: str, **headers: str) -> HttpRequest:
    return HttpRequest("POST", url + "/v1/chat/completions", headers, b"{}")


def served(body: bytes, *, status: int = 200, **headers: str) -> web.StreamResponse:
    """A handler's answer: ``body`` as is, with these headers (underscores as dashes)."""
    return web.Response(
        status=status, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("status", [200, 500])
async def test_a_compressed_bomb_is_cut_off_at_the_decoded_limit(
    encoding: str, status: int
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        # 1 MB that inflates to 1 GiB (aiohttp's content_length is the compressed size)
        return served(bomb(encoding, 1024), status=status, Content_Encoding=encoding)

    async with http_server(handler) as url:
        transport = Transport(max_response_bytes=2 * MiB)
        try:
            with (
                budget(seconds=3, megabytes=40),
                pytest.raises(MalformedResponseError, match="larger than 2097152 bytes"),
            ):
                await transport.send(post(url), Timeouts(read=10))
        finally:
            await transport.aclose()


async def test_a_compressed_error_body_of_a_stream_is_cut_off() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return served(bomb("gzip", 256), status=429, Content_Encoding="gzip")

    async with http_server(handler) as url:
        transport = Transport(max_response_bytes=LIMIT)
        try:
            with (
                budget(seconds=3, megabytes=40),
                pytest.raises(MalformedResponseError, match="larger than 1048576 bytes"),
            ):
                async with transport.open_stream(post(url), Timeouts(read=10)):
                    pass
        finally:
            await transport.aclose()


async def test_a_compressed_stream_bomb_is_cut_off() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return served(bomb("gzip", 256), Content_Encoding="gzip", Content_Type="text/event-stream")

    async with http_server(handler) as url:
        transport = Transport(max_response_bytes=LIMIT)
        received = 0
        try:
            with (
                budget(seconds=3, megabytes=40),
                pytest.raises(MalformedResponseError, match="longer than 1048576 bytes"),
            ):
                async with transport.open_stream(post(url), Timeouts(read=10)) as (_, body):
                    async for chunk in body:
                        received += len(chunk)
        finally:
            await transport.aclose()
        assert received <= LIMIT


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_answers_are_decoded(encoding: str) -> None:
    text = b'{"answer": "' + b"ok " * 5000 + b'"}'
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Accept-Encoding", ""))
        header = "deflate" if encoding == "raw-deflate" else encoding
        return served(compressed(encoding, text), Content_Encoding=header)

    async with http_server(handler) as url:
        transport = Transport(max_response_bytes=LIMIT)
        try:
            response = await transport.send(post(url), Timeouts(read=10))
            async with transport.open_stream(post(url), Timeouts(read=10)) as (_, body):
                streamed = b"".join([chunk async for chunk in body])
        finally:
            await transport.aclose()
    assert response.body == text and streamed == text
    assert seen == ["gzip, deflate"] * 2  # only what flyllm can inflate in bounded steps


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    [
        ("br", b"\x0b\x02\x80hello\x03", "Content-Encoding 'br'"),
        ("gzip", b"this is not gzip", "could not decode"),
        ("gzip", compressed("gzip", secrets.token_bytes(4000))[:-100], "ended before"),
    ],
)
async def test_undecodable_bodies_are_malformed(encoding: str, body: bytes, message: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return served(body, Content_Encoding=encoding)

    async with http_server(handler) as url:
        transport = Transport(max_response_bytes=LIMIT)
        try:
            with pytest.raises(MalformedResponseError, match=message):
                await transport.send(post(url), Timeouts(read=10))
            with pytest.raises(MalformedResponseError, match=message):
                async with transport.open_stream(post(url), Timeouts(read=10)) as (_, body_):
                    async for _chunk in body_:
                        pass
        finally:
            await transport.aclose()


# -- redirects -------------------------------------------------------------------------------


@asynccontextmanager
async def redirecting(status: int) -> AsyncIterator[tuple[str, str, list[str]]]:
    """A server answering ``status`` with a Location on a second server (with userinfo and a
    key in its query); yields both URLs and the requests the second one saw."""
    reached: list[str] = []

    async def target(request: web.Request) -> web.StreamResponse:
        reached.append(f"{request.method} {request.path}")
        return served(OPENAI_ANSWER, Content_Type="application/json")

    async with http_server(target) as target_url:
        secret = secrets.token_hex(8)
        location = target_url.replace("//", f"//user:{secret}@") + f"/v1/x?key={secret}"

        async def redirect(request: web.Request) -> web.StreamResponse:
            return served(b"moved", status=status, Location=location)

        async with http_server(redirect) as url:
            yield url, target_url, reached


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed(status: int) -> None:
    async with redirecting(status) as (url, target_url, reached):
        transport = Transport()
        try:
            with budget(seconds=2, megabytes=30):
                with pytest.raises(RedirectError) as sent:
                    await transport.send(post(url, **{"x-api-key": fake_key()}), Timeouts())
                with pytest.raises(RedirectError) as streamed:
                    async with transport.open_stream(post(url), Timeouts()):
                        pass
        finally:
            await transport.aclose()
    assert reached == []
    for error in (sent.value, streamed.value):
        assert error.status == status and error.location == target_url
        assert f"HTTP {status}" in str(error) and target_url in str(error)
        assert "key=" not in str(error) and "user" not in str(error) and "@" not in repr(error)


async def test_a_relative_or_unreadable_location_is_named_safely() -> None:
    locations = iter(["/v2/chat?key=abc", "http://[::1", ""])

    async def handler(request: web.Request) -> web.StreamResponse:
        return served(b"", status=302, Location=next(locations))

    async with http_server(handler) as url:
        transport = Transport()
        try:
            errors = []
            for _ in range(3):
                with pytest.raises(RedirectError) as caught:
                    await transport.send(post(url), Timeouts())
                errors.append(caught.value)
        finally:
            await transport.aclose()
    assert errors[0].location == url and "key=" not in str(errors[0])
    assert errors[1].location is None and "unreadable" in str(errors[1])
    assert errors[2].location is None


# -- slow drips ------------------------------------------------------------------------------

DRIP = 0.05  # seconds between two bytes of a drip
READ = 0.5  # the read timeout the drips are up against
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def dripping(sent: bytes, dripped: bytes = b"", forever: bytes = b"") -> RawHandler:
    """A raw server sending ``sent`` at once, ``dripped`` one byte per DRIP seconds, then
    ``forever`` again and again, DRIP seconds apart, until the client leaves."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(sent)
        for byte in dripped:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(DRIP)
        while forever:
            writer.write(forever)
            await writer.drain()
            await asyncio.sleep(DRIP)

    return handler


async def test_a_dripped_response_head_is_bounded_by_the_read_timeout() -> None:
    head = SSE_HEAD.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\n")
    async with raw_server(dripping(b"", head)) as url:
        transport = Transport()
        try:
            with budget(seconds=2.5, megabytes=30):
                with pytest.raises(ProviderTimeoutError, match=r"read timeout 0\.5 s"):
                    async with transport.open_stream(post(url), Timeouts(read=READ)):
                        pass
                with pytest.raises(ProviderTimeoutError, match=r"read timeout 0\.5 s"):
                    await transport.send(post(url), Timeouts(read=READ))
        finally:
            await transport.aclose()


@pytest.mark.parametrize(
    "forever", [b":", b"\n", b"x"], ids=["comment bytes", "blank lines", "an endless line"]
)
async def test_a_stream_completing_no_event_times_out(forever: bytes) -> None:
    body = b"data: " if forever == b"x" else b""
    async with raw_server(dripping(SSE_HEAD, body, forever)) as url:
        transport = Transport()
        received = 0
        try:
            with (
                budget(seconds=2, megabytes=30),
                pytest.raises(ProviderTimeoutError, match="no complete event"),
            ):
                async with transport.open_stream(post(url), Timeouts(read=READ)) as (_, b):
                    async for chunk in b:
                        received += len(chunk)
        finally:
            await transport.aclose()
    assert received > 0  # bytes arrived all along: only whole events count


async def test_a_dripped_error_body_of_a_stream_is_bounded_by_the_read_timeout() -> None:
    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10000\r\n\r\n"
    async with raw_server(dripping(head, forever=b"x")) as url:
        transport = Transport()
        try:
            with (
                budget(seconds=2, megabytes=30),
                pytest.raises(ProviderTimeoutError, match=r"body did not arrive within the read"),
            ):
                async with transport.open_stream(post(url), Timeouts(read=READ)):
                    pass
        finally:
            await transport.aclose()


# -- requests aiohttp refuses to send, and URLs in messages ---------------------------------


async def ok(request: web.Request) -> web.StreamResponse:
    return served(OPENAI_ANSWER, Content_Type="application/json")


async def both_ways(transport: Transport, request: HttpRequest, timeouts: Timeouts) -> list[str]:
    """What send and open_stream raise for ``request``: each error's str and repr, checking
    that both are typed (FlyLLMError) and that no raw exception escapes."""
    texts = []
    with pytest.raises(FlyLLMError) as sent:
        await transport.send(request, timeouts)
    with pytest.raises(FlyLLMError) as streamed:
        async with transport.open_stream(request, timeouts):
            pass
    for error in (sent.value, streamed.value):
        assert error.__cause__ is None or isinstance(error.__cause__, FlyLLMError | OSError)
        texts += [str(error), repr(error), type(error).__name__]
    return texts


@pytest.mark.parametrize(
    ("value", "says"),
    [("\r\nX-Injected: 1", "line break"), ("\n", "line break"), (5, "not a string")],
    ids=["CRLF", "LF", "int"],
)
async def test_a_header_aiohttp_refuses_is_an_invalid_request(value: object, says: str) -> None:
    key = fake_key()
    async with http_server(ok) as url:
        transport = Transport()
        try:
            header: Any = key + value if isinstance(value, str) else value  # as a bug might
            request = HttpRequest("POST", url + "/v1", {"x-api-key": header}, b"{}")
            texts = await both_ways(transport, request, Timeouts())
        finally:
            await transport.aclose()
    assert texts[2] == texts[5] == "InvalidRequestError"
    assert "x-api-key" in texts[0] and says in texts[0] and url in texts[0]
    assert not any(key in text for text in texts)


@pytest.mark.parametrize(
    "timeouts",
    [Timeouts(read=math.inf), Timeouts(connect=math.nan), Timeouts(total=math.inf)],
    ids=["read inf", "connect nan", "total inf"],
)
async def test_a_timeout_that_is_no_number_of_seconds_is_an_invalid_request(
    timeouts: Timeouts,
) -> None:
    async with http_server(ok) as url:
        transport = Transport()
        try:
            texts = await both_ways(transport, post(url), timeouts)
        finally:
            await transport.aclose()
    assert texts[2] == texts[5] == "InvalidRequestError"
    assert "timeout" in texts[0] and "finite" in texts[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:{s}@127.0.0.1:99999/v1?key={s}",
        "not a url?key={s}",
        "ftp://user:{s}@127.0.0.1/v1?key={s}",
        "http://user:{s}@127.0.0.1:{closed}/v1?key={s}",
    ],
    ids=["bad port", "no scheme", "ftp", "refused"],
)
async def test_urls_in_transport_errors_are_masked(url: str) -> None:
    secret = secrets.token_hex(8)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = url.format(s=secret, closed=closed.getsockname()[1])
        transport = Transport()
        try:
            texts = await both_ways(transport, post(url), Timeouts(connect=2))
        finally:
            await transport.aclose()
    assert not any(secret in text for text in texts)
    assert "?key=***" in texts[0] or "key" not in texts[0]  # the name stays, never the value
    assert "user" not in texts[0]  # the whole user-info goes


# -- the same attacks through the manager ----------------------------------------------------


@asynccontextmanager
async def hostile_then_good(
    provider: str, bad_url: str, *, read_timeout: float = 120.0
) -> AsyncIterator[LlmManager]:
    """A manager whose instance 0 is the hostile server at ``bad_url`` and instance 1 a
    well-behaved one (answering the provider's recorded answer or stream)."""
    answer = "chat_completion.json" if provider == "openai" else "message.json"

    async def good(request: web.Request) -> web.StreamResponse:
        if (await request.json()).get("stream"):
            body = fixture_bytes(provider, "stream_basic.txt")
            return served(body, Content_Type="text/event-stream")
        return served(fixture_bytes(provider, answer), Content_Type="application/json")

    async with http_server(good) as good_url:
        suffix = "/v1" if provider == "openai" else ""
        async with LlmManager(max_response_bytes=LIMIT, read_timeout=read_timeout) as manager:
            manager.add_provider(provider, fake_key(), "m", base_url=bad_url + suffix)
            manager.add_provider(provider, fake_key(), "m", base_url=good_url + suffix)
            yield manager


async def test_a_bomb_fails_over_through_generate() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return served(bomb("gzip", 512), Content_Encoding="gzip")

    async with http_server(handler) as bad, hostile_then_good("openai", bad) as manager:
        with budget(seconds=4, megabytes=60):
            response = await manager.generate(GenerationRequest(prompt="x"))
        manager.disable_instance(1)
        (failed,) = await manager.batch_generate([GenerationRequest(prompt="x")])
    assert response.success and response.instance_id == 1
    assert failed.error_kind == "malformed_response"
    assert "larger than 1048576 bytes" in (failed.error or "")


async def test_a_stream_bomb_fails_over_through_stream() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return served(bomb("gzip", 256), Content_Encoding="gzip", Content_Type="text/event-stream")

    async with http_server(handler) as bad, hostile_then_good("anthropic", bad) as manager:
        with budget(seconds=4, megabytes=60):
            async with manager.stream(GenerationRequest(prompt="x")) as stream:
                text = "".join([chunk.text async for chunk in stream])
    assert text == "Hello there!" and stream.response.instance_id == 1


@pytest.mark.parametrize("status", [302, 307])
async def test_a_redirect_fails_over_and_benches_the_instance(status: int) -> None:
    reached: list[str] = []
    hits: list[str] = []

    async def target(request: web.Request) -> web.StreamResponse:
        reached.append(request.path)
        return served(OPENAI_ANSWER, Content_Type="application/json")

    async with http_server(target) as target_url:

        async def handler(request: web.Request) -> web.StreamResponse:
            hits.append(request.path)
            return served(b"", status=status, Location=target_url + request.path)

        async with http_server(handler) as bad, hostile_then_good("openai", bad) as manager:
            with budget(seconds=3, megabytes=30):
                first = await manager.generate(GenerationRequest(prompt="x"))
                second = await manager.generate(GenerationRequest(prompt="x"))
                async with manager.stream(GenerationRequest(prompt="x")) as stream:
                    async for _ in stream:
                        pass
            health = manager.instance_health()[0]
    assert first.instance_id == second.instance_id == stream.response.instance_id == 1
    assert len(hits) == 1 and reached == []  # tried once, then benched; the target never hit
    assert health.reason == "not_found" and health.cooldown_left > 300


async def test_a_redirect_through_anthropic_stream_names_the_origin() -> None:
    async with redirecting(308) as (url, target_url, reached), LlmManager() as manager:
        manager.add_provider("anthropic", fake_key(), "m", base_url=url)
        with pytest.raises(AllAttemptsFailedError) as caught:
            async with manager.stream(GenerationRequest(prompt="x")) as stream:
                async for _ in stream:
                    pass
    (error,) = caught.value.attempts
    assert isinstance(error, RedirectError) and error.location == target_url
    assert "HTTP 308" in str(caught.value) and "key=" not in str(caught.value)
    assert reached == []


@pytest.mark.parametrize(
    "drip",
    [b":", b"x\n"],
    # "x\n" lines decode as pseudo-events (kept only for Gemini's bare JSON errors): found by
    # review, counting them as progress kept an OpenAI stream alive for ever.
    ids=["comment bytes", "lines that are not events"],
)
async def test_a_stalled_stream_fails_over_through_stream(drip: bytes) -> None:
    async def stalled(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while True:  # never an event
            await response.write(drip)
            await asyncio.sleep(DRIP)

    async with (
        http_server(stalled) as bad,
        hostile_then_good("openai", bad, read_timeout=READ) as manager,
    ):
        with budget(seconds=2, megabytes=30):
            async with manager.stream(GenerationRequest(prompt="x")) as stream:
                text = "".join([chunk.text async for chunk in stream])
    assert text and stream.response.instance_id == 1
    assert manager.instance_health()[0].failures == 1


@pytest.mark.parametrize("call", ["stream", "generate"])
async def test_a_dripped_head_fails_over_through_anthropic(call: str) -> None:
    async with (
        raw_server(dripping(b"", SSE_HEAD + b"x" * 100)) as bad,
        hostile_then_good("anthropic", bad, read_timeout=READ) as manager,
    ):
        with budget(seconds=2, megabytes=30):
            if call == "stream":
                async with manager.stream(GenerationRequest(prompt="x")) as stream:
                    text = "".join([chunk.text async for chunk in stream])
                response = stream.response
            else:
                response = await manager.generate(GenerationRequest(prompt="x"))
                text = response.content
    assert text and response.instance_id == 1
    assert manager.instance_health()[0].failures == 1


async def test_a_slow_but_steady_stream_is_not_cut() -> None:
    events = [e + b"\n\n" for e in fixture_bytes("openai", "stream_basic.txt").split(b"\n\n")]
    size = -(-len(events) // 6)
    batches = [b"".join(events[i : i + size]) for i in range(0, len(events), size)]

    async def steady(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for batch in batches:  # each within the read timeout, the whole stream not
            await response.write(batch)
            await asyncio.sleep(READ * 0.4)
        return response

    async with http_server(steady) as url, LlmManager(read_timeout=READ) as manager:
        manager.add_provider("openai", fake_key(), "m", base_url=url + "/v1")
        with budget(seconds=3, megabytes=30):
            async with manager.stream(GenerationRequest(prompt="x")) as stream:
                text = "".join([chunk.text async for chunk in stream])
    assert text and stream.response.success
    assert READ * 0.4 * len(batches) > 2 * READ  # the whole stream outlasts the read timeout


async def test_unsendable_requests_fail_alone_through_the_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Set-up checks keep bad headers and timeouts out; should one reach the transport anyway
    (defence in depth), only its own request fails, with a typed error."""
    async with http_server(ok) as url, LlmManager() as manager:
        manager.add_provider("openai", fake_key(), "m", base_url=url + "/v1")
        manager.add_provider("anthropic", fake_key(), "m", base_url=url)
        build = manager._engine._build

        def poisoned(attempt: Attempt, plan: Plan, *, stream: bool = False) -> HttpRequest:
            request = build(attempt, plan, stream=stream)
            if plan.messages[-1].content == "bad":
                request = dataclasses.replace(
                    request, headers={**request.headers, "x-k": cast(str, 1)}
                )
            return request

        monkeypatch.setattr(manager._engine, "_build", poisoned)
        with budget(seconds=2, megabytes=30):
            bad, good = await manager.batch_generate(
                [GenerationRequest(prompt="bad", task=None), GenerationRequest(prompt="good")]
            )
            with pytest.raises(InvalidRequestError, match="'x-k' is not a string"):
                async with manager.stream(GenerationRequest(prompt="bad")) as stream:
                    async for _ in stream:
                        pass
            manager._instances[0].default_timeouts = Timeouts(read=math.inf)
            manager.disable_instance(1)
            with pytest.raises(InvalidRequestError, match="read timeout inf"):
                await manager.generate(GenerationRequest(prompt="good"))
    assert bad.error_kind == "invalid_request" and "'x-k' is not a string" in (bad.error or "")
    assert good.success


async def test_a_slow_reader_does_not_time_out_a_prompt_stream() -> None:
    """The read timeout measures the server, not the caller: time spent on a chunk by the code
    iterating the stream does not count against it."""
    events = [e + b"\n\n" for e in fixture_bytes("openai", "stream_basic.txt").split(b"\n\n")]

    async def prompt(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
            await asyncio.sleep(0.01)
        return response

    async with http_server(prompt) as url, LlmManager(read_timeout=READ) as manager:
        manager.add_provider("openai", fake_key(), "m", base_url=url + "/v1")
        with budget(seconds=3, megabytes=30):
            async with manager.stream(GenerationRequest(prompt="x")) as stream:
                parts: list[str] = []
                async for chunk in stream:
                    if not parts:
                        await asyncio.sleep(READ * 1.5)  # the caller is busy, the server is not
                    parts.append(chunk.text)
    assert stream.response.success and "".join(parts) == stream.response.content
