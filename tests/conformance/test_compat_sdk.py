"""The OpenAI-compatible service dialects (Groq, Perplexity, vLLM...), driven by the official
``openai`` SDK the way those services tell their users to: ``AsyncOpenAI(base_url=...)``."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from flyllm.emulator import Emulator, Fault
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, expected_text

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]


def usage_of(chunk: Any) -> Any:
    """Usage wherever the service put it: top level, or Groq's ``x_groq``."""
    extra = chunk.model_extra or {}
    return chunk.usage or (extra.get("x_groq") or {}).get("usage")


@pytest.mark.parametrize(
    "name", ["groq", "together", "perplexity", "deepseek", "openrouter", "fireworks", "vllm"]
)
async def test_chat_and_stream_with_the_openai_sdk(name: str) -> None:
    async with (
        Emulator(name, api_keys={KEY}, reply_tokens=REPLY_TOKENS) as emu,
        openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as sdk,
    ):
        completion = await sdk.chat.completions.create(model="m", messages=MESSAGES)
        assert completion.choices[0].message.content == expected_text()
        asks = name in ("deepseek", "vllm")  # the services that send usage only when asked
        stream = await sdk.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True} if asks else openai.omit,
        )
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == expected_text()
        usages = [u for u in map(usage_of, chunks) if u]
        last = usages[-1]
        completion_tokens = (
            last["completion_tokens"] if isinstance(last, dict) else last.completion_tokens
        )
        assert completion_tokens == REPLY_TOKENS


async def test_errors_become_sdk_exceptions() -> None:
    async with (
        Emulator("groq", api_keys={KEY}) as emu,
        openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as sdk,
    ):
        emu.schedule(Fault("rate_limit"))
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(openai.BadRequestError):
            await sdk.chat.completions.create(model="m", messages=MESSAGES, logprobs=True)
    async with (
        Emulator("openrouter", api_keys={KEY}, faults=[Fault("quota")]) as emu,
        openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as sdk,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="m", messages=MESSAGES)
        assert caught.value.status_code == 402
