"""The emulator's embeddings endpoint (OpenAI and Azure dialects), driven by the official
``openai`` SDK's ``embeddings.create``: floats and base64 (the SDK's default), ``dimensions``,
usage, and the API's 400s."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.conformance.helpers import KEY

MODEL = "text-embedding-3-small"
TEXTS = ["the river carries the stone", "a stone in the river", "the river carries the stone"]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="openai", api_keys={KEY}, context_window=50) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0
    ) as sdk:
        yield sdk


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


async def test_float_vectors_are_deterministic_unit_and_in_order(
    client: openai.AsyncOpenAI,
) -> None:
    answer = await client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    vectors = [d.embedding for d in answer.data]
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert [len(v) for v in vectors] == [1536] * 3
    assert vectors[0] == vectors[2] != vectors[1]  # same text, same vector
    assert all(abs(norm(v) - 1.0) < 1e-9 for v in vectors)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 5 + 5 + 5
    assert answer.model == MODEL
    again = await client.embeddings.create(model=MODEL, input=TEXTS[0], encoding_format="float")
    assert again.data[0].embedding == vectors[0]  # the same on every call
    other = await client.embeddings.create(
        model="text-embedding-3-large", input=TEXTS[0], encoding_format="float"
    )
    assert len(other.data[0].embedding) == 3072  # the model is part of the vector


async def test_base64_is_the_sdks_default_and_decodes_to_the_same_float32(
    client: openai.AsyncOpenAI, emu: Emulator
) -> None:
    answer = await client.embeddings.create(model=MODEL, input=TEXTS[:2])
    assert emu.requests[-1].json is not None
    assert emu.requests[-1].json["encoding_format"] == "base64"
    expected = vector(TEXTS[0], MODEL)
    got = answer.data[0].embedding
    assert len(got) == 1536
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-6  # float32


async def test_dimensions_shorten_and_renormalise(client: openai.AsyncOpenAI) -> None:
    full = await client.embeddings.create(model=MODEL, input="x y", encoding_format="float")
    short = await client.embeddings.create(
        model=MODEL, input="x y", dimensions=64, encoding_format="float"
    )
    values = short.data[0].embedding
    assert len(values) == 64 and abs(norm(values) - 1.0) < 1e-9
    head = full.data[0].embedding[:64]
    scale = norm(head)
    assert all(abs(a - b / scale) < 1e-9 for a, b in zip(values, head, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"input": ""}, "'$.input' is invalid"),
        ({"input": []}, "'$.input' is invalid"),
        ({"input": ["ok", ""]}, "'$.input' is invalid"),
        ({"input": ["w"] * 2049}, "maximum length 2048"),
        ({"input": ["ok", "word " * 51]}, "maximum context length is 50 tokens"),
        ({"input": "ok", "dimensions": 0}, "dimensions"),
        ({"input": "ok", "model": "text-embedding-ada-002", "dimensions": 8}, "does not support"),
    ],
)
async def test_what_the_api_refuses_is_a_400(
    client: openai.AsyncOpenAI, kwargs: dict[str, object], says: str
) -> None:
    params: dict[str, Any] = {"model": MODEL, "encoding_format": "float", **kwargs}
    with pytest.raises(openai.BadRequestError, match=says.replace("$", r"\$")):
        await client.embeddings.create(**params)


async def test_too_many_tokens_in_one_request() -> None:
    texts = ["w " * 150] * 2048  # 307,200 words: each input fits, the sum does not
    async with (
        Emulator(provider="openai") as emulator,
        openai.AsyncOpenAI(
            api_key=KEY, base_url=emulator.base_url, max_retries=0, timeout=5.0
        ) as sdk,
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float")
        fine = await sdk.embeddings.create(model=MODEL, input=texts[:1000])
    assert caught.value.code == "max_tokens_per_request"
    assert "max 300000 tokens per request" in caught.value.message
    assert fine.usage.total_tokens == 150_000


async def test_azure_deployment_embeddings() -> None:
    async with Emulator(provider="azure", api_keys={KEY}) as azure:
        async with openai.AsyncAzureOpenAI(
            api_key=KEY, azure_endpoint=azure.base_url, api_version="2024-10-21",
            max_retries=0, timeout=5.0,
        ) as sdk:  # fmt: skip
            answer = await sdk.embeddings.create(model="my-embedder", input=["a", "b"])
        assert azure.requests[-1].path == "/openai/deployments/my-embedder/embeddings"
    assert len(answer.data) == 2 and len(answer.data[0].embedding) == 1536
