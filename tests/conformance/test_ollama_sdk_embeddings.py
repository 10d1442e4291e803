"""The Ollama dialect's ``POST /api/embed`` driven by the official ``ollama`` SDK's ``embed``:
vectors from the shared generator, dimensions, truncate, usage and every refusal."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
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


async def test_refusals_the_sdk_can_send(client: ollama.AsyncClient) -> None:
    cases = [
        ({"model": "llama9", "input": ["a"]}, 404, "model 'llama9' not found"),
        ({"model": MODEL, "input": ["a"], "dimensions": -1}, 400, "dimensions must be"),
    ]
    for kwargs, status, message in cases:
        with pytest.raises(ollama.ResponseError) as caught:
            await client.embed(**kwargs)  # type: ignore[arg-type]
        assert caught.value.status_code == status and message in caught.value.error


@pytest.mark.parametrize(
    "body",
    [
        {"input": ["a"]},
        {"model": MODEL, "input": [1]},
        {"model": MODEL, "input": {"a": 1}},
        {"model": MODEL, "input": ["a"], "dimensions": "8"},
        {"model": MODEL, "input": ["a"], "truncate": "no"},
        {"model": MODEL, "input": ["a"], "options": "x"},
    ],
)
async def test_bodies_of_the_wrong_types_are_400s(emu: Emulator, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=5.0) as http:
        got = await http.post("/api/embed", json=body)
    assert got.status_code == 400 and set(got.json()) == {"error"}
    if "model" not in body:
        assert got.json()["error"] == "model is required"  # what the SDK itself refuses
