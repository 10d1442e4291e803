"""The official openai SDK as a client of the gateway: the core path, streamed and not."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from flyllm import TaskDefinition
from flyllm.server import GatewaySettings, KeyRing, VirtualKey, hash_key, new_key
from tests.server.conftest import GatewayFactory


async def test_chat_completion_through_the_gateway(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused") as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hello there"}]
        )
        completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-flyllm-provider"] == "openai"
    assert raw.headers["x-flyllm-attempts"] == "1"
    assert float(raw.headers["x-flyllm-overhead-ms"]) >= 0


async def test_streamed_chat_completion_joins_to_the_plain_answer(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("openai")
    messages: Any = [{"role": "user", "content": "tell me more"}]
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused") as client:
        plain = await client.chat.completions.create(model="chat", messages=messages)
        stream = await client.chat.completions.create(
            model="chat", messages=messages, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
    assert text == plain.choices[0].message.content
    assert usage is not None and usage.completion_tokens > 0


async def test_unknown_model_is_the_sdks_not_found_error(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused") as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.code == "model_not_found"


async def test_models_lists_what_the_key_may_use(gateway: GatewayFactory) -> None:
    key = new_key()
    ring = KeyRing([VirtualKey(name="a", sha256=hash_key(key), tasks=frozenset({"chat"}))])
    settings = GatewaySettings(keys=ring, aliases={"gpt-4o-mini": "chat", "big": "other"})
    served = await gateway("openai", settings=settings)
    served.manager.define_task(TaskDefinition("other"))
    async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=key) as client:
        page = await client.models.list()
    assert sorted(m.id for m in page.data) == ["chat", "gpt-4o-mini"]
