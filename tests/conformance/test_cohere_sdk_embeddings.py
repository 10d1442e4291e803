"""The Cohere dialect's ``/v2/embed``, driven by the official ``cohere`` SDK's ``embed``
(``cohere.AsyncClientV2(base_url=emu.base_url)``): floats, base64, output_dimension, input
types, truncation and every refusal."""

from __future__ import annotations

import array
import base64
import math
from collections.abc import AsyncIterator
from typing import Any

import cohere
import pytest

from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.conformance.helpers import KEY

pytestmark = pytest.mark.filterwarnings("ignore:The `__fields__` attribute is deprecated")

V4 = "embed-v4.0"
V3 = "embed-english-v3.0"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("cohere", api_keys={KEY}, models={V4, V3, "command-a-03-2025"}) as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> cohere.AsyncClientV2:
    return cohere.AsyncClientV2(api_key=KEY, base_url=emu.base_url, max_retries=0, timeout=5.0)


def close(got: list[float], want: list[float]) -> bool:
    return len(got) == len(want) and max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-6


async def test_embed_floats(emu: Emulator, client: cohere.AsyncClientV2) -> None:
    texts = ["hello there", "goodbye"]
    got = await client.embed(model=V4, input_type="search_document", texts=texts,
                             embedding_types=["float"])  # fmt: skip
    floats = got.embeddings.float_
    assert floats is not None and len(floats) == 2
    assert all(close(v, vector(t, V4)) for v, t in zip(floats, texts, strict=True))
    assert len(floats[0]) == 1536 and math.isclose(sum(x * x for x in floats[0]), 1.0)
    assert got.meta is not None and got.meta.billed_units is not None
    assert got.meta.billed_units.input_tokens == 3 and got.texts == texts and got.id
    sent = emu.requests[-1]
    assert sent.path == "/v2/embed" and sent.headers["authorization"] == f"Bearer {KEY}"


async def test_base64_and_output_dimension(client: cohere.AsyncClientV2) -> None:
    got = await client.embed(model=V4, input_type="search_query", texts=["a b"],
                             embedding_types=["float", "base64"], output_dimension=256)  # fmt: skip
    assert got.embeddings.float_ is not None and got.embeddings.base64 is not None
    packed = array.array("f", base64.b64decode(got.embeddings.base64[0]))
    assert close(list(packed), got.embeddings.float_[0]) and len(packed) == 256
    assert close(got.embeddings.float_[0], vector("a b", V4, 256))


async def test_v3_models_are_1024_and_cut_long_texts_unless_told_not_to(
    client: cohere.AsyncClientV2,
) -> None:
    long = "word " * 600
    cut = await client.embed(model=V3, input_type="classification", texts=[long])
    assert cut.embeddings.float_ is not None and len(cut.embeddings.float_[0]) == 1024
    assert cut.meta is not None and cut.meta.billed_units is not None
    assert cut.meta.billed_units.input_tokens == 512  # truncate defaults to END
    with pytest.raises(cohere.BadRequestError) as caught:
        await client.embed(model=V3, input_type="search_document", texts=["ok", long],
                           truncate="NONE")  # fmt: skip
    assert "too many tokens: text at index 1" in str(caught.value.body)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"texts": ["a"] * 97}, cohere.BadRequestError, "at most 96 - received 97"),
        ({"texts": []}, cohere.BadRequestError, "non-empty list"),
        ({"texts": ["a", ""]}, cohere.BadRequestError, "empty strings"),
        ({"input_type": "passage"}, cohere.BadRequestError, "valid input_type"),
        ({"output_dimension": 300}, cohere.BadRequestError, "256, 512, 1024, 1536"),
        ({"model": V3, "output_dimension": 256}, cohere.BadRequestError, "embed-v4"),
        ({"embedding_types": ["float16"]}, cohere.BadRequestError, "embedding_types"),
        ({"truncate": "MIDDLE"}, cohere.BadRequestError, "truncate"),
        ({"model": "command-a-03-2025"}, cohere.BadRequestError, "not supported by the embed"),
        ({"model": "embed-nope"}, cohere.NotFoundError, "not found"),
    ],
)
async def test_refusals(
    client: cohere.AsyncClientV2, kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    call: dict[str, Any] = {"model": V4, "input_type": "search_document", "texts": ["a"]}
    with pytest.raises(error) as caught:
        await client.embed(**{**call, **kwargs})
    assert words in str(caught.value.body)  # type: ignore[attr-defined]


async def test_too_many_tokens_in_one_request(client: cohere.AsyncClientV2) -> None:
    texts = ["w " * 1400] * 96  # 134,400 words > 128,000
    with pytest.raises(cohere.BadRequestError) as caught:
        await client.embed(model=V4, input_type="search_document", texts=texts)
    assert "too many tokens: size limit exceeded by 6400 tokens" in str(caught.value.body)


async def test_an_unknown_key_is_refused(emu: Emulator) -> None:
    other = cohere.AsyncClientV2(api_key="other-key-0002", base_url=emu.base_url, max_retries=0)
    with pytest.raises(cohere.UnauthorizedError):
        await other.embed(model=V4, input_type="search_document", texts=["a"])
