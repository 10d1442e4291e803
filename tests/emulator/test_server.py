"""The emulator as a server: counters, request log, latency, control API, instances."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault, generate_text, key_fingerprint
from tests.emulator.conftest import (
    PROVIDERS,
    anthropic_events,
    post,
    provider_request,
    settle,
    sse_data,
)

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "flyllm" / "emulator"


def test_the_emulator_imports_nothing_else_from_flyllm() -> None:
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text().splitlines():
            found = re.match(r"\s*(?:from|import)\s+(flyllm\S*)", line)
            if found:
                assert found.group(1).startswith("flyllm.emulator"), f"{path.name}: {line.strip()}"


def test_importing_the_package_does_not_load_the_server() -> None:
    code = (
        "import sys, flyllm.emulator as e; e.generate_text('x'); "
        "print('flyllm.emulator.server' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("provider", "suffix"), [("openai", "/v1"), ("anthropic", ""), ("gemini", ""), ("mistral", "")]
)
async def test_addresses(provider: str, suffix: str) -> None:
    emu = Emulator(provider)
    with pytest.raises(RuntimeError):
        _ = emu.port
    async with emu:
        assert emu.url == f"http://127.0.0.1:{emu.port}" and emu.port > 0
        assert emu.base_url == emu.url + suffix
    assert "Emulator(" in repr(emu)


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        Emulator("bedrock")


async def test_counters_per_route_key_model_and_status(session: aiohttp.ClientSession) -> None:
    async with Emulator("openai", api_keys={"a", "b"}) as emu:
        target, _, body = provider_request(emu)
        for key in ("a", "a", "b", "zzz"):
            await post(session, target, body, {"Authorization": f"Bearer {key}"})
        await post(session, target, body)
        await post(session, emu.url + "/v1/completions", body, {"Authorization": "Bearer a"})
        stats = emu.stats()
        assert stats["requests"] == 6
        assert stats["by_route"] == {"/v1/chat/completions": 5, "unknown": 1}
        assert stats["by_key"] == {
            key_fingerprint("a"): 3,
            key_fingerprint("b"): 1,
            key_fingerprint("zzz"): 1,
        }
        assert "zzz" not in json.dumps(stats)  # the rejected key is not kept
        assert stats["by_model"] == {"gpt-4o-mini": 3}
        assert stats["responses_by_status"] == {"200": 3, "401": 2, "404": 1}
        assert stats["in_flight"] == 0 and stats["max_in_flight"] == 1
        json.dumps(stats)


async def test_in_flight_and_max_in_flight_under_concurrency(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator("anthropic", latency_ms=150) as emu:
        target, headers, body = provider_request(emu)
        tasks = [asyncio.ensure_future(post(session, target, body, headers)) for _ in range(8)]
        await settle(emu, lambda s: s["in_flight"] == 8)
        await asyncio.gather(*tasks)
        stats = emu.stats()
        assert stats["in_flight"] == 0 and stats["max_in_flight"] == 8


async def test_open_connections_go_back_to_zero() -> None:
    async with Emulator("mistral") as emu:
        target, headers, body = provider_request(emu)
        async with aiohttp.ClientSession() as client:
            await asyncio.gather(*(post(client, target, body, headers) for _ in range(5)))
            assert emu.stats()["open_connections"] == 5
        await settle(emu, lambda s: s["open_connections"] == 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streams_started_completed_and_cancelled(
    session: aiohttp.ClientSession, provider: str
) -> None:
    async with Emulator(provider, chunk_delay_ms=20, reply_tokens=20) as emu:
        target, headers, body = provider_request(emu, stream=True)
        emu.set_latency(chunk_delay_ms=0)
        await post(session, target, body, headers)
        emu.set_latency(chunk_delay_ms=20)
        async with session.post(target, json=body, headers=headers) as response:
            await response.content.readline()
        await settle(emu, lambda s: s["streams_cancelled"] == 1 and s["in_flight"] == 0)
        stats = emu.stats()
        assert stats["streams_started"] == 2 and stats["streams_completed"] == 1


async def test_latency_and_chunk_delay(session: aiohttp.ClientSession) -> None:
    async with Emulator("openai", latency_ms=120, reply_tokens=6) as emu:
        target, headers, body = provider_request(emu)
        started = time.monotonic()
        await post(session, target, body, headers)
        assert time.monotonic() - started >= 0.12
        emu.set_latency(latency_ms=0, chunk_delay_ms=40)
        target, headers, body = provider_request(emu, stream=True)
        started = time.monotonic()
        async with session.post(target, json=body, headers=headers) as response:
            first = await response.content.readline()
            first_at = time.monotonic() - started
            await response.read()
        assert first.startswith(b"data: ") and first_at < 0.1
        assert time.monotonic() - started >= 0.04 * 7
        with pytest.raises(ValueError):
            emu.set_latency(latency_ms=-1)


async def test_jitter_is_bounded(session: aiohttp.ClientSession) -> None:
    async with Emulator("google", latency_ms=10, jitter_ms=60) as emu:
        target, headers, body = provider_request(emu)
        elapsed = []
        for _ in range(5):
            started = time.monotonic()
            await post(session, target, body, headers)
            elapsed.append(time.monotonic() - started)
        assert min(elapsed) >= 0.01 and max(elapsed) < 0.5 and max(elapsed) - min(elapsed) > 0.001


async def test_request_log_and_reset(session: aiohttp.ClientSession) -> None:
    async with Emulator("google") as emu:
        target, headers, body = provider_request(emu, key="secret-1")
        await post(session, target + "?foo=bar", body, {**headers, "X-Custom": "Yes"})
        (recorded,) = emu.requests
        assert recorded.path == "/v1/models/gemini-2.5-flash:generateContent"
        assert (
            recorded.headers["x-custom"] == "Yes"
            and recorded.headers["x-goog-api-key"] == "secret-1"
        )
        assert (
            recorded.query == {"foo": "bar"}
            and recorded.json == body
            and recorded.api_key == "secret-1"
        )
        emu.schedule("rate_limit", 5)
        emu.reset()
        assert (
            emu.requests == []
            and emu.stats()["requests"] == 0
            and emu.settings()["scheduled"] == []
        )
        await post(session, target, b"not json", headers)
        assert emu.requests[0].json is None
        for _ in range(3):
            await post(session, target, body, headers)
        assert len(emu.requests) == 4


async def test_control_api(session: aiohttp.ClientSession) -> None:
    async with Emulator("openai") as emu:
        target, headers, body = provider_request(emu)
        control = emu.url + "/_emulator/"
        faults = {
            "faults": [{"kind": "server_error", "probability": 1.0}],
            "latency_ms": 5,
            "chunk_delay_ms": 1,
        }
        async with session.post(control + "faults", json=faults) as response:
            settings = await response.json()
        assert settings["faults"] == [
            {
                "kind": "server_error",
                "probability": 1.0,
                "retry_after": 1.0,
                "status": None,
                "after_chunks": None,
            }
        ]
        assert (
            settings["latency_ms"] == 5
            and settings["chunk_delay_ms"] == 1
            and settings["jitter_ms"] == 0
        )
        async with session.post(
            control + "schedule", json={"kind": "rate_limit", "count": 2}
        ) as response:
            assert len((await response.json())["scheduled"]) == 2
        statuses = [(await post(session, target, body, headers))[0] for _ in range(3)]
        assert statuses == [429, 429, 500]
        async with session.get(control + "stats") as response:
            stats = await response.json()
        assert stats["requests"] == 3 and stats["faults_injected"] == {
            "rate_limit": 2,
            "server_error": 1,
        }
        async with session.get(control + "faults") as response:
            assert (await response.json())["faults"][0]["kind"] == "server_error"
        async with session.get(control + "info") as response:
            assert (await response.json())["base_url"] == emu.base_url
        async with session.post(control + "reset", json={}) as response:
            assert response.status == 200
        async with session.post(control + "faults", json={"faults": []}) as response:
            assert response.status == 200
        assert emu.stats()["requests"] == 0
        assert (await post(session, target, body, headers))[0] == 200


async def test_control_api_errors_and_not_counted(session: aiohttp.ClientSession) -> None:
    async with Emulator("anthropic") as emu:
        control = emu.url + "/_emulator/"
        for path, payload in (
            ("faults", {"faults": [{"kind": "boom"}]}),
            ("schedule", {"count": 1}),
            ("faults", {"x": 1}),
        ):
            async with session.post(control + path, json=payload) as response:
                assert response.status == 400 and "error" in await response.json()
        headers = {"Content-Type": "application/json"}
        async with session.post(control + "faults", data=b"{", headers=headers) as response:
            assert response.status == 400
        async with session.get(control + "nothing") as response:
            assert response.status == 404
        stats = emu.stats()
        assert (
            stats["requests"] == 0
            and stats["responses_by_status"] == {}
            and stats["max_in_flight"] == 0
        )


async def test_instances_are_independent(session: aiohttp.ClientSession) -> None:
    async with (
        Emulator("openai", faults=[Fault("unavailable")]) as sick,
        Emulator("openai") as healthy,
    ):
        assert sick.port != healthy.port
        for emu, expected in ((sick, 503), (healthy, 200)):
            target, headers, body = provider_request(emu)
            assert (await post(session, target, body, headers))[0] == expected
        assert sick.stats()["requests"] == healthy.stats()["requests"] == 1


async def test_same_prompt_same_reply_across_instances(session: aiohttp.ClientSession) -> None:
    replies = []
    for _ in range(2):
        async with Emulator("mistral", seed=3) as emu:
            target, headers, body = provider_request(emu, text="Which prompt is this?")
            replies.append(
                json.loads((await post(session, target, body, headers))[2])["choices"][0]["message"]
            )
    assert replies[0] == replies[1]


def test_public_names() -> None:
    import flyllm.emulator

    assert sorted(flyllm.emulator.__all__) == [
        "Emulator",
        "FAULT_KINDS",
        "Fault",
        "generate_text",
        "key_fingerprint",
    ]
    assert flyllm.emulator.Emulator is Emulator
    with pytest.raises(AttributeError):
        _ = flyllm.emulator.Nothing


def _text_and_tokens(provider: str, raw: bytes) -> tuple[str, int]:
    data = json.loads(raw)
    if provider == "anthropic":
        return data["content"][0]["text"], data["usage"]["output_tokens"]
    if provider == "google":
        return data["candidates"][0]["content"]["parts"][0]["text"], data["usageMetadata"][
            "candidatesTokenCount"
        ]
    return data["choices"][0]["message"]["content"], data["usage"]["completion_tokens"]


def _stream_text_and_tokens(provider: str, raw: bytes) -> tuple[str, int]:
    if provider == "google":
        chunks = sse_data(raw, b"\r\n\r\n")
        text = "".join(
            c["candidates"][0]["content"].get("parts", [{"text": ""}])[0]["text"] for c in chunks
        )
        return text, chunks[-1]["usageMetadata"]["candidatesTokenCount"]
    if provider == "anthropic":
        events = anthropic_events(raw)
        text = "".join(d["delta"]["text"] for name, d in events if name == "content_block_delta")
        return text, events[-2][1]["usage"]["output_tokens"]
    chunks = [c for c in sse_data(raw) if c != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    usage = [c["usage"] for c in chunks if c.get("usage")]
    return text, usage[-1]["completion_tokens"] if usage else -1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_and_non_stream_agree(session: aiohttp.ClientSession, provider: str) -> None:
    async with Emulator(provider, seed=21) as emu:
        target, headers, body = provider_request(emu, text="Tell me about rivers")
        text, tokens = _text_and_tokens(provider, (await post(session, target, body, headers))[2])
        assert text == " ".join(generate_text("Tell me about rivers", seed=21)) and tokens == len(
            text.split()
        )
        target, headers, body = provider_request(emu, stream=True, text="Tell me about rivers")
        if provider == "openai":
            body["stream_options"] = {"include_usage": True}
        assert _stream_text_and_tokens(
            provider, (await post(session, target, body, headers))[2]
        ) == (text, tokens)


async def test_large_request_bodies_are_accepted(session: aiohttp.ClientSession) -> None:
    async with Emulator("anthropic") as emu:
        prompt = "word " * 1_000_000
        target, headers, body = provider_request(emu, text=prompt)
        status, _, raw = await post(session, target, body, headers)
        assert status == 200 and json.loads(raw)["usage"]["input_tokens"] == 1_000_003
