"""Failures on ``POST /v1/messages`` as the anthropic SDK sees them: Anthropic's error body,
the SDK's own exception class for each status, the ``request-id`` header, and an error after
the stream started as Anthropic's ``error`` event."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam

from flyllm.emulator import Fault
from flyllm.server import GatewayError, GatewaySettings, KeyRing, VirtualKey, hash_key
from tests.server.conftest import GatewayFactory, Served

HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]


@asynccontextmanager
async def sdk(served: Served, key: str = "unused") -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=served.url, api_key=key, max_retries=0, timeout=10.0
    ) as client:
        yield client


def _error(caught: pytest.ExceptionInfo[anthropic.APIStatusError]) -> dict[str, Any]:
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert caught.value.request_id  # the request-id header, as the SDK reads it
    error: dict[str, Any] = body["error"]
    return error


async def test_a_server_tool_is_a_400_naming_it(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    async with sdk(served) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.messages.create(
                model="chat", max_tokens=50, messages=HELLO,
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
            )  # fmt: skip
    error = _error(caught)
    assert error["type"] == "invalid_request_error"
    assert "web_search_20250305" in error["message"] and "tools[0]" in error["message"]
    assert served.emulators["openai"].stats()["requests"] == 0


async def test_unknown_model_is_not_found(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    async with sdk(served) as client:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await client.messages.create(model="nope", max_tokens=50, messages=HELLO)
    assert _error(caught)["type"] == "not_found_error"


async def test_keys_unknown_is_401_and_other_task_is_403(gateway: GatewayFactory) -> None:
    key = "fk-test-" + secrets.token_hex(8)  # built at run time: no key in the source
    ring = KeyRing([VirtualKey(name="narrow", sha256=hash_key(key), tasks=frozenset({"other"}))])
    served = await gateway("openai", settings=GatewaySettings(keys=ring))
    async with sdk(served, "fk-wrong-" + secrets.token_hex(8)) as client:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await client.messages.create(model="chat", max_tokens=50, messages=HELLO)
    async with sdk(served, key) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await client.messages.create(model="chat", max_tokens=50, messages=HELLO)
    assert _error(denied)["type"] == "authentication_error"
    assert _error(refused)["type"] == "permission_error"
    assert key not in str(denied.value) + str(refused.value)


async def test_a_rate_limit_is_429_with_retry_after(gateway: GatewayFactory) -> None:
    served = await gateway("openai")

    async def over_limit(request: object) -> object:
        # What a key's limit says (the key ledger raises it before the manager is called).
        raise GatewayError(429, "rate_limit", "this key is over its rpm", retry_after=2.0)

    served.manager.generate = over_limit  # type: ignore[method-assign,assignment]
    async with sdk(served) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model="chat", max_tokens=50, messages=HELLO)
    assert _error(caught)["type"] == "rate_limit_error"
    assert caught.value.response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("fault", "status", "kind", "sdk_error"),
    [
        ("server_error", 502, "api_error", anthropic.InternalServerError),
        ("overloaded", 503, "overloaded_error", anthropic.ServiceUnavailableError),
    ],
)
async def test_every_attempt_failing_is_502_or_503(
    gateway: GatewayFactory, fault: str, status: int, kind: str, sdk_error: type[Exception]
) -> None:
    served = await gateway("openai", max_attempts=1)
    served.emulators["openai"].schedule(fault, 1, retry_after=None)
    async with sdk(served) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(model="chat", max_tokens=50, messages=HELLO)
    assert isinstance(caught.value, sdk_error) and caught.value.status_code == status
    error = _error(caught)
    assert error["type"] == kind and "1 attempt(s) failed: 1. openai" in error["message"]


async def test_a_failure_mid_stream_is_an_error_event(gateway: GatewayFactory) -> None:
    served = await gateway("anthropic", max_attempts=1)
    served.emulators["anthropic"].schedule(Fault("stream_error", after_chunks=2))
    texts: list[str] = []
    async with sdk(served) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(
                model="chat", max_tokens=200, messages=HELLO
            ) as stream:
                async for text in stream.text_stream:
                    texts.append(text)
    assert len(texts) == 2  # the text before the failure reached the client
    assert caught.value.status_code == 200  # the stream had started: only an event can say it
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "api_error" and "overloaded" in body["error"]["message"]


async def test_a_body_over_the_limit_is_413(gateway: GatewayFactory) -> None:
    served = await gateway("openai", settings=GatewaySettings(max_body_bytes=2048))
    big: list[MessageParam] = [{"role": "user", "content": "x" * 4096}]
    async with sdk(served) as client:
        with pytest.raises(anthropic.ContentTooLargeError) as caught:
            await client.messages.create(model="chat", max_tokens=50, messages=big)
    assert _error(caught)["type"] == "request_too_large"


async def test_an_upstream_timeout_is_504(gateway: GatewayFactory) -> None:
    served = await gateway("openai", max_attempts=1, read_timeout=0.3)
    served.emulators["openai"].schedule("hang")
    async with sdk(served) as client:
        with pytest.raises(anthropic.GatewayTimeoutError) as caught:
            await client.messages.create(model="chat", max_tokens=50, messages=HELLO)
    assert _error(caught)["type"] == "timeout_error"
