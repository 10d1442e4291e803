"""Azure OpenAI dialect on the wire: both URL surfaces, api-version, api-key, filter results,
the prompt filter, Azure's error bodies and rate-limit hints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, Fault, generate_text
from tests.emulator.conftest import post, sse_data

KEY = "azure-key-0123456789"
AUTH = {"api-key": KEY}


def chat(content: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("azure", api_keys={KEY}, models={"gpt-4o-prod"}, seed=8) as instance:
        yield instance


def deployment(emu: Emulator, name: str = "gpt-4o-prod", version: str = "2024-10-21") -> str:
    return f"{emu.base_url}/openai/deployments/{name}/chat/completions?api-version={version}"


async def test_deployment_answer_with_filter_results(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, response, raw = await post(session, deployment(emu), chat(), AUTH)
    assert status == 200 and response.headers["apim-request-id"] == response.headers["x-request-id"]
    data = json.loads(raw)
    choice = data["choices"][0]
    assert choice["message"]["content"] == " ".join(generate_text("Hello there", seed=8))
    assert choice["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    assert data["prompt_filter_results"][0]["prompt_index"] == 0
    assert data["model"] == "gpt-4o-prod"  # the model comes from the URL
    assert "x-ratelimit-remaining-tokens" in response.headers


async def test_v1_surface_takes_the_model_in_the_body_and_bearer(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    target = emu.base_url + "/openai/v1/chat/completions"
    body = chat(model="gpt-4o-prod", max_completion_tokens=3)
    status, _, raw = await post(session, target, body, {"Authorization": f"Bearer {KEY}"})
    assert status == 200 and json.loads(raw)["choices"][0]["finish_reason"] == "length"
    status, _, raw = await post(session, target + "?api-version=2024-10-21", body, AUTH)
    assert status == 400 and json.loads(raw)["error"]["message"] == "API version not supported"


async def test_stream_opens_with_the_prompt_filter_chunk(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    body = chat(stream=True, stream_options={"include_usage": True})
    chunks = sse_data((await post(session, deployment(emu), body, AUTH))[2])
    opening = chunks[0]
    assert opening["choices"] == [] and opening["model"] == "" and opening["prompt_filter_results"]
    assert chunks[-1] == "[DONE]" and chunks[-2]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("target", "body", "status", "code"),
    [
        ("old", chat(stream=True, stream_options={"include_usage": True}), 400, "BadRequest"),
        ("bad-version", chat(), 400, "BadRequest"),
        ("no-version", chat(), 404, "404"),
        ("unknown", chat(), 404, "DeploymentNotFound"),
        ("ok", chat("[[refusal]] do harm"), 400, "content_filter"),
        ("ok", chat("[[context_length]] long"), 400, "context_length_exceeded"),
    ],
)
async def test_errors(
    emu: Emulator,
    session: aiohttp.ClientSession,
    target: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    urls = {
        "ok": deployment(emu),
        "old": deployment(emu, version="2024-06-01"),
        "bad-version": deployment(emu, version="latest-and-greatest"),
        "no-version": deployment(emu).split("?")[0],
        "unknown": deployment(emu, name="nope"),
    }
    got, _, raw = await post(session, urls[target], body, AUTH)
    error = json.loads(raw)["error"]
    assert got == status and error["code"] == code
    if code == "content_filter":
        assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"


async def test_auth_and_rate_limit_hints(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, deployment(emu), chat(), {"api-key": "wrong"})
    assert status == 401 and json.loads(raw)["error"]["code"] == "401"
    emu.schedule(Fault("rate_limit", retry_after=2.0))
    status, response, raw = await post(session, deployment(emu), chat(), AUTH)
    assert status == 429 and "Please retry after 2 seconds" in json.loads(raw)["error"]["message"]
    assert response.headers["retry-after"] == "2" and response.headers["retry-after-ms"] == "2000"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
