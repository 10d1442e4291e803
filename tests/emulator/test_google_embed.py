"""Gemini's embeddings methods on the wire: ``:embedContent`` (which the SDK does not call for
the Gemini API) and what ``:batchEmbedContents`` refuses besides the SDK-driven cases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.emulator.conftest import post

KEY = "AIza-good-embed"
AUTH = {"x-goog-api-key": KEY}
MODEL = "gemini-embedding-001"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("google", api_keys={KEY}) as instance:
        yield instance


def url(emu: Emulator, method: str = "batchEmbedContents", model: str = MODEL) -> str:
    return f"{emu.base_url}/v1beta/models/{model}:{method}"


def entry(text: str = "a b", **extra: Any) -> dict[str, Any]:
    return {"model": f"models/{MODEL}", "content": {"parts": [{"text": text}]}, **extra}


async def test_embed_content_answers_one_embedding(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    body = {"content": {"parts": [{"text": "a b"}]}, "taskType": "RETRIEVAL_DOCUMENT"}
    status, response, raw = await post(session, url(emu, "embedContent"), body, AUTH)
    assert status == 200 and response.content_type == "application/json"
    answer = json.loads(raw)
    assert answer["embedding"]["values"] == pytest.approx(vector("a b", MODEL))
    assert answer["usageMetadata"]["promptTokenCount"] == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"requests": [entry(), entry(model="models/other")]}, "requests[1].model"),
        ({"requests": [entry(colour="red")]}, "Unknown name \"colour\" at 'requests[0]'"),
        ({"requests": [entry()], "extra": 1}, 'Unknown name "extra"'),
        ({"requests": []}, "requests is not specified"),
        ({"requests": [entry("")]}, "content.parts: contents is not specified"),
        ({"requests": [{"model": f"models/{MODEL}"}]}, "contents is not specified"),
        ({"requests": ["text"]}, "expected an EmbedContentRequest"),
    ],
)
async def test_batch_refusals_are_invalid_argument(
    emu: Emulator, session: aiohttp.ClientSession, body: Any, says: str
) -> None:
    status, _, raw = await post(session, url(emu), body, AUTH)
    error = json.loads(raw)["error"]
    assert (status, error["status"]) == (400, "INVALID_ARGUMENT")
    assert says in error["message"]
