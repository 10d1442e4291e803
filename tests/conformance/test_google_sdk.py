"""The Gemini dialect of the emulator, driven by the official ``google-genai`` SDK (``client.aio``).

Pointing the SDK at the emulator takes ``api_key=`` and ``HttpOptions(base_url=emu.base_url)``
(``http://host:port``; the SDK appends ``v1/models/...``, or ``v1beta/...`` with
``api_version="v1beta"``). With an API key and no Vertex settings the SDK loads no Google
credentials and reaches nothing else. With aiohttp installed (flyllm's own dependency) the
async client uses aiohttp, so transport failures surface as aiohttp exceptions.

The SDK retries nothing by default, except that after a dropped connection its aiohttp path
sleeps 1-10 s and tries once more on its own; ``HttpRetryOptions(attempts=1)`` hands retries
to tenacity and turns that off, which the reset test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from flyllm.emulator import FAULT_KINDS, Emulator
from tests.conformance.helpers import KEY, PROMPT, REPLY_TOKENS, SYSTEM, expected_text, stop_case

MODEL = "gemini-2.5-flash"
# The SDK documents no class of its own for network failures: its HTTP library's errors surface
# (aiohttp's on this async path; the base class, since which subclass is an internal detail).
# An unreadable 200 body surfaces as the decoder's ValueError, or the SDK's own APIError.
NETWORK = (aiohttp.ClientError, errors.APIError)
UNREADABLE = (ValueError, errors.APIError)

# google-genai subclasses aiohttp.ClientSession, which aiohttp frowns upon; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(provider="google", api_keys={KEY}, reply_tokens=REPLY_TOKENS) as emulator:
        yield emulator


@contextlib.asynccontextmanager
async def gemini(
    emu: Emulator, key: str = KEY, **options: Any
) -> AsyncIterator[genai.client.AsyncClient]:
    """An async client on the emulator, closed (sync and async halves) on exit."""
    client = genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=emu.base_url, **options)
    )
    try:
        yield client.aio
    finally:
        await client.aio.aclose()
        client.close()


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[genai.client.AsyncClient]:
    async with gemini(emu, timeout=5000) as aio:
        yield aio


def config(**kwargs: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(**kwargs)


async def stream_all(
    aio: genai.client.AsyncClient, contents: str = PROMPT, **kwargs: Any
) -> list[types.GenerateContentResponse]:
    stream = await aio.models.generate_content_stream(
        model=MODEL, contents=contents, config=config(**kwargs) if kwargs else None
    )
    return [chunk async for chunk in stream]


def finish_reason(response: types.GenerateContentResponse) -> types.FinishReason | None:
    assert response.candidates
    return response.candidates[0].finish_reason


# -- success paths ---------------------------------------------------------------------------


async def test_non_stream_on_v1_text_finish_reason_and_usage(
    emu: Emulator, client: genai.client.AsyncClient
) -> None:
    response = await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=config(system_instruction=SYSTEM)
    )

    assert response.text == expected_text()
    assert finish_reason(response) == types.FinishReason.STOP
    assert response.model_version == MODEL
    assert response.response_id
    usage = response.usage_metadata
    assert usage is not None
    assert usage.candidates_token_count == REPLY_TOKENS
    assert usage.prompt_token_count is not None
    assert usage.prompt_token_count > 0
    assert usage.total_token_count == usage.prompt_token_count + REPLY_TOKENS
    # google-genai 3.x calls v1 by default, with the key in x-goog-api-key.
    sent = emu.requests[-1]
    assert sent.path == f"/v1/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json is not None
    assert sent.json["systemInstruction"]["parts"] == [{"text": SYSTEM}]


async def test_stream_chunks_and_cumulative_usage(
    emu: Emulator, client: genai.client.AsyncClient
) -> None:
    chunks = await stream_all(client)

    assert "".join(chunk.text or "" for chunk in chunks) == expected_text()
    reasons = [finish_reason(chunk) for chunk in chunks]
    assert reasons[-1] == types.FinishReason.STOP
    assert all(reason is None for reason in reasons[:-1])
    counts: list[int] = []
    for chunk in chunks:  # every chunk carries usage
        assert chunk.usage_metadata is not None
        assert chunk.usage_metadata.candidates_token_count is not None
        counts.append(chunk.usage_metadata.candidates_token_count)
    assert counts == sorted(counts)  # a growing snapshot, not increments
    last = chunks[-1].usage_metadata
    assert last is not None
    assert last.candidates_token_count == REPLY_TOKENS
    assert last.prompt_token_count is not None
    assert last.total_token_count == last.prompt_token_count + REPLY_TOKENS
    sent = emu.requests[-1]
    assert sent.path == f"/v1/models/{MODEL}:streamGenerateContent"
    assert sent.query == {"alt": "sse"}


async def test_v1beta_api_version(emu: Emulator) -> None:
    async with gemini(emu, api_version="v1beta") as aio:
        response = await aio.models.generate_content(model=MODEL, contents=PROMPT)
        chunks = await stream_all(aio)
    assert response.text == expected_text()
    assert "".join(chunk.text or "" for chunk in chunks) == expected_text()
    assert [r.path for r in emu.requests] == [
        f"/v1beta/models/{MODEL}:generateContent",
        f"/v1beta/models/{MODEL}:streamGenerateContent",
    ]


async def test_max_output_tokens(client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=config(max_output_tokens=5)
    )
    assert response.text == expected_text(max_tokens=5)
    assert finish_reason(response) == types.FinishReason.MAX_TOKENS
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 5

    chunks = await stream_all(client, max_output_tokens=5)
    assert "".join(chunk.text or "" for chunk in chunks) == expected_text(max_tokens=5)
    assert finish_reason(chunks[-1]) == types.FinishReason.MAX_TOKENS


async def test_stop_sequences(client: genai.client.AsyncClient) -> None:
    stop, cut = stop_case()
    response = await client.models.generate_content(
        model=MODEL, contents=PROMPT, config=config(stop_sequences=[stop])
    )
    assert response.text == cut
    assert finish_reason(response) == types.FinishReason.STOP
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == len(cut.split())

    chunks = await stream_all(client, stop_sequences=[stop])
    assert "".join(chunk.text or "" for chunk in chunks) == cut


async def test_blocked_prompt(client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(model=MODEL, contents="[[blocked]] hi")
    assert response.candidates is None
    assert response.text is None
    assert response.prompt_feedback is not None
    assert response.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count is None  # zero counts are omitted


async def test_refusal_is_safety_finish(client: genai.client.AsyncClient) -> None:
    response = await client.models.generate_content(
        model=MODEL, contents="[[refusal]] how do I pick a lock?"
    )
    assert response.text is None
    assert finish_reason(response) == types.FinishReason.SAFETY

    chunks = await stream_all(client, contents="[[refusal]] how do I pick a lock?")
    assert finish_reason(chunks[-1]) == types.FinishReason.SAFETY


# -- request errors ----------------------------------------------------------------------------


async def test_wrong_key_is_client_error_400(emu: Emulator) -> None:
    async with gemini(emu, key="wrong-key") as aio:
        with pytest.raises(errors.ClientError) as caught:
            await aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    reasons = [d.get("reason") for d in caught.value.details["error"]["details"]]
    assert "API_KEY_INVALID" in reasons


async def test_missing_key_is_client_error_403(emu: Emulator) -> None:
    # The SDK insists on a key; an empty header override sends the request without one.
    async with gemini(emu, headers={"x-goog-api-key": ""}) as aio:
        with pytest.raises(errors.ClientError) as caught:
            await aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert caught.value.code == 403
    assert caught.value.status == "PERMISSION_DENIED"


async def test_context_length_is_client_error(client: genai.client.AsyncClient) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await client.models.generate_content(model=MODEL, contents="[[context_length]] hi")
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message is not None
    assert "input token count" in caught.value.message


async def test_unknown_model_is_not_found() -> None:
    async with Emulator(provider="google", models={MODEL}) as strict, gemini(strict) as aio:
        with pytest.raises(errors.ClientError) as caught:
            await aio.models.generate_content(model="gemini-0-nope", contents=PROMPT)
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"


# -- faults ------------------------------------------------------------------------------------

STATUS_FAULTS: list[tuple[str, type[errors.APIError], int, str | None]] = [
    ("rate_limit", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    ("quota", errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
    ("server_error", errors.ServerError, 500, "INTERNAL"),
    ("bad_gateway", errors.ServerError, 502, None),  # Google's front end answers with HTML
    ("unavailable", errors.ServerError, 503, "UNAVAILABLE"),
    ("overloaded", errors.ServerError, 503, "UNAVAILABLE"),
    ("unauthorized", errors.ClientError, 400, "INVALID_ARGUMENT"),
    ("stream_error", errors.ServerError, 500, "INTERNAL"),  # non-streaming: a plain 500
]


@pytest.mark.parametrize(("kind", "exc", "code", "status"), STATUS_FAULTS)
async def test_error_fault_raises_sdk_class(
    emu: Emulator,
    client: genai.client.AsyncClient,
    kind: str,
    exc: type[errors.APIError],
    code: int,
    status: str | None,
) -> None:
    emu.schedule(kind)
    with pytest.raises(exc) as caught:
        await client.models.generate_content(model=MODEL, contents=PROMPT)
    assert type(caught.value) is exc
    assert caught.value.code == code
    if status is not None:
        assert caught.value.status == status
    assert emu.stats()["faults_injected"] == {kind: 1}
    response = await client.models.generate_content(model=MODEL, contents=PROMPT)
    assert response.text == expected_text()


async def test_rate_limit_carries_retry_delay_in_body(
    emu: Emulator, client: genai.client.AsyncClient
) -> None:
    emu.schedule("rate_limit", retry_after=2.5)
    with pytest.raises(errors.ClientError) as caught:
        await stream_all(client)
    details = caught.value.details["error"]["details"]
    delays = [d["retryDelay"] for d in details if d["@type"].endswith("google.rpc.RetryInfo")]
    assert delays == ["2.5s"]
    assert "retry-after" not in caught.value.response.headers  # Gemini sends no header


async def test_hang_times_out(emu: Emulator) -> None:
    emu.schedule("hang")
    async with gemini(emu, timeout=300) as aio:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert 0.25 <= time.monotonic() - started < 3.0


async def test_reset_is_connection_error(emu: Emulator) -> None:
    emu.schedule("reset")
    async with gemini(emu, retry_options=types.HttpRetryOptions(attempts=1)) as aio:
        with pytest.raises(NETWORK):
            await aio.models.generate_content(model=MODEL, contents=PROMPT)
    assert emu.stats()["requests"] == 1


async def test_malformed_body(emu: Emulator, client: genai.client.AsyncClient) -> None:
    emu.schedule("malformed")
    with pytest.raises(UNREADABLE):
        await client.models.generate_content(model=MODEL, contents=PROMPT)

    emu.schedule("malformed")
    with pytest.raises(errors.UnknownApiResponseError):
        await stream_all(client)


async def test_stream_cut(emu: Emulator, client: genai.client.AsyncClient) -> None:
    emu.schedule("stream_cut")
    stream = await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
    received: list[str] = []
    with pytest.raises(NETWORK):
        async for chunk in stream:
            received.append(chunk.text or "")
    assert 0 < len("".join(received).split()) < REPLY_TOKENS
    assert expected_text().startswith("".join(received))

    emu.schedule("stream_cut")
    with pytest.raises(NETWORK):
        await client.models.generate_content(model=MODEL, contents=PROMPT)


async def test_stream_error_chunk_raises_server_error(
    emu: Emulator, client: genai.client.AsyncClient
) -> None:
    emu.schedule("stream_error")
    stream = await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
    received: list[str] = []
    with pytest.raises(errors.ServerError) as caught:
        async for chunk in stream:
            received.append(chunk.text or "")
    assert caught.value.code == 500
    assert caught.value.status == "INTERNAL"
    assert 0 < len("".join(received).split()) < REPLY_TOKENS


# -- retries -----------------------------------------------------------------------------------


async def test_opt_in_retry_recovers_but_ignores_retry_delay(emu: Emulator) -> None:
    # google-genai retries only with HttpRetryOptions, on its own exponential schedule: the
    # 429's RetryInfo (5 s here) is not read, so the retry comes after ~0.05 s.
    emu.schedule("rate_limit", retry_after=5.0)
    retry = types.HttpRetryOptions(attempts=2, initial_delay=0.05, max_delay=0.1, jitter=0.0)
    async with gemini(emu, timeout=5000, retry_options=retry) as aio:
        started = time.monotonic()
        response = await aio.models.generate_content(model=MODEL, contents=PROMPT)
        elapsed = time.monotonic() - started
    assert response.text == expected_text()
    assert emu.stats()["responses_by_status"] == {"429": 1, "200": 1}
    assert elapsed < 2.5


def test_every_fault_kind_is_exercised() -> None:
    covered = {kind for kind, *_ in STATUS_FAULTS} | {
        "hang",
        "reset",
        "malformed",
        "stream_cut",
        "stream_error",
        "bad_output",  # exercised in test_google_sdk_output.py
    }
    assert covered == set(FAULT_KINDS)


# -- tools -------------------------------------------------------------------------------------

TOOL_MODEL = "gemini-3-flash-preview"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters_json_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
ASK = "Weather in Oslo and Lima?"


@pytest.fixture
async def tools_client() -> AsyncIterator[tuple[Emulator, genai.client.AsyncClient]]:
    async with (
        Emulator(provider="google", api_keys={KEY}) as emulator,
        gemini(emulator, timeout=5000) as aio,
    ):
        yield emulator, aio


def tool_config(**kwargs: Any) -> types.GenerateContentConfig:
    return config(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        **kwargs,
    )


def results_turn(calls: list[types.FunctionCall]) -> types.Content:
    parts = [
        types.Part(
            function_response=types.FunctionResponse(
                id=call.id, name=call.name, response={"output": f"sunny in {call.args['city']}"}
            )
        )
        for call in calls
        if call.args
    ]
    return types.Content(role="user", parts=parts)


async def test_function_calls_then_results_with_signatures_echoed(
    tools_client: tuple[Emulator, genai.client.AsyncClient],
) -> None:
    emu, aio = tools_client
    first = await aio.models.generate_content(model=TOOL_MODEL, contents=ASK, config=tool_config())
    calls = first.function_calls
    assert calls is not None
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]
    assert all(c.id for c in calls)
    assert finish_reason(first) == types.FinishReason.STOP
    assert first.candidates and first.candidates[0].content
    model_turn = first.candidates[0].content
    assert model_turn.parts and model_turn.parts[0].thought_signature  # decoded to bytes
    # what the SDK sent for the tools: snake_case inside the declarations, as it dumps them
    sent = emu.requests[-1].json
    assert sent is not None
    assert sent["tools"][0]["functionDeclarations"][0]["parameters_json_schema"]["required"] == [
        "city"
    ]

    history = [types.Content(role="user", parts=[types.Part(text=ASK)]), model_turn]
    second = await aio.models.generate_content(
        model=TOOL_MODEL, contents=[*history, results_turn(calls)], config=tool_config()
    )
    assert second.text == (
        "Tool results: get_weather returned sunny in Oslo; get_weather returned sunny in Lima."
    )
    echoed = emu.requests[-1].json
    assert echoed is not None
    # the signature went back as the SDK encodes bytes: URL-safe base64 under thoughtSignature
    assert echoed["contents"][1]["parts"][0]["thoughtSignature"]


async def test_streamed_function_calls(
    tools_client: tuple[Emulator, genai.client.AsyncClient],
) -> None:
    _, aio = tools_client
    stream = await aio.models.generate_content_stream(
        model=TOOL_MODEL, contents=ASK, config=tool_config()
    )
    chunks = [chunk async for chunk in stream]
    calls = [call for chunk in chunks for call in chunk.function_calls or []]
    assert [c.args for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert finish_reason(chunks[-1]) == types.FinishReason.STOP


async def test_automatic_function_calling_runs_the_loop(
    tools_client: tuple[Emulator, genai.client.AsyncClient],
) -> None:
    emu, aio = tools_client
    seen: list[str] = []

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        seen.append(city)
        return f"windy in {city}"

    response = await aio.models.generate_content(
        model=TOOL_MODEL,
        contents="Weather in Bergen?",
        config=config(tools=[get_weather]),
    )
    assert seen == ["Bergen"]
    assert response.text is not None and "windy in Bergen" in response.text
    assert len(emu.requests) == 2


async def test_missing_signature_on_gemini3_is_googles_400(
    tools_client: tuple[Emulator, genai.client.AsyncClient],
) -> None:
    _, aio = tools_client
    call = types.FunctionCall(name="get_weather", args={"city": "Oslo"})
    contents = [
        types.Content(role="user", parts=[types.Part(text=ASK)]),
        types.Content(role="model", parts=[types.Part(function_call=call)]),
        results_turn([call]),
    ]
    with pytest.raises(errors.ClientError) as caught:
        await aio.models.generate_content(model=TOOL_MODEL, contents=contents, config=tool_config())
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert "missing a thought_signature" in str(caught.value.message)


async def test_model_without_function_calling(
    tools_client: tuple[Emulator, genai.client.AsyncClient],
) -> None:
    _, aio = tools_client
    with pytest.raises(errors.ClientError) as caught:
        await aio.models.generate_content(
            model="gemma-notools-3", contents=ASK, config=tool_config()
        )
    assert caught.value.code == 400
    assert caught.value.message == "Function calling is not enabled for models/gemma-notools-3"
