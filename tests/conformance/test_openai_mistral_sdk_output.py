"""Structured output and images in the OpenAI, Azure and Mistral dialects of the emulator,
driven by the official SDKs: openai's ``chat.completions.parse`` (and its stream helper)
with a pydantic model, mistralai's ``chat.parse_async``, JSON mode, images sent the way each
SDK's docs show, and the ``bad_output`` fault making each SDK's structured helper fail."""

from __future__ import annotations

import base64
import json

import openai
import pydantic
import pytest
from mistralai.client import Mistral

from flyllm.emulator import Emulator
from tests.conformance.helpers import KEY

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
ASK = "Extract the invoice: total 42 EUR"


class Invoice(pydantic.BaseModel):
    """An invoice's fields."""

    total: int
    currency: str
    lines: list[str]


async def test_openai_parse_with_a_pydantic_model_and_bad_output() -> None:
    async with (
        Emulator("openai", api_keys={KEY}) as emu,
        openai.AsyncOpenAI(
            api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
        ) as client,
    ):
        messages: list[openai.types.chat.ChatCompletionMessageParam] = [
            {"role": "user", "content": ASK}
        ]
        done = await client.chat.completions.parse(
            model="gpt-4o", messages=messages, response_format=Invoice
        )
        parsed = done.choices[0].message.parsed
        assert isinstance(parsed, Invoice) and parsed.total == 42 and parsed.lines
        async with client.chat.completions.stream(
            model="gpt-4o", messages=messages, response_format=Invoice
        ) as stream:
            final = await stream.get_final_completion()
        assert final.choices[0].message.parsed == parsed
        emu.schedule("bad_output")
        with pytest.raises(pydantic.ValidationError):
            await client.chat.completions.parse(
                model="gpt-4o", messages=messages, response_format=Invoice
            )
        assert emu.stats()["faults_injected"] == {"bad_output": 1}


async def test_openai_json_mode_and_images_as_the_docs_show() -> None:
    async with (
        Emulator("openai", api_keys={KEY}) as emu,
        openai.AsyncOpenAI(
            api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
        ) as client,
    ):
        done = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "Give me a fact as JSON"}],
            response_format={"type": "json_object"},
        )
        assert isinstance(json.loads(done.choices[0].message.content or ""), dict)
        with pytest.raises(openai.BadRequestError, match="the word 'json'"):
            await client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "Give me a fact"}],
                response_format={"type": "json_object"},
            )
        seen = await client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these images?"},
                        {"type": "image_url", "image_url": {"url": DATA_URI, "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpeg"}},
                    ],
                }
            ],
        )
        text = seen.choices[0].message.content or ""
        assert text.startswith("[2 images: image/png, image/jpeg] ")


async def test_azure_parse_with_a_pydantic_model() -> None:
    async with (
        Emulator("azure", api_keys={KEY}) as emu,
        openai.AsyncAzureOpenAI(
            api_key=KEY, azure_endpoint=emu.base_url, api_version="2024-10-21", max_retries=0
        ) as client,
    ):
        done = await client.chat.completions.parse(
            model="gpt-4o", messages=[{"role": "user", "content": ASK}], response_format=Invoice
        )
        assert isinstance(done.choices[0].message.parsed, Invoice)


async def test_mistral_parse_json_mode_images_and_bad_output() -> None:
    async with Emulator("mistral", api_keys={KEY}) as emu:
        with Mistral(api_key=KEY, server_url=emu.base_url, timeout_ms=5000) as sdk:
            async with sdk:
                messages = [{"role": "user", "content": ASK}]
                done = await sdk.chat.parse_async(
                    response_format=Invoice, model="pixtral-12b", messages=messages
                )
                parsed = done.choices[0].message.parsed
                assert isinstance(parsed, Invoice) and parsed.total == 42
                plain = await sdk.chat.complete_async(
                    model="pixtral-12b",
                    messages=messages,
                    response_format={"type": "json_object"},
                )
                content = plain.choices[0].message.content
                assert isinstance(json.loads(str(content)), dict)
                seen = await sdk.chat.complete_async(
                    model="pixtral-12b",
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "What's in this image?"},
                                {"type": "image_url", "image_url": DATA_URI},
                            ],
                        }
                    ],
                )
                text = str(seen.choices[0].message.content)
                assert text.startswith("[1 image: image/png] ")
                emu.schedule("bad_output")
                with pytest.raises(pydantic.ValidationError):
                    await sdk.chat.parse_async(
                        response_format=Invoice, model="pixtral-12b", messages=messages
                    )
