"""The Azure dialect of the emulator, driven by the official ``openai`` SDK's AsyncAzureOpenAI
(the deployments surface) and its plain AsyncOpenAI pointed at ``/openai/v1`` (the v1 surface).

``azure_endpoint=emu.base_url`` is all the SDK needs: it builds
``/openai/deployments/{model}/chat/completions?api-version=...`` and sends ``api-key``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from flyllm.emulator import Emulator, Fault
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, SYSTEM, expected_text

DEPLOYMENT = "gpt-4o-prod"
VERSION = "2024-10-21"
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": PROMPT},
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        "azure", api_keys={KEY}, models={DEPLOYMENT}, reply_tokens=REPLY_TOKENS
    ) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    async with openai.AsyncAzureOpenAI(
        api_key=KEY, azure_endpoint=emu.base_url, api_version=VERSION, max_retries=0, timeout=5.0
    ) as sdk:
        yield sdk


async def test_non_stream_on_the_deployments_surface(
    emu: Emulator, client: openai.AsyncAzureOpenAI
) -> None:
    completion = await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    assert completion.choices[0].message.content == expected_text()
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == REPLY_TOKENS
    sent = emu.requests[-1]
    assert sent.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert sent.query["api-version"] == VERSION and sent.headers["api-key"] == KEY
    filters = completion.model_extra or {}
    assert filters["prompt_filter_results"][0]["prompt_index"] == 0


async def test_stream_with_the_opening_filter_chunk(client: openai.AsyncAzureOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=DEPLOYMENT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices == [] and chunks[0].model == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_text()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == REPLY_TOKENS


async def test_v1_surface_with_the_plain_client(emu: Emulator) -> None:
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url + "/openai/v1", max_retries=0
    ) as sdk:
        completion = await sdk.chat.completions.create(
            model=DEPLOYMENT, messages=MESSAGES, max_completion_tokens=5
        )
    assert completion.choices[0].message.content == expected_text(max_tokens=5)
    assert emu.requests[-1].path == "/openai/v1/chat/completions"


async def test_prompt_filter_is_a_bad_request_with_innererror(
    client: openai.AsyncAzureOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=DEPLOYMENT, messages=[{"role": "user", "content": "[[refusal]] harm"}]
        )
    assert caught.value.code == "content_filter"
    body = caught.value.body
    assert isinstance(body, dict) and body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ("rate_limit", openai.RateLimitError),
        ("server_error", openai.InternalServerError),
        ("unauthorized", openai.AuthenticationError),
    ],
)
async def test_faults_become_sdk_exceptions(
    emu: Emulator, client: openai.AsyncAzureOpenAI, fault: str, cls: type[openai.APIStatusError]
) -> None:
    emu.schedule(Fault(fault))
    with pytest.raises(cls):
        await client.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)


async def test_unknown_deployment_and_wrong_key(emu: Emulator) -> None:
    async with openai.AsyncAzureOpenAI(
        api_key="wrong", azure_endpoint=emu.base_url, api_version=VERSION, max_retries=0
    ) as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model=DEPLOYMENT, messages=MESSAGES)
    async with openai.AsyncAzureOpenAI(
        api_key=KEY, azure_endpoint=emu.base_url, api_version=VERSION, max_retries=0
    ) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.chat.completions.create(model="missing", messages=MESSAGES)
    assert caught.value.code == "DeploymentNotFound"
