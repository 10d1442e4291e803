"""Every failure of /v1/chat/completions as the openai SDK's own error class, with the right
status: bad requests, keys, unknown models, large bodies, a rate-limited or failing pool, the
deadline, and a failure after a stream has started. No provider key or credential in a
message."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiohttp
import openai
import pytest

from flyllm.emulator import Fault
from flyllm.server import GatewaySettings
from flyllm.server.keys import KeyRing, VirtualKey, hash_key
from tests.server.conftest import GatewayFactory, Served

HI: Any = [{"role": "user", "content": "hi"}]


def client(served: Served, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)


async def ask(served: Served, key: str = "unused", **options: Any) -> Any:
    async with client(served, key) as c:
        return await c.chat.completions.create(model="chat", messages=HI, **options)


async def test_keys_401_and_403(gateway: GatewayFactory) -> None:
    good, other = "fk-" + secrets.token_hex(8), "fk-" + secrets.token_hex(8)
    ring = KeyRing([VirtualKey(name="team", sha256=hash_key(good)),
                    VirtualKey(name="other", sha256=hash_key(other),
                               tasks=frozenset({"embed"}))])  # fmt: skip
    served = await gateway("openai", settings=GatewaySettings(keys=ring))
    assert (await ask(served, good)).choices[0].message.content
    with pytest.raises(openai.AuthenticationError) as unknown:
        await ask(served, "fk-" + secrets.token_hex(8))
    assert unknown.value.status_code == 401 and "invalid API key" in unknown.value.message
    with pytest.raises(openai.PermissionDeniedError) as denied:
        await ask(served, other)
    assert denied.value.status_code == 403 and denied.value.param == "model"
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="x", max_retries=0,
                                  default_headers={"Authorization": ""}) as c:  # fmt: skip
        with pytest.raises(openai.AuthenticationError) as missing:
            await c.chat.completions.create(model="chat", messages=HI)
    assert "missing API key" in missing.value.message


async def test_a_body_over_the_limit_is_413(gateway: GatewayFactory) -> None:
    served = await gateway("openai", settings=GatewaySettings(max_body_bytes=4096))
    with pytest.raises(openai.APIStatusError) as caught:
        await _big(served)
    assert caught.value.status_code == 413
    assert not served.emulators["openai"].requests


async def _big(served: Served) -> Any:
    async with client(served) as c:
        return await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x" * 10_000}]
        )


async def test_a_rate_limited_pool_is_429_with_retry_after(gateway: GatewayFactory) -> None:
    served = await gateway("openai", max_attempts=1)
    served.emulators["openai"].schedule("rate_limit", retry_after=7)
    async with client(served) as c:
        with pytest.raises(openai.RateLimitError) as caught:
            await c.chat.completions.create(model="chat", messages=HI)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert "rate_limit" in caught.value.message


async def test_failed_attempts_are_502_summarised_without_secrets(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("openai", max_attempts=2)
    password = "pw-" + secrets.token_hex(6)
    # A second instance whose URL holds credentials, on a port nothing listens on.
    served.manager.add_provider("vllm", "", "m", ["chat"],
                                base_url=f"http://user:{password}@127.0.0.1:9/v1")  # fmt: skip
    served.emulators["openai"].schedule("server_error", count=2)
    with pytest.raises(openai.InternalServerError) as caught:
        await ask(served)
    message = caught.value.message
    assert caught.value.status_code == 502
    assert "2 attempt(s) failed" in message and "HTTP 500" in message
    assert "vllm" in message and password not in message


async def test_an_overloaded_pool_is_503(gateway: GatewayFactory) -> None:
    served = await gateway("openai", max_attempts=1)
    served.emulators["openai"].schedule("overloaded")
    with pytest.raises(openai.InternalServerError) as caught:
        await ask(served)
    assert caught.value.status_code == 503


async def test_an_upstream_key_is_never_echoed(gateway: GatewayFactory) -> None:
    """The upstream's 401 echoes a masked key (its ends, as OpenAI's does); none of it may
    reach the gateway's caller, who is not the key's owner."""
    served = await gateway("openai", max_attempts=1)
    emu = served.emulators["openai"]
    key = "sk-" + secrets.token_hex(16)
    served.manager.remove_instance(0)
    served.manager.add_provider("openai", key, "m", ["chat"], base_url=emu.base_url)
    emu.schedule("unauthorized")
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(served)
    assert caught.value.status_code == 502
    assert "authentication" in caught.value.message
    assert key[-4:] not in caught.value.message and key[:6] not in caught.value.message


async def test_the_deadline_is_504_attempt_or_wait(gateway: GatewayFactory) -> None:
    served = await gateway("openai", deadline=0.5)
    served.manager.remove_instance(0)
    emu = served.emulators["openai"]
    served.manager.add_provider("openai", "k", "m", ["chat"], base_url=emu.base_url,
                                max_concurrent=1)  # fmt: skip
    emu.set_faults([Fault("hang")])
    # The first hangs upstream until the deadline; the second waits for the instance's only
    # slot until the deadline: both are the deadline passing.
    outcomes = await asyncio.gather(ask(served), ask(served), return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, openai.InternalServerError), outcome
        assert outcome.status_code == 504


async def test_a_failure_after_the_stream_started_is_an_error_event(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("openai")
    served.emulators["openai"].schedule(Fault("stream_cut", after_chunks=2))
    text = ""
    async with client(served) as c:
        stream = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "tell me a long story"}],
            stream=True,
        )  # fmt: skip
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text  # some output had reached the client before the error
    assert "attempt" in caught.value.message or "stream" in caught.value.message
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "api_error"


async def test_the_error_event_ends_the_stream_without_done(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    served.emulators["openai"].schedule(Fault("stream_cut", after_chunks=1))
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "a story"}]}
    url = served.url + "/v1/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        assert resp.status == 200
        events = [e for e in (await resp.text()).split("\n\n") if e]
    assert events[0].startswith('data: {"id":"chatcmpl-')
    last = json.loads(events[-1].removeprefix("data: "))
    assert set(last) == {"error"} and last["error"]["type"] == "api_error"
    assert not any("[DONE]" in e for e in events)
