"""The emulator's Gemini embeddings, driven by the official ``google-genai`` SDK's
``models.embed_content`` (which calls ``:batchEmbedContents``): vectors, ``task_type``,
``output_dimensionality`` (normalised only at full size), usage, and the API's 400s."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest
from google.genai import errors, types

from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.conformance.helpers import KEY
from tests.conformance.test_google_sdk import gemini

MODEL = "gemini-embedding-001"
TEXTS = ["the river carries the stone", "a stone in the river", "the river carries the stone"]

pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="google", api_keys={KEY}, context_window=50) as emulator:
        yield emulator


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def values(answer: types.EmbedContentResponse) -> list[list[float]]:
    assert answer.embeddings is not None
    return [e.values or [] for e in answer.embeddings]


async def test_vectors_are_deterministic_full_size_unit_and_in_order(emu: Emulator) -> None:
    async with gemini(emu) as client:
        answer = await client.models.embed_content(model=MODEL, contents=TEXTS)
        again = await client.models.embed_content(model=MODEL, contents=TEXTS[0])
        old = await client.models.embed_content(model="text-embedding-004", contents=TEXTS[0])
    vectors = values(answer)
    assert [len(v) for v in vectors] == [3072] * 3
    assert vectors[0] == vectors[2] != vectors[1] and values(again)[0] == vectors[0]
    assert all(abs(norm(v) - 1.0) < 1e-9 for v in vectors)
    assert vectors[1] == pytest.approx(vector(TEXTS[1], MODEL))
    assert len(values(old)[0]) == 768
    sent = emu.requests[0]
    assert sent.path == f"/v1/models/{MODEL}:batchEmbedContents"
    assert sent.json is not None and len(sent.json["requests"]) == 3
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.prompt_token_count == 15


async def test_task_type_and_shortened_vectors_left_unnormalised(emu: Emulator) -> None:
    config = types.EmbedContentConfig(task_type="RETRIEVAL_QUERY", output_dimensionality=64)
    async with gemini(emu, api_version="v1beta") as client:
        answer = await client.models.embed_content(model=MODEL, contents="x y", config=config)
    short = values(answer)[0]
    assert len(short) == 64 and short == pytest.approx(vector("x y", MODEL)[:64])
    assert abs(norm(short) - 1.0) > 1e-3  # Gemini normalises only the full size
    entry = emu.requests[-1].json["requests"][0]  # type: ignore[index]
    assert emu.requests[-1].path.startswith("/v1beta/")
    assert (entry["taskType"], entry["outputDimensionality"]) == ("RETRIEVAL_QUERY", 64)


@pytest.mark.parametrize(
    ("contents", "config", "says"),
    [
        (["ok", "word " * 51], None, r"input token count \(51\) exceeds the maximum"),
        (["w"] * 101, None, "at most 100 requests can be in one batch"),
        ("ok", {"task_type": "GUESSING"}, "task_type"),
        ("ok", {"output_dimensionality": 4096}, "at most 3072"),
        ("ok", {"output_dimensionality": 0}, "output_dimensionality"),
    ],
)
async def test_what_the_api_refuses_is_a_400(
    emu: Emulator, contents: object, config: dict[str, object] | None, says: str
) -> None:
    async with gemini(emu) as client:
        with pytest.raises(errors.ClientError, match=says) as caught:
            await client.models.embed_content(
                model=MODEL,
                contents=contents,
                config=config,  # type: ignore[arg-type]
            )
    assert caught.value.code == 400


async def test_a_wrong_key_and_an_unknown_model() -> None:
    async with Emulator(provider="google", api_keys={KEY}, models=["gemini-embedding-001"]) as emu:
        async with gemini(emu, key="wrong-key-000000") as client:
            with pytest.raises(errors.ClientError, match="API key not valid"):
                await client.models.embed_content(model=MODEL, contents="a")
        async with gemini(emu) as client:
            with pytest.raises(errors.ClientError, match="batchEmbedContents") as missing:
                await client.models.embed_content(model="text-embedding-004", contents="a")
    assert missing.value.code == 404
