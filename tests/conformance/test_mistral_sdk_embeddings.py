"""The emulator's Mistral embeddings endpoint, driven by the official ``mistralai`` SDK's
``embeddings.create``: deterministic unit vectors in order, mistral-embed's 1024 values,
codestral-embed's ``output_dimension``, usage, and what the API refuses (``SDKError`` for a
400, ``HTTPValidationError`` for a 422)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mistralai.client import Mistral, errors

from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector
from tests.conformance.helpers import KEY

TEXTS = ["the river carries the stone", "a stone in the river", "the river carries the stone"]


@pytest.fixture
async def client() -> AsyncIterator[Mistral]:
    async with Emulator(provider="mistral", api_keys={KEY}, context_window=50) as emu:
        with Mistral(api_key=KEY, server_url=emu.base_url, timeout_ms=5000) as sdk:
            async with sdk:
                yield sdk


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


def values(answer: Any) -> list[list[float]]:
    return [list(d.embedding) for d in answer.data]


async def test_mistral_embed_vectors_are_deterministic_unit_and_in_order(client: Mistral) -> None:
    answer = await client.embeddings.create_async(model="mistral-embed", inputs=TEXTS)
    got = values(answer)
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert [len(v) for v in got] == [1024] * 3
    assert got[0] == got[2] != got[1]
    assert got[0] == vector(TEXTS[0], "mistral-embed", 1024)
    assert all(abs(norm(v) - 1.0) < 1e-9 for v in got)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 15
    assert answer.model == "mistral-embed" and answer.id
    again = await client.embeddings.create_async(model="mistral-embed", inputs=TEXTS[0])
    assert values(again)[0] == got[0]


async def test_codestral_embed_output_dimension_is_a_renormalised_head(client: Mistral) -> None:
    default = await client.embeddings.create_async(model="codestral-embed", inputs="def f(): ...")
    full = await client.embeddings.create_async(
        model="codestral-embed", inputs="def f(): ...", output_dimension=3072
    )
    short = await client.embeddings.create_async(
        model="codestral-embed", inputs="def f(): ...", output_dimension=256
    )
    (d,), (f,), (s,) = values(default), values(full), values(short)
    assert (len(d), len(f), len(s)) == (1536, 3072, 256)
    assert all(abs(norm(v) - 1.0) < 1e-9 for v in (d, f, s))
    head = f[:256]
    assert all(abs(a - b / norm(head)) < 1e-9 for a, b in zip(s, head, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"inputs": []}, "Please provide at least one input element"),
        ({"inputs": ["ok", ""]}, "Please provide at least one input element"),
        ({"inputs": ["ok", "word " * 51]}, "too large for model with 50 maximum context"),
        ({"inputs": ["w " * 40] * 500}, "Too many tokens overall"),  # 20,000 > 16,384
        ({"inputs": "ok", "output_dimension": 8}, "output_dimension 8 is not supported"),
        ({"inputs": "ok", "model": "codestral-embed", "output_dimension": 4000}, "not supported"),
        ({"inputs": "ok", "model": "nope"}, "Invalid model: nope"),
    ],
)
async def test_what_the_api_refuses_is_a_400(
    client: Mistral, kwargs: dict[str, Any], says: str
) -> None:
    params: dict[str, Any] = {"model": "mistral-embed", **kwargs}
    if params["model"] == "nope":
        async with Emulator(provider="mistral", models=["mistral-embed"]) as strict:
            with Mistral(api_key=KEY, server_url=strict.base_url, timeout_ms=5000) as sdk:
                async with sdk:
                    with pytest.raises(errors.SDKError, match=says) as caught:
                        await sdk.embeddings.create_async(**params)
    else:
        with pytest.raises(errors.SDKError, match=says) as caught:
            await client.embeddings.create_async(**params)
    assert caught.value.status_code == 400


async def test_a_wrong_value_is_a_422(client: Mistral) -> None:
    with pytest.raises(errors.HTTPValidationError) as caught:
        await client.embeddings.create_async(
            model="codestral-embed", inputs="ok", output_dimension=0
        )
    assert '"loc":["body","output_dimension"]' in str(caught.value)
