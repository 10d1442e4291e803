"""The emulated models endpoints, driven by each official SDK's own list call: what the SDK
hands back (ids, typed fields, its auto-pagination, its exception for a wrong key) is what it
would hand back from the real API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import anthropic
import cohere
import ollama
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from flyllm.emulator import Emulator
from flyllm.emulator.catalog import DEFAULTS, PAGE_SIZE
from tests.conformance.helpers import KEY

pytestmark = [
    # google-genai subclasses aiohttp.ClientSession, which aiohttp frowns upon; not ours to fix.
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
    # cohere reads pydantic's deprecated ``__fields__`` when it parses unions; not ours either.
    pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated"),
]
WRONG = "wrong-key-0000"


def ids(provider: str) -> list[str]:
    return [m.id for m in DEFAULTS[provider]]


@pytest.fixture
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    async with Emulator(request.param, api_keys={KEY}) as emulator:
        yield emulator


def pages(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.method == "GET")


@pytest.mark.parametrize("emu", ["openai"], indirect=True)
async def test_openai_models_list(emu: Emulator) -> None:
    async with openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as client:
        models = [m async for m in client.models.list()]
        assert [m.id for m in models] == ids("openai")
        assert all(m.object == "model" and m.owned_by == "system" for m in models)
        assert models[0].created == 1_744_316_542
    async with openai.AsyncOpenAI(api_key=WRONG, base_url=emu.base_url, max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.models.list()
    assert caught.value.code == "invalid_api_key"


@pytest.mark.parametrize("emu", ["azure"], indirect=True)
async def test_azure_models_list_both_surfaces(emu: Emulator) -> None:
    async with openai.AsyncAzureOpenAI(
        api_key=KEY, azure_endpoint=emu.base_url, api_version="2024-10-21", max_retries=0
    ) as client:
        dated = [m async for m in client.models.list()]
    assert [m.id for m in dated] == ids("azure")
    assert emu.requests[-1].path == "/openai/models"
    assert emu.requests[-1].query["api-version"] == "2024-10-21"
    extra: dict[str, Any] = dated[0].model_extra or {}
    assert extra["capabilities"]["chat_completion"] is True
    v1_url = emu.base_url + "/openai/v1"
    async with openai.AsyncOpenAI(api_key=KEY, base_url=v1_url, max_retries=0) as client:
        v1 = [m async for m in client.models.list()]
    assert [m.id for m in v1] == ids("azure") and emu.requests[-1].path == "/openai/v1/models"
    async with openai.AsyncAzureOpenAI(
        api_key=WRONG, azure_endpoint=emu.base_url, api_version="2024-10-21", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()


@pytest.mark.parametrize("emu", ["groq", "openrouter", "vllm", "deepseek"], indirect=True)
async def test_compatible_services_with_the_openai_sdk(emu: Emulator) -> None:
    async with openai.AsyncOpenAI(api_key=KEY, base_url=emu.base_url, max_retries=0) as client:
        models = [m async for m in client.models.list()]
    assert [m.id for m in models] == ids(emu.provider)
    assert emu.requests[-1].path.endswith("/models")


@pytest.mark.parametrize("emu", ["anthropic"], indirect=True)
async def test_anthropic_models_list_walks_every_page(emu: Emulator) -> None:
    async with anthropic.AsyncAnthropic(
        api_key=KEY, base_url=emu.base_url, max_retries=0
    ) as client:
        models = [m async for m in client.models.list(limit=50)]
        first_page = await client.models.list()
    assert [m.id for m in models] == ids("anthropic")
    assert pages(emu) == 3 + 1  # five models, two per page; then one first page
    opus = models[0]
    assert opus.display_name == "Claude Opus 4.6" and opus.type == "model"
    assert opus.created_at == datetime(2026, 2, 4, tzinfo=timezone.utc)
    assert (opus.max_input_tokens, opus.max_tokens, opus.lifecycle) == (200000, 128000, "active")
    assert len(first_page.data) == PAGE_SIZE and first_page.has_more
    assert first_page.last_id == ids("anthropic")[1]
    async with anthropic.AsyncAnthropic(api_key=WRONG, base_url=emu.base_url, max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            await bad.models.list()


@pytest.mark.parametrize("emu", ["google"], indirect=True)
async def test_gemini_models_list_walks_every_page(emu: Emulator) -> None:
    client = genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(base_url=emu.base_url))
    try:
        pager = await client.aio.models.list(config={"page_size": 50})
        models = [m async for m in pager]
        assert [m.name for m in models] == [f"models/{i}" for i in ids("google")]
        assert emu.requests[0].path == "/v1/models"  # google-genai 3.x calls v1
        assert pages(emu) == 3
        flash = models[1]
        assert flash.display_name == "Gemini 2.5 Flash"
        assert (flash.input_token_limit, flash.output_token_limit) == (1048576, 65536)
        assert flash.supported_actions is not None and "generateContent" in flash.supported_actions
        assert models[-1].supported_actions == ["embedContent"]
    finally:
        await client.aio.aclose()
        client.close()
    bad = genai.Client(api_key=WRONG, http_options=genai_types.HttpOptions(base_url=emu.base_url))
    try:
        with pytest.raises(genai_errors.ClientError) as caught:
            await bad.aio.models.list()
        assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    finally:
        await bad.aio.aclose()
        bad.close()


@pytest.mark.parametrize("emu", ["mistral"], indirect=True)
async def test_mistral_models_list(emu: Emulator) -> None:
    async with Mistral(api_key=KEY, server_url=emu.base_url) as client:
        listed = await client.models.list_async()
        assert listed.data is not None
        cards = {card.id: card for card in listed.data}
        assert list(cards) == ids("mistral")
        large = cards["mistral-large-latest"]
        assert large.type == "base" and large.max_context_length == 131072
        assert large.capabilities.completion_chat is True
        assert cards["mistral-embed"].capabilities.completion_chat is False
    async with Mistral(api_key=WRONG, server_url=emu.base_url) as bad:
        with pytest.raises(mistral_errors.SDKError) as caught:
            await bad.models.list_async()
    assert caught.value.status_code == 401


@pytest.mark.parametrize("emu", ["cohere"], indirect=True)
async def test_cohere_models_list_pages_by_token(emu: Emulator) -> None:
    client = cohere.AsyncClientV2(api_key=KEY, base_url=emu.base_url, timeout=5.0)
    names: list[str] = []
    token: str | None = None
    while True:
        page = await client.models.list(page_size=1000, page_token=token)
        names += [m.name or "" for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert names == ids("cohere") and pages(emu) == 3
    chat = await client.models.list(endpoint="chat")
    assert all("chat" in (m.endpoints or []) for m in chat.models)
    assert chat.models[0].context_length == 256000
    bad = cohere.AsyncClientV2(api_key=WRONG, base_url=emu.base_url, timeout=5.0)
    with pytest.raises(cohere.UnauthorizedError):
        await bad.models.list()


@pytest.mark.parametrize("emu", ["ollama"], indirect=True)
async def test_ollama_list(emu: Emulator) -> None:
    client = ollama.AsyncClient(host=emu.base_url, headers={"Authorization": f"Bearer {KEY}"})
    listed = await client.list()
    assert [m.model for m in listed.models] == ids("ollama")
    first = listed.models[0]
    assert first.modified_at is not None and first.modified_at.year == 2024
    assert first.size is not None and first.size > 0 and first.digest
    assert first.details is not None and first.details.format == "gguf"
    bad = ollama.AsyncClient(host=emu.base_url, headers={"Authorization": f"Bearer {WRONG}"})
    with pytest.raises(ollama.ResponseError) as caught:
        await bad.list()
    assert caught.value.status_code == 401
