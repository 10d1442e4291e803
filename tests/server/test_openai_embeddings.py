"""``POST /v1/embeddings`` through the openai SDK's ``embeddings.create``: floats and base64
(which the SDK decodes), dimensions, flyllm's input_type extension, and the refusals."""

from __future__ import annotations

import array
import base64
import math
from typing import Any

import openai
import pytest

from tests.server.conftest import GatewayFactory, Served


def client(served: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)


async def test_floats_and_base64_give_the_same_vectors(gateway: GatewayFactory) -> None:
    served = await gateway("openai", task="embed")
    texts = ["first text", "second text", "first text"]
    async with client(served) as c:
        floats = await c.embeddings.create(model="embed", input=texts, encoding_format="float")
        raw = await c.embeddings.create(model="embed", input=texts, encoding_format="base64")
        decoded = await c.embeddings.create(model="embed", input=texts)  # the SDK asks base64
        one = await c.embeddings.create(model="embed", input="first text")
    assert floats.object == "list" and floats.model == "embed"
    assert [d.index for d in floats.data] == [0, 1, 2]
    vectors = [d.embedding for d in floats.data]
    assert vectors[0] == vectors[2] != vectors[1]  # deterministic per text, in input order
    assert [d.embedding for d in decoded.data] == vectors  # float32 both ways: exact
    strings: list[Any] = [d.embedding for d in raw.data]  # base64 text when asked for it
    packed = [array.array("f", base64.b64decode(b)).tolist() for b in strings]
    assert packed == vectors
    assert one.data[0].embedding == vectors[0]
    assert floats.usage.prompt_tokens > 0
    assert floats.usage.total_tokens == floats.usage.prompt_tokens
    last: Any = served.emulators["openai"].requests[-1].json
    assert last["input"] == ["first text"]


async def test_dimensions_and_input_type_reach_the_provider(gateway: GatewayFactory) -> None:
    served = await gateway("cohere", task="embed")
    served.manager.remove_instance(0)  # embed-v4 takes dimensions
    served.manager.add_provider("cohere", "k", "embed-v4.0", ["embed"],
                                base_url=served.emulators["cohere"].base_url)  # fmt: skip
    async with client(served) as c:
        answer = await c.embeddings.create(
            model="embed", input=["a query"], dimensions=256, extra_body={"input_type": "query"}
        )
    assert len(answer.data[0].embedding) == 256
    sent: Any = served.emulators["cohere"].requests[-1].json
    assert sent["input_type"] == "search_query" and sent["output_dimension"] == 256
    assert math.isclose(math.hypot(*answer.data[0].embedding), 1.0, rel_tol=1e-3)


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"input": [[1, 2, 3]]}, "input", "token arrays"),
        ({"input": [1, 2, 3]}, "input", "token arrays"),
        ({"input": []}, "input", "non-empty"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "base64"),
        ({"input": "x", "dimensions": 0}, "dimensions", "positive"),
        ({"input": "x", "input_type": "code"}, "input_type", "query"),
        ({"input": "x", "colour": 1}, "colour", "unrecognized"),
    ],
)
async def test_requests_that_cannot_be_served_are_400(
    gateway: GatewayFactory, fields: dict[str, Any], param: str, words: str
) -> None:
    served = await gateway("openai", task="embed")
    async with client(served) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.post("/embeddings", body={"model": "embed", **fields}, cast_to=object)
    assert caught.value.param == param and words in caught.value.message
    assert not served.emulators["openai"].requests


async def test_unknown_model_and_failed_upstream(gateway: GatewayFactory) -> None:
    served = await gateway("openai", task="embed", max_attempts=1)
    async with client(served) as c:
        with pytest.raises(openai.NotFoundError):
            await c.embeddings.create(model="nope", input="x")
        served.emulators["openai"].schedule("server_error")
        with pytest.raises(openai.InternalServerError) as caught:
            await c.embeddings.create(model="embed", input="x")
    assert caught.value.status_code == 502
