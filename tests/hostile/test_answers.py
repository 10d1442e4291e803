"""Hostile answers, through the manager (issue 13 items 3, 4, 6, 8 and "Also"): servers on
loopback that echo the instance's key in their errors, answer text of the wrong type, nest JSON
200,000 deep, send a 10 MB error message or a served model of their own; requests whose
parameters JSON cannot carry. Each case runs in a budget (wall time, peak RSS growth)."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from aiohttp import web

from flyllm import (
    AllAttemptsFailedError,
    GenerationRequest,
    InvalidRequestError,
    LlmManager,
    LlmResponse,
    MalformedResponseError,
    StreamChunk,
)
from tests.hostile.conftest import budget, http_server

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# provider -> (key prefix, the path under the server its base_url adds, add_provider options)
FAMILIES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "openai": ("sk-proj-", "/v1", {}),
    "anthropic": ("sk-ant-api03-", "", {}),
    "google": ("AIza", "", {}),
    "mistral": ("", "", {}),
    "azure": ("", "", {"options": {"deployment": "d"}}),
    "cohere": ("", "", {}),
    "ollama": ("", "", {}),
    "groq": ("gsk_", "/v1", {}),
    "perplexity": ("pplx-", "", {}),
    "fireworks": ("fw_", "/v1", {}),
}
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "x-gateway-key")


def fake_key(prefix: str) -> str:
    """A key of the provider's shape, made at run time (never a literal in git)."""
    return prefix + secrets.token_urlsafe(24)


def echoed(request: web.Request) -> str:
    """Every credential the client sent, as a careless server quotes it back."""
    return " ".join(request.headers.get(name, "") for name in CREDENTIAL_HEADERS)


async def json_echo(request: web.Request) -> web.StreamResponse:
    await request.read()
    text = f"Incorrect API key provided: {echoed(request)}"
    body = {"error": {"message": text, "type": "invalid_request_error"}, "message": text}
    return web.json_response(body, status=401)


