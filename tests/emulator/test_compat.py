"""OpenAI-compatible service dialects: paths, stream-usage placement, [DONE], keyless local
servers, rejected fields and 402 balances."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault, generate_text
from flyllm.emulator.dialects.compat import FLAVOURS
from tests.emulator.conftest import post, sse_data

AUTH = {"Authorization": "Bearer k"}
PATHS = {
    "groq": "/openai/v1", "together": "/v1", "perplexity": "", "deepseek": "",
    "openrouter": "/api/v1", "fireworks": "/inference/v1", "lmstudio": "/v1", "vllm": "/v1",
}  # fmt: skip


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hello there"}], **extra}


@pytest.mark.parametrize("name", sorted(FLAVOURS))
async def test_paths_and_plain_answers(session: aiohttp.ClientSession, name: str) -> None:
    async with Emulator(name, seed=9) as emu:
        assert emu.base_url == emu.url + PATHS[name]
        status, _, raw = await post(session, emu.base_url + "/chat/completions", chat(), AUTH)
        assert status == 200
        content = json.loads(raw)["choices"][0]["message"]["content"]
        assert content == " ".join(generate_text("Hello there", seed=9))


def _usage_chunks(chunks: list[Any]) -> list[dict[str, Any]]:
    objects = [c for c in chunks if isinstance(c, dict)]
    return [c for c in objects if c.get("usage") or (c.get("x_groq") or {}).get("usage")]


@pytest.mark.parametrize(
    ("name", "where", "done"),
    [
        ("groq", "x_groq", True),
        ("together", "finish", True),
        ("fireworks", "finish", True),
        ("perplexity", "every", False),
        ("openrouter", "last", True),
        ("deepseek", "none", True),
        ("vllm", "none", True),
    ],
)
async def test_stream_usage_placement(
    session: aiohttp.ClientSession, name: str, where: str, done: bool
) -> None:
    async with Emulator(name, reply_tokens=6) as emu:
        raw = (await post(session, emu.base_url + "/chat/completions", chat(stream=True), AUTH))[2]
    chunks = sse_data(raw)
    assert (chunks[-1] == "[DONE]") is done
    found = _usage_chunks(chunks)
    if where == "none":
        assert found == []  # only with stream_options.include_usage
    elif where == "every":
        assert len(found) == 7 and found[-1]["usage"]["completion_tokens"] == 6
    else:
        (only,) = found
        usage = only["x_groq"]["usage"] if where == "x_groq" else only["usage"]
        assert usage["completion_tokens"] == 6
        assert (only["choices"] == []) is (where == "last")


async def test_stream_options_servers(session: aiohttp.ClientSession) -> None:
    async with Emulator("deepseek") as emu:
        body = chat(stream=True, stream_options={"include_usage": True})
        chunks = sse_data((await post(session, emu.base_url + "/chat/completions", body, AUTH))[2])
        assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] > 0


async def test_local_servers_need_no_key_unless_configured(session: aiohttp.ClientSession) -> None:
    async with Emulator("vllm") as emu:
        assert (await post(session, emu.base_url + "/chat/completions", chat()))[0] == 200
    async with Emulator("groq") as emu:
        assert (await post(session, emu.base_url + "/chat/completions", chat()))[0] == 401
    async with Emulator("lmstudio", api_keys={"k"}) as emu:
        assert (await post(session, emu.base_url + "/chat/completions", chat()))[0] == 401
        assert (await post(session, emu.base_url + "/chat/completions", chat(), AUTH))[0] == 200


async def test_rejected_fields_stop_limits_and_balances(session: aiohttp.ClientSession) -> None:
    async with Emulator("groq") as emu:
        target = emu.base_url + "/chat/completions"
        status, _, raw = await post(session, target, chat(logprobs=True), AUTH)
        assert status == 400 and "logprobs" in json.loads(raw)["error"]["message"]
        assert (await post(session, target, chat(stop=list("abcde")), AUTH))[0] == 400
        assert (await post(session, target, chat(top_k=3, max_completion_tokens=2), AUTH))[0] == 200
    async with Emulator("openrouter", faults=[Fault("quota")]) as emu:
        status, _, raw = await post(session, emu.base_url + "/chat/completions", chat(), AUTH)
        assert status == 402 and json.loads(raw)["error"]["message"] == "Insufficient Balance"
