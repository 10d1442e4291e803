"""Fault injection: every kind, per provider, scheduled and probabilistic."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from flyllm.emulator import FAULT_KINDS, Emulator, Fault, generate_text
from tests.emulator.conftest import PROVIDERS, post, provider_request, settle

ERROR_CASES: list[tuple[str, str, int, str]] = [
    ("openai", "rate_limit", 429, '"code":"rate_limit_exceeded"'),
    (
        "openai",
        "quota",
        429,
        '"type":"insufficient_quota","param":null,"code":"insufficient_quota"',
    ),
    ("openai", "server_error", 500, '"type":"server_error"'),
    ("openai", "bad_gateway", 502, '"type":"cf_bad_gateway"'),
    ("openai", "unavailable", 503, '"type":"cf_service_unavailable"'),
    ("openai", "overloaded", 503, "engine is currently overloaded"),
    ("openai", "unauthorized", 401, '"code":"invalid_api_key"'),
    ("anthropic", "rate_limit", 429, '"type":"rate_limit_error"'),
    ("anthropic", "quota", 400, "credit balance is too low"),
    ("anthropic", "server_error", 500, '"type":"api_error"'),
    ("anthropic", "bad_gateway", 502, '"type":"api_error"'),
    ("anthropic", "unavailable", 503, '"type":"api_error"'),
    ("anthropic", "overloaded", 529, '"error":{"type":"overloaded_error","message":"Overloaded"}'),
    ("anthropic", "unauthorized", 401, '"type":"authentication_error"'),
    ("google", "rate_limit", 429, '"status": "RESOURCE_EXHAUSTED"'),
    ("google", "quota", 429, "PerDay"),
    ("google", "server_error", 500, '"status": "INTERNAL"'),
    ("google", "bad_gateway", 502, "<title>Error 502 (Server Error)!!1</title>"),
    ("google", "unavailable", 503, '"status": "UNAVAILABLE"'),
    ("google", "overloaded", 503, "The model is overloaded"),
    ("google", "unauthorized", 400, '"reason": "API_KEY_INVALID"'),
    ("mistral", "rate_limit", 429, '{"message":"Requests rate limit exceeded"}'),
    ("mistral", "quota", 429, '{"message":"Monthly tokens limit exceeded"}'),
    ("mistral", "server_error", 500, '"object":"error"'),
    ("mistral", "bad_gateway", 502, "invalid response was received from the upstream server"),
    ("mistral", "unavailable", 503, "upstream server is currently unavailable"),
    ("mistral", "overloaded", 503, "capacity exceeded"),
    ("mistral", "unauthorized", 401, '{"message":"Unauthorized","request_id":'),
]


@pytest.mark.parametrize(("provider", "kind", "status", "fragment"), ERROR_CASES)
async def test_error_faults(
    session: aiohttp.ClientSession, provider: str, kind: str, status: int, fragment: str
) -> None:
    async with Emulator(provider, faults=[Fault(kind)]) as emu:
        target, headers, body = provider_request(emu)
        got, response, raw = await post(session, target, body, headers)
        assert got == status and fragment in raw.decode()
        if provider == "anthropic":
            assert json.loads(raw)["request_id"] == response.headers["request-id"]
        if kind != "bad_gateway":
            json.loads(raw)
        stats = emu.stats()
        assert stats["faults_injected"] == {kind: 1} and stats["responses_by_status"] == {
            str(status): 1
        }


@pytest.mark.parametrize("provider", ["openai", "anthropic", "mistral"])
async def test_rate_limit_headers(session: aiohttp.ClientSession, provider: str) -> None:
    async with Emulator(provider) as emu:
        target, headers, body = provider_request(emu)
        emu.schedule("rate_limit", retry_after=2.5)
        _, response, _ = await post(session, target, body, headers)
        assert response.headers["retry-after"] == "3"
        if provider == "mistral":
            assert "retry-after-ms" not in response.headers
            assert response.headers["ratelimitbysize-remaining"] == "0"
        else:
            assert response.headers["retry-after-ms"] == "2500"
        if provider == "openai":
            assert response.headers["x-ratelimit-remaining-requests"] == "0"
            assert response.headers["x-ratelimit-reset-requests"] == "2.5s"
        if provider == "anthropic":
            assert response.headers["anthropic-ratelimit-requests-remaining"] == "0"
        emu.schedule("rate_limit", retry_after=None)
        _, response, _ = await post(session, target, body, headers)
        assert response.status == 429 and "retry-after" not in response.headers


async def test_gemini_retry_hint_is_in_the_body_only(session: aiohttp.ClientSession) -> None:
    async with Emulator("google") as emu:
        target, headers, body = provider_request(emu)
        emu.schedule("rate_limit", retry_after=0.5)
        emu.schedule("rate_limit", retry_after=None)
        _, response, raw = await post(session, target, body, headers)
        details = json.loads(raw)["error"]["details"]
        assert {
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "0.5s",
        } in details
        assert "retry-after" not in response.headers
        _, _, raw = await post(session, target, body, headers)
        assert "RetryInfo" not in raw.decode()


async def test_status_override(session: aiohttp.ClientSession) -> None:
    async with Emulator("openai", faults=[Fault("server_error", status=504)]) as emu:
        target, headers, body = provider_request(emu)
        assert (await post(session, target, body, headers))[0] == 504


async def test_hang_lasts_until_the_client_gives_up(session: aiohttp.ClientSession) -> None:
    async with Emulator("anthropic") as emu:
        target, headers, body = provider_request(emu)
        emu.schedule("hang")
        with pytest.raises(asyncio.TimeoutError):
            await session.post(
                target, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=0.3)
            )
        await settle(emu, lambda s: s["in_flight"] == 0)
        assert emu.stats()["responses_by_status"] == {}
        assert (await post(session, target, body, headers))[0] == 200


async def test_hang_is_released_when_the_emulator_stops(session: aiohttp.ClientSession) -> None:
    emu = Emulator("openai", faults=[Fault("hang")])
    await emu.start()
    target, headers, body = provider_request(emu)
    pending = asyncio.ensure_future(session.post(target, json=body, headers=headers))
    await settle(emu, lambda s: s["in_flight"] == 1)
    await asyncio.wait_for(emu.stop(), 5)
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(pending, 5)


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_closes_without_an_answer(session: aiohttp.ClientSession, stream: bool) -> None:
    async with Emulator("openai", faults=[Fault("reset")]) as emu:
        target, headers, body = provider_request(emu, stream)
        with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
            await post(session, target, body, headers)
        assert emu.stats()["responses_by_status"] == {}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed(session: aiohttp.ClientSession, provider: str) -> None:
    async with Emulator(provider) as emu:
        target, headers, body = provider_request(emu)
        emu.schedule("malformed", 2)
        status, _, raw = await post(session, target, body, headers)
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(raw)
        target, headers, body = provider_request(emu, stream=True)
        status, _, raw = await post(session, target, body, headers)
        assert status == 200
        bad = [
            line
            for line in raw.splitlines()
            if line.startswith(b"data: {") and not _is_json(line[6:])
        ]
        assert len(bad) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_cut(session: aiohttp.ClientSession, provider: str) -> None:
    async with Emulator(provider, reply_tokens=10) as emu:
        target, headers, body = provider_request(emu, stream=True)
        emu.schedule("stream_cut")
        received = bytearray()
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.post(target, json=body, headers=headers) as response:
                assert response.status == 200
                async for data in response.content.iter_any():
                    received += data
        assert received.count(b"data: ") >= 5
        assert (
            b"[DONE]" not in received
            and b"message_stop" not in received
            and b"finishReason" not in received
        )
        stats = emu.stats()
        assert stats["streams_started"] == 1 and stats["streams_completed"] == 0


async def test_stream_cut_on_a_non_stream_request(session: aiohttp.ClientSession) -> None:
    async with Emulator("mistral", faults=[Fault("stream_cut")]) as emu:
        target, headers, body = provider_request(emu)
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(session, target, body, headers)


STREAM_ERRORS = {
    "openai": b'data: {"error":{"message":"The server had an error while processing your request. '
    b'Sorry about that!","type":"server_error","param":null,"code":null}}\n\n',
    "anthropic": b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
    b'"message": "Overloaded"}}\n\n',
    "google": b'data: {"error": {"code": 500,',
    "mistral": b'data: {"object":"error","message":"Internal server error"',
}


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_error(session: aiohttp.ClientSession, provider: str) -> None:
    async with Emulator(provider, reply_tokens=10, faults=[Fault("stream_error")]) as emu:
        target, headers, body = provider_request(emu, stream=True)
        status, _, raw = await post(session, target, body, headers)
        assert status == 200 and STREAM_ERRORS[provider] in raw
        separator = b"\r\n\r\n" if provider == "google" else b"\n\n"
        last_event = raw[: -len(separator)].rsplit(separator, 1)[-1] + separator
        assert last_event.startswith(STREAM_ERRORS[provider])
        assert raw.count(b"data: ") >= 5 and b"[DONE]" not in raw
        target, headers, body = provider_request(emu)
        assert (await post(session, target, body, headers))[0] == 500


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("after", [0, 3])
async def test_stream_faults_strike_after_the_given_chunks(
    session: aiohttp.ClientSession, provider: str, after: int
) -> None:
    async with Emulator(provider, reply_tokens=10) as emu:
        target, headers, body = provider_request(emu, stream=True)
        emu.schedule(Fault("stream_error", after_chunks=after))
        status, _, raw = await post(session, target, body, headers)
        assert status == 200 and STREAM_ERRORS[provider] in raw
        before_error = raw.split(STREAM_ERRORS[provider])[0].decode()
        tokens = generate_text("Hello there", 0, 10)
        assert (tokens[0] in before_error) == (after > 0)
        assert (tokens[2] in before_error) == (after == 3)
        assert tokens[3] not in before_error


async def test_schedule_comes_before_probabilities(session: aiohttp.ClientSession) -> None:
    async with Emulator("openai", faults=[Fault("server_error")]) as emu:
        target, headers, body = provider_request(emu)
        emu.schedule("rate_limit", count=2)
        emu.schedule(Fault("overloaded"))
        statuses = [(await post(session, target, body, headers))[0] for _ in range(5)]
        assert statuses == [429, 429, 503, 500, 500]
        emu.set_faults([])
        assert (await post(session, target, body, headers))[0] == 200


async def test_invalid_requests_do_not_consume_faults(session: aiohttp.ClientSession) -> None:
    async with Emulator("openai", api_keys={"good"}) as emu:
        target, headers, body = provider_request(emu, key="good")
        emu.schedule("rate_limit")
        assert (await post(session, target, body, {"Authorization": "Bearer bad"}))[0] == 401
        assert (await post(session, target, {"model": "m"}, headers))[0] == 400
        assert (await post(session, target, body, headers))[0] == 429
        assert (await post(session, target, body, headers))[0] == 200


async def test_probabilistic_faults_are_seeded(session: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with Emulator("mistral", seed=11, faults=[Fault("server_error", 0.5)]) as emu:
            target, headers, body = provider_request(emu)
            runs.append([(await post(session, target, body, headers))[0] for _ in range(40)])
    assert runs[0] == runs[1]
    assert 8 <= runs[0].count(500) <= 32 and set(runs[0]) == {200, 500}


def test_fault_validation() -> None:
    assert len(FAULT_KINDS) == 13
    with pytest.raises(ValueError):
        Fault("explode")
    with pytest.raises(ValueError):
        Fault("rate_limit", probability=1.5)
    with pytest.raises(ValueError):
        Fault("server_error", status=42)
    assert Fault.from_dict({"kind": "hang", "probability": 0.25}) == Fault("hang", 0.25)
    assert Fault.from_dict({"kind": "stream_cut", "after_chunks": 0}).after_chunks == 0
    with pytest.raises(ValueError):
        Fault("stream_cut", after_chunks=-1)
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "hang", "colour": "red"})


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
