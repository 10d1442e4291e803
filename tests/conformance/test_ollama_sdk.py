"""The Ollama dialect of the emulator, driven by the official ``ollama`` SDK
(``ollama.AsyncClient(host=emu.base_url)``): chat, NDJSON streaming, options, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import ollama
import pytest

from flyllm.emulator import Emulator, Fault
from tests.conformance.helpers import PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

MODEL = "llama3.2"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("ollama", models={MODEL}, reply_tokens=REPLY_TOKENS) as emulator:
        yield emulator


@pytest.fixture
def client(emu: Emulator) -> ollama.AsyncClient:
    return ollama.AsyncClient(host=emu.base_url, timeout=5.0)


async def test_chat(emu: Emulator, client: ollama.AsyncClient) -> None:
    response = await client.chat(model=MODEL, messages=MESSAGES)
    assert response.message.role == "assistant"
    assert response.message.content == expected_text()
    assert response.done is True and response.done_reason == "stop"
    assert response.eval_count == REPLY_TOKENS
    assert response.prompt_eval_count is not None and response.prompt_eval_count > 0
    sent = emu.requests[-1]
    assert sent.path == "/api/chat" and sent.json is not None
    assert sent.json["stream"] is False  # the SDK always says so


async def test_stream_counts_on_the_last_part(client: ollama.AsyncClient) -> None:
    parts = [part async for part in await client.chat(model=MODEL, messages=MESSAGES, stream=True)]
    assert "".join(p.message.content or "" for p in parts) == expected_text()
    assert all(p.done is False and p.eval_count is None for p in parts[:-1])
    last = parts[-1]
    assert last.done is True and last.done_reason == "stop" and last.eval_count == REPLY_TOKENS


async def test_options_num_predict_and_stop(client: ollama.AsyncClient) -> None:
    limited = await client.chat(model=MODEL, messages=MESSAGES, options={"num_predict": 5})
    assert limited.message.content == expected_text(max_tokens=5)
    assert limited.done_reason == "length" and limited.eval_count == 5
    stop, cut = stop_case()
    stopped = await client.chat(model=MODEL, messages=MESSAGES, options={"stop": [stop]})
    assert stopped.message.content == cut


async def test_unknown_model_is_a_404_response_error(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat(model="llama9", messages=MESSAGES)
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'llama9' not found"


@pytest.mark.parametrize(("fault", "status"), [("server_error", 500), ("overloaded", 503)])
async def test_faults_are_response_errors(
    emu: Emulator, client: ollama.AsyncClient, fault: str, status: int
) -> None:
    emu.schedule(fault)
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == status


async def test_error_line_inside_a_stream(emu: Emulator, client: ollama.AsyncClient) -> None:
    emu.schedule(Fault("stream_error", after_chunks=2))
    received: list[str] = []
    with pytest.raises(ollama.ResponseError) as caught:
        async for part in await client.chat(model=MODEL, messages=MESSAGES, stream=True):
            received.append(part.message.content or "")
    assert len(received) == 2 and "unexpected EOF" in caught.value.error