async def text_echo(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.Response(status=401, text=f"<h1>Denied</h1> {echoed(request)} " + "x" * 300)


def stream_error_event(provider: str, text: str) -> bytes:
    """A 200 stream whose only event is the provider's error event carrying ``text``."""
    if provider == "anthropic":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": text}}
        return b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"
    if provider == "google":
        return b"data: " + json.dumps({"error": {"code": 503, "message": text}}).encode() + b"\n\n"
    if provider == "cohere":
        end = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": text}}
        return b"event: message-end\ndata: " + json.dumps(end).encode() + b"\n\n"
    if provider == "ollama":
        return json.dumps({"error": text}).encode() + b"\n"
    return (
        b"data: "
        + json.dumps({"error": {"message": text, "type": "server_error"}}).encode()
        + b"\n\n"
    )


def stream_echo(provider: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = stream_error_event(provider, f"bad key {echoed(request)}")
        kind = "application/x-ndjson" if provider == "ollama" else "text/event-stream"
        return web.Response(body=body, content_type=kind)

    return handler


async def manager_for(
    provider: str, url: str, key: str, gateway: str, *, instances: int = 1, **kwargs: Any
) -> LlmManager:
    _, path, options = FAMILIES[provider]
    manager = LlmManager(read_timeout=5.0, max_attempts=instances, **kwargs)
    for _ in range(instances):
        manager.add_provider(
            provider, key, "model-x", base_url=url + path,
            headers={"X-Gateway-Key": gateway}, **options,
        )  # fmt: skip
    return manager


@contextlib.asynccontextmanager
async def served(provider: str, handler: Handler, **kwargs: Any) -> AsyncIterator[LlmManager]:
    """A manager with instances of ``provider`` on a loopback server answering with ``handler``
    (keys "k" * 20 and gateway "g" * 20 unless given)."""
    key, gateway = kwargs.pop("key", "k" * 20), kwargs.pop("gateway", "g" * 20)
    async with (
        http_server(handler) as url,
        await manager_for(provider, url, key, gateway, **kwargs) as manager,
    ):
        yield manager


async def drain(
    manager: LlmManager, request: GenerationRequest
) -> tuple[list[StreamChunk], LlmResponse]:
    """Every chunk of a stream and its final response (raises what the stream raises)."""
    async with manager.stream(request) as stream:
        chunks = [chunk async for chunk in stream]
    return chunks, stream.response


def texts_of(err: BaseException) -> Iterable[tuple[str, str]]:
    """(where, text) for every text an error shows."""
    yield "str(exc)", str(err)
    yield "repr(exc)", repr(err)
    for i, attempt in enumerate(getattr(err, "attempts", ())):
        yield f"str(attempts[{i}])", str(attempt)
        yield f"repr(attempts[{i}])", repr(attempt)


def assert_no_secret(seen: Iterable[tuple[str, str]], *keys: str) -> None:
    """Fail naming where a key leaked, without printing the key or the text."""
    for where, text in seen:
        for key in keys:
            if key in text or key[:12] in text:  # pytrace=False: the output never shows it
                pytest.fail(f"a key (or its start) leaked into {where}", pytrace=False)


async def run_all_ways(make: Callable[[], Awaitable[LlmManager]]) -> list[tuple[str, str]]:
    """The texts a failed request shows through generate(), batch_generate() and stream(),
    each on a fresh manager (so no cooldown can stop a request before it reaches the server)."""
    request = GenerationRequest(prompt="hi")
    seen: list[tuple[str, str]] = []
    async with await make() as manager:
        with pytest.raises(AllAttemptsFailedError) as caught:
            await manager.generate(request)
        seen += texts_of(caught.value)
    async with await make() as manager:
        (response,) = await manager.batch_generate([request])
    assert response.error_kind == "authentication"
    seen += [("LlmResponse.error", response.error or ""), ("repr(LlmResponse)", repr(response))]
    async with await make() as manager:
        with pytest.raises(AllAttemptsFailedError) as caught:
            await drain(manager, request)
        seen += texts_of(caught.value)
    return seen


@pytest.mark.parametrize("provider", list(FAMILIES))
@pytest.mark.parametrize("handler", [json_echo, text_echo], ids=["json", "text"])
async def test_echoed_key_reaches_no_error_response_or_log(
    provider: str, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    key, gateway = fake_key(FAMILIES[provider][0]), fake_key("gw-")
    with budget(seconds=5, megabytes=30):
        async with http_server(handler) as url:
            with caplog.at_level(logging.DEBUG, logger="flyllm"):
                seen = await run_all_ways(lambda: manager_for(provider, url, key, gateway))
    logged = [("log", record.getMessage()) for record in caplog.records]
    assert any("failing over" in text for _, text in logged)  # the WARNING line was written
    assert_no_secret(seen + logged, key, gateway)


@pytest.mark.parametrize("provider", list(FAMILIES))
async def test_echoed_key_in_a_stream_error_event_is_redacted(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    key, gateway = fake_key(FAMILIES[provider][0]), fake_key("gw-")
    request = GenerationRequest(prompt="hi")
    with budget(seconds=5, megabytes=30), caplog.at_level(logging.DEBUG, logger="flyllm"):
        async with served(provider, stream_echo(provider), key=key, gateway=gateway) as manager:
            with pytest.raises(AllAttemptsFailedError) as caught:
                await drain(manager, request)
    if "[redacted]" not in str(caught.value):
        pytest.fail("the echoed key was not redacted", pytrace=False)
    logged = [("log", record.getMessage()) for record in caplog.records]
    assert_no_secret([*texts_of(caught.value), *logged], key, gateway)


# --- wrong-shaped answers fail over -------------------------------------------------------


def chat(content: Any) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "model": "served-by-them",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}  # fmt: skip


GOOD: dict[str, Any] = {
    "openai": chat("fine"),
    "anthropic": {"type": "message", "model": "served-by-them", "stop_reason": "end_turn",
                  "content": [{"type": "text", "text": "fine"}],
                  "usage": {"input_tokens": 3, "output_tokens": 2}},
    "google": {"candidates": [{"content": {"role": "model", "parts": [{"text": "fine"}]},
                               "finishReason": "STOP"}], "modelVersion": "served-by-them",
               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}},
    "cohere": {"id": "x", "finish_reason": "COMPLETE",
               "message": {"role": "assistant", "content": [{"type": "text", "text": "fine"}]},
               "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2}}},
    "ollama": {"model": "served-by-them", "done": True, "done_reason": "stop",
               "message": {"role": "assistant", "content": "fine"},
               "prompt_eval_count": 3, "eval_count": 2},
}  # fmt: skip
WRONG: list[tuple[str, Any]] = [
    ("openai", chat(-5)),
    ("openai", chat([1, 2, 3])),
    ("openai", chat({"a": 1})),
    ("anthropic", {**GOOD["anthropic"], "content": [1, 2]}),
    ("google", {"candidates": [{}], "modelVersion": "m"}),
    ("google", {"candidates": [{"content": {"parts": [{"text": 5}]}, "finishReason": "STOP"}]}),
    ("cohere", {**GOOD["cohere"], "message": {"role": "assistant", "content": 7}}),
    ("ollama", {**GOOD["ollama"], "message": {"role": "assistant", "content": [1, 2, 3]}}),
    ("openai", None),  # 200,000 "[": JSON nested too deeply
]


def bad_then_good(bad: bytes) -> tuple[Handler, list[int]]:
    """A server whose first answer is ``bad`` and every later one good (by the path asked)."""
    calls: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        calls.append(1)
        if len(calls) == 1:
            return web.Response(body=bad, content_type="application/json")
        provider = next(p for p, mark in _PATHS if mark in request.path)
        return web.json_response(GOOD[provider])

    return handler, calls


_PATHS = [("anthropic", "/v1/messages"), ("google", ":generate"), ("cohere", "/v2/chat"),
          ("ollama", "/api/chat"), ("openai", "/chat/completions")]  # fmt: skip


@pytest.mark.parametrize(("provider", "body"), WRONG)
async def test_wrong_shaped_answer_fails_over_to_a_good_one(provider: str, body: Any) -> None:
    bad = b"[" * 200_000 if body is None else json.dumps(body).encode()
    handler, calls = bad_then_good(bad)
    with budget(seconds=5, megabytes=60):
        async with served(provider, handler, instances=2) as m:
            response = await m.generate(GenerationRequest(prompt="hi"))
    assert response.success and response.content == "fine"
    assert response.attempts == 2 and len(calls) == 2


@pytest.mark.parametrize(("provider", "body"), WRONG)
async def test_wrong_shaped_answer_alone_is_malformed(provider: str, body: Any) -> None:
    bad = b"[" * 200_000 if body is None else json.dumps(body).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=bad, content_type="application/json")

    with budget(seconds=5, megabytes=60):
        async with served(provider, handler) as manager:
            with pytest.raises(AllAttemptsFailedError) as caught:
                await manager.generate(GenerationRequest(prompt="hi"))
    assert isinstance(caught.value.attempts[0], MalformedResponseError)


DEEP_STREAMS = {
    "openai": b"data: " + b"[" * 200_000 + b"\n\n",
    "anthropic": b"event: content_block_delta\ndata: " + b"[" * 200_000 + b"\n\n",
    "google": b"data: " + b"[" * 200_000 + b"\n\n",
    "ollama": b"[" * 200_000 + b"\n",
}


@pytest.mark.parametrize("provider", list(DEEP_STREAMS))
async def test_deep_json_in_a_stream_is_malformed_and_batch_keeps_its_siblings(
    provider: str,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        if "deep" not in json.dumps(payload):
            return web.json_response(GOOD["openai" if provider == "openai" else provider])
        if request.path.endswith("streamGenerateContent") or payload.get("stream"):
            return web.Response(body=DEEP_STREAMS[provider], content_type="text/event-stream")
        return web.Response(body=b"[" * 200_000, content_type="application/json")

    with budget(seconds=5, megabytes=60):
        async with served(provider, handler) as manager:
            with pytest.raises(AllAttemptsFailedError) as caught:
                await drain(manager, GenerationRequest(prompt="deep"))
            requests = [GenerationRequest(prompt=p) for p in ("a", "deep", "b")]
            results = await manager.batch_generate(requests)
    assert isinstance(caught.value.attempts[0], MalformedResponseError)
    assert [r.success for r in results] == [True, False, True]
    assert results[1].error_kind == "malformed_response"


# --- huge error messages ------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "mistral", "ollama"])
async def test_ten_megabyte_error_message_is_cut(
    provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "E" * 10_000_000

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = {"message": huge} if provider == "mistral" else {"error": {"message": huge}}
        return web.Response(status=500, body=json.dumps(body), content_type="application/json")

    with budget(seconds=10, megabytes=150):
        async with served(provider, handler) as manager:
            with caplog.at_level(logging.WARNING, logger="flyllm"):
                (response,) = await manager.batch_generate([GenerationRequest(prompt="hi")])
    assert not response.success and response.error is not None
    assert len(response.error) < 1_000
    assert all(len(record.getMessage()) < 1_000 for record in caplog.records)


# --- the served model is kept beside the instance's ---------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "ollama"])
async def test_served_model_does_not_replace_the_instance_model(provider: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(GOOD[provider])

    with budget(seconds=5, megabytes=30):
        async with served(provider, handler) as manager:
            response = await manager.generate(GenerationRequest(prompt="hi"))
            usage = manager.token_usage()
    assert response.model == "model-x" and response.served_model == "served-by-them"
    assert [row.model for row in usage] == ["model-x"]


async def test_served_model_of_a_stream_is_kept_beside_the_instance_model() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "fi"}}], "model": "served-by-them"},
        {"choices": [{"index": 0, "delta": {"content": "ne"}, "finish_reason": "stop"}],
         "model": "served-by-them"},
    ]  # fmt: skip
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(body=body + b"data: [DONE]\n\n", content_type="text/event-stream")

    with budget(seconds=5, megabytes=30):
        async with served("openai", handler) as manager:
            chunks, final = await drain(manager, GenerationRequest(prompt="hi"))
    assert "".join(c.text for c in chunks) == "fine"
    assert {c.model for c in chunks} == {"model-x"}
    assert final.model == "model-x" and final.served_model == "served-by-them"


