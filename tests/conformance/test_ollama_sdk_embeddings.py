"""The Ollama dialect's ``POST /api/embed`` driven by the official ``ollama`` SDK's ``embed``:
vectors from the shared generator, dimensions, truncate, usage and every refusal."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import ollama
import pytest

from flyllm.emulator import Emulator
from flyllm.emulator.embeddings import vector

MODEL = "nomic-embed-text"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("ollama", models={MODEL, "mxbai-embed-large"}) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=emu.base_url, timeout=5.0)


def norm(values: object) -> float:
    return math.sqrt(sum(v * v for v in values))  # type: ignore[attr-defined]


async def test_embed_a_list_in_order_with_usage(emu: Emulator, client: ollama.AsyncClient) -> None:
    texts = ["the sky is blue", "grass is green", "the sky is blue"]
    got = await client.embed(model=MODEL, input=texts)
    assert got.model == MODEL and len(got.embeddings) == 3
    assert all(len(v) == 768 and abs(norm(v) - 1) < 1e-6 for v in got.embeddings)
    assert list(got.embeddings[0]) == vector(texts[0], MODEL, 768)
    assert got.embeddings[0] == got.embeddings[2] != got.embeddings[1]
    assert got.prompt_eval_count == 11  # words embedded
    sent = emu.requests[-1]
    assert sent.path == "/api/embed" and sent.json == {"model": MODEL, "input": texts}


async def test_one_text_and_sizes_by_model(client: ollama.AsyncClient) -> None:
    one = await client.embed(model=MODEL, input="just one")
    assert len(one.embeddings) == 1 and list(one.embeddings[0]) == vector("just one", MODEL, 768)
    large = await client.embed(model="mxbai-embed-large", input="x")
    assert len(large.embeddings[0]) == 1024


async def test_dimensions_keep_the_head_normalised_again(client: ollama.AsyncClient) -> None:
    full = (await client.embed(model=MODEL, input="matryoshka")).embeddings[0]
    short = (await client.embed(model=MODEL, input="matryoshka", dimensions=64)).embeddings[0]
    assert len(short) == 64 and abs(norm(short) - 1) < 1e-6
    head = full[:64]
    assert max(abs(a - b / norm(head)) for a, b in zip(short, head, strict=True)) < 1e-6
    bigger = (await client.embed(model=MODEL, input="matryoshka", dimensions=5000)).embeddings[0]
    assert bigger == full  # more than the model has: the full vector, as the server does


async def test_truncate_cuts_by_default_and_refuses_when_off() -> None:
    async with Emulator("ollama", models={MODEL}, context_window=5) as emu:
        client = ollama.AsyncClient(host=emu.base_url, timeout=5.0)
        long = "one two three four five six seven"
        cut = await client.embed(model=MODEL, input=[long])
        assert list(cut.embeddings[0]) == vector("one two three four five", MODEL, 768)
        assert cut.prompt_eval_count == 5
        with pytest.raises(ollama.ResponseError) as caught:
            await client.embed(model=MODEL, input=["ok", long], truncate=False)
        assert caught.value.status_code == 400
        assert caught.value.error == "the input length exceeds the context length"


async def test_no_input_is_an_empty_list(client: ollama.AsyncClient) -> None:
    assert (await client.embed(model=MODEL, input=[])).embeddings == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"input": ["a"]}, 400, "model is required"),
        ({"model": "llama9", "input": ["a"]}, 404, "model 'llama9' not found"),
        ({"model": MODEL, "input": [1]}, 400, "invalid input type"),
        ({"model": MODEL, "input": ["a"], "dimensions": -1}, 400, "dimensions must be"),
        ({"model": MODEL, "input": ["a"], "dimensions": "8"}, 400, "cannot unmarshal"),
        ({"model": MODEL, "input": ["a"], "truncate": "no"}, 400, "cannot unmarshal"),
    ],
)
async def test_refusals(
    client: ollama.AsyncClient, body: dict[str, object], status: int, message: str
) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client._request_raw("POST", "/api/embed", json=body)
    assert caught.value.status_code == status and message in caught.value.error