# --- Gemini model names and unsendable parameters ------------------------------------------


async def test_gemini_model_name_cannot_move_the_url() -> None:
    seen: list[tuple[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        seen.append((request.raw_path, request.query_string))
        return web.json_response(GOOD["google"])

    with budget(seconds=5, megabytes=30):
        async with http_server(handler) as url, LlmManager(read_timeout=5.0) as manager:
            manager.add_provider("google", "k" * 20, "../../x?key=1#f", base_url=url)
            await manager.generate(GenerationRequest(prompt="hi"))
    assert seen == [("/v1/models/..%2F..%2Fx%3Fkey=1%23f:generateContent", "")]  # one segment


@pytest.mark.parametrize(
    "value", [{1, 2}, b"raw", float("nan"), float("inf"), __import__("datetime").date(2026, 1, 1)]
)
async def test_unsendable_parameter_fails_its_request_only(value: Any) -> None:
    sent: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sent.append(await request.read())
        return web.json_response(GOOD["openai"] if "chat" in request.path else {})

    with budget(seconds=5, megabytes=30):
        async with served("openai", handler) as manager:
            bad = GenerationRequest(prompt="bad", params={"custom": value})
            with pytest.raises(InvalidRequestError, match="custom"):
                await manager.generate(bad)
            good = GenerationRequest(prompt="good")
            results = await manager.batch_generate([good, bad, good])
    assert [r.success for r in results] == [True, False, True]
    assert results[1].error_kind == "invalid_request"
    assert len(sent) == 2  # nothing was sent for the bad request
