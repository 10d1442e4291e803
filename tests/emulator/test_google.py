"""Gemini generateContent / streamGenerateContent on the wire, under /v1 and /v1beta."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from flyllm.emulator import Emulator, generate_text
from tests.emulator.conftest import post, sse_data

KEY = "AIza-good"
AUTH = {"x-goog-api-key": KEY}
MODEL = "gemini-2.5-flash"


def request(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator("gemini", api_keys={KEY}, models={MODEL}, seed=9) as instance:
        yield instance


def url(emu: Emulator, version: str = "v1", stream: bool = False, model: str = MODEL) -> str:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{emu.base_url}/{version}/models/{model}:{action}"


def status_of(raw: bytes) -> dict[str, Any]:
    body = json.loads(raw)
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    return error


async def test_alias_and_base_url(emu: Emulator) -> None:
    assert emu.provider == "google" and emu.base_url == emu.url


@pytest.mark.parametrize("version", ["v1", "v1beta"])
async def test_non_stream_answer_shape(
    emu: Emulator, session: aiohttp.ClientSession, version: str
) -> None:
    body = request(systemInstruction={"parts": [{"text": "Be brief."}]})
    status, response, raw = await post(session, url(emu, version), body, AUTH)
    assert status == 200 and response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert raw.startswith(b'{\n  "candidates": [\n')
    data = json.loads(raw)
    text = " ".join(generate_text("Hello there", seed=9))
    (candidate,) = data["candidates"]
    assert candidate == {
        "content": {"parts": [{"text": text}], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }
    usage = data["usageMetadata"]
    assert usage["promptTokenCount"] == (2 + 3) + (2 + 3)
    assert usage["candidatesTokenCount"] == len(text.split())
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert data["modelVersion"] == MODEL and data["responseId"]
    assert "request-id" not in response.headers and "x-request-id" not in response.headers
    assert emu.stats()["by_route"] == {f"/{version}/models/{{model}}:generateContent": 1}


async def test_stream_framing_is_crlf_and_ends_at_eof(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, response, raw = await post(session, url(emu, stream=True), request(), AUTH)
    assert status == 200 and response.headers["Content-Type"] == "text/event-stream"
    events = raw.split(b"\r\n\r\n")
    assert events[-1] == b"" and all(
        e.startswith(b"data: {") and b"\n" not in e for e in events[:-1]
    )
    assert b"[DONE]" not in raw
    first = events[0].decode()
    assert first.startswith('data: {"candidates": [{"content": {"parts": [{"text": "t')
    assert (
        '"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,'
        '"candidatesTokenCount": 1,' in first
    )
    chunks = sse_data(raw, b"\r\n\r\n")
    words = generate_text("Hello there", seed=9)
    assert len(chunks) == len(words) + 1
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == [*range(1, len(words) + 1), len(words)]
    assert "".join(
        c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks[:-1]
    ) == " ".join(words)
    assert chunks[-1]["candidates"][0] == {
        "content": {"role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }
    assert len({c["responseId"] for c in chunks}) == 1


async def test_stream_without_alt_sse_is_a_json_array(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    target = f"{emu.base_url}/v1beta/models/{MODEL}:streamGenerateContent"
    status, response, raw = await post(session, target, request(), AUTH)
    assert status == 200 and response.content_type == "application/json"
    chunks = json.loads(raw)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and len(chunks) > 2


async def test_max_tokens_stop_sequences_and_snake_case(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    words = generate_text("Hello there", seed=9)
    _, _, raw = await post(
        session, url(emu), request(generationConfig={"maxOutputTokens": 2}), AUTH
    )
    data = json.loads(raw)
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert data["usageMetadata"]["candidatesTokenCount"] == 2
    body = request(
        system_instruction={"parts": [{"text": "one two"}]},
        generation_config={"stop_sequences": [words[2]]},
    )
    _, _, raw = await post(session, url(emu), body, AUTH)
    data = json.loads(raw)
    assert data["candidates"][0]["finishReason"] == "STOP"
    assert data["candidates"][0]["content"]["parts"][0]["text"] == " ".join(words[:2]) + " "
    assert data["usageMetadata"]["candidatesTokenCount"] == 2
    assert data["usageMetadata"]["promptTokenCount"] == 5 + 5


async def test_auth_header_query_missing_and_wrong(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    assert (await post(session, url(emu) + f"?key={KEY}", request()))[0] == 200
    status, _, raw = await post(session, url(emu), request())
    assert status == 403 and status_of(raw)["status"] == "PERMISSION_DENIED"
    status, _, raw = await post(session, url(emu), request(), {"x-goog-api-key": "bad"})
    error = status_of(raw)
    assert status == 400 and error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    status, _, _ = await post(session, url(emu) + "?key=bad", request())
    assert status == 400


async def test_validation_errors(emu: Emulator, session: aiohttp.ClientSession) -> None:
    assistant = {"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]}
    status, _, raw = await post(session, url(emu), assistant, AUTH)
    assert status == 400 and status_of(raw)["message"] == "Please use a valid role: user, model."
    status, _, raw = await post(session, url(emu), {"contents": []}, AUTH)
    assert status == 400 and "contents is not specified" in status_of(raw)["message"]
    status, _, raw = await post(session, url(emu), b"{oops", AUTH)
    error = status_of(raw)
    assert (
        status == 400
        and error["status"] == "INVALID_ARGUMENT"
        and "Invalid JSON payload" in error["message"]
    )


async def test_unknown_model_and_method(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu, "v1beta", model="gemini-0"), request(), AUTH)
    error = status_of(raw)
    assert status == 404 and error["status"] == "NOT_FOUND"
    assert error["message"].startswith("models/gemini-0 is not found for API version v1beta")
    status, _, _ = await post(
        session, f"{emu.base_url}/v1/models/{MODEL}:countTokens", request(), AUTH
    )
    assert status == 404
    status, _, _ = await post(
        session, f"{emu.base_url}/v2/models/{MODEL}:generateContent", request(), AUTH
    )
    assert status == 404


async def test_blocked_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), request("[[blocked]]"), AUTH)
    data = json.loads(raw)
    assert status == 200 and "candidates" not in data
    assert data["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidatesTokenCount" not in data["usageMetadata"]
    _, _, raw = await post(session, url(emu, stream=True), request("[[blocked]]"), AUTH)
    (chunk,) = sse_data(raw, b"\r\n\r\n")
    assert chunk["promptFeedback"]["blockReason"] == "SAFETY"


async def test_refusal_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    _, _, raw = await post(session, url(emu), request("[[refusal]]"), AUTH)
    (candidate,) = json.loads(raw)["candidates"]
    assert candidate["finishReason"] == "SAFETY" and "content" not in candidate
    _, _, raw = await post(session, url(emu, stream=True), request("[[refusal]]"), AUTH)
    assert sse_data(raw, b"\r\n\r\n")[-1]["candidates"][0]["finishReason"] == "SAFETY"


async def test_context_length_trigger(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, _, raw = await post(session, url(emu), request("[[context_length]]"), AUTH)
    error = status_of(raw)
    assert status == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"].endswith("exceeds the maximum number of tokens allowed (1048576).")
    assert error["message"].startswith("The input token count (")


async def test_stream_exact_bytes(session: aiohttp.ClientSession) -> None:
    async with Emulator("google", reply_tokens=2, seed=1) as emu:
        _, _, raw = await post(session, url(emu, stream=True), request("Hi"), AUTH)
    found = re.search(rb'"responseId": "([A-Za-z0-9]+)"', raw)
    assert found is not None
    tag, word = generate_text("Hi", seed=1, n_tokens=2)
    tail = f'"modelVersion": "{MODEL}","responseId": "{found.group(1).decode()}"}}\r\n\r\n'

    def usage(n: int) -> str:
        return (
            f'"usageMetadata": {{"promptTokenCount": 4,"candidatesTokenCount": {n},'
            f'"totalTokenCount": {4 + n},'
            '"promptTokensDetails": [{"modality": "TEXT","tokenCount": 4}]},'
        )

    def text_chunk(text: str) -> str:
        parts = f'{{"parts": [{{"text": "{text}"}}],"role": "model"}}'
        return f'data: {{"candidates": [{{"content": {parts},"index": 0}}],'

    final = (
        'data: {"candidates": [{"content": {"role": "model"},"finishReason": "STOP","index": 0}],'
    )
    expected = (
        text_chunk(tag)
        + usage(1)
        + tail
        + text_chunk(" " + word)
        + usage(2)
        + tail
        + final
        + usage(2)
        + tail
    )
    assert raw.decode() == expected


# -- tools -------------------------------------------------------------------------------------

WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "parametersJsonSchema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
ASK = {"role": "user", "parts": [{"text": "Weather in Oslo and Lima?"}]}


@pytest.fixture
async def any_model() -> AsyncIterator[Emulator]:
    async with Emulator("gemini", api_keys={KEY}) as instance:
        yield instance


def tool_request(*contents: Any, **extra: Any) -> dict[str, Any]:
    return {"contents": list(contents), "tools": [{"functionDeclarations": [WEATHER]}], **extra}


def calls_of(raw: bytes) -> list[dict[str, Any]]:
    (candidate,) = json.loads(raw)["candidates"]
    assert candidate["finishReason"] == "STOP"
    return [p for p in candidate["content"]["parts"] if "functionCall" in p]


def model_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


def call_part(city: str, signature: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"name": "get_weather", "args": {"city": city}}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def result_part(output: str, key: str = "output") -> dict[str, Any]:
    return {"functionResponse": {"name": "get_weather", "response": {key: output}}}


async def test_calls_without_ids_or_signatures_on_older_models(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, _, raw = await post(session, url(emu), tool_request(ASK), AUTH)
    assert status == 200
    assert calls_of(raw) == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Lima"}}},
    ]


async def test_gemini3_calls_have_ids_and_a_signature_on_the_first(
    any_model: Emulator, session: aiohttp.ClientSession
) -> None:
    target = url(any_model, model="gemini-3-pro-preview")
    status, _, raw = await post(session, target, tool_request(ASK), AUTH)
    assert status == 200
    first, second = calls_of(raw)
    assert first["functionCall"]["id"] and second["functionCall"]["id"]
    assert first["functionCall"]["id"] != second["functionCall"]["id"]
    assert base64.b64decode(first["thoughtSignature"])
    assert "thoughtSignature" not in second


async def test_snake_case_openapi_parameters_and_a_named_tool(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    clock = {
        "name": "count_days",
        "parameters": {"type": "OBJECT", "properties": {"days": {"type": "INTEGER"}}},
    }
    weather = {"name": "get_weather", "parameters_json_schema": WEATHER["parametersJsonSchema"]}
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Weather in 3 days?"}]}],
        "tools": [{"function_declarations": [weather, clock]}],
        "tool_config": {
            "function_calling_config": {"mode": "ANY", "allowed_function_names": ["count_days"]}
        },
    }
    status, _, raw = await post(session, url(emu), body, AUTH)
    assert status == 200
    assert calls_of(raw) == [{"functionCall": {"name": "count_days", "args": {"days": 3}}}]


@pytest.mark.parametrize(("mode", "called"), [("NONE", False), ("AUTO", True), ("ANY", True)])
async def test_modes(
    emu: Emulator, session: aiohttp.ClientSession, mode: str, called: bool
) -> None:
    body = tool_request(ASK, toolConfig={"functionCallingConfig": {"mode": mode}})
    status, _, raw = await post(session, url(emu), body, AUTH)
    assert status == 200
    assert bool(calls_of(raw)) is called


async def test_results_are_quoted_in_the_answer(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    results = {"role": "user", "parts": [result_part("12 C"), result_part("no city", "error")]}
    body = tool_request(ASK, model_turn(call_part("Oslo"), call_part("Lima")), results)
    for stream in (False, True):
        status, _, raw = await post(session, url(emu, stream=stream), body, AUTH)
        assert status == 200
        answers = sse_data(raw, b"\r\n\r\n") if stream else [json.loads(raw)]
        text = "".join(
            part["text"]
            for answer in answers
            for part in answer["candidates"][0]["content"].get("parts", [])
        )
        assert text == "Tool results: get_weather returned 12 C; get_weather failed with no city."


async def test_gemini3_signature_rule(any_model: Emulator, session: aiohttp.ClientSession) -> None:
    target = url(any_model, model="gemini-3-flash-preview")
    results = {"role": "user", "parts": [result_part("12 C"), result_part("20 C")]}
    unsigned = tool_request(ASK, model_turn(call_part("Oslo"), call_part("Lima")), results)
    status, _, raw = await post(session, target, unsigned, AUTH)
    assert status == 400
    error = status_of(raw)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith(
        "Function call is missing a thought_signature in functionCall parts."
    )
    assert "`default_api:get_weather` , position 2." in error["message"]
    # the documented dummy (and any base64) on the first call of the step is enough
    for signature in ("skip_thought_signature_validator", "CiwBAdHtim9-_w"):
        signed = tool_request(
            ASK, model_turn(call_part("Oslo", signature), call_part("Lima")), results
        )
        status, _, raw = await post(session, target, signed, AUTH)
        assert status == 200, raw
    # earlier turns are not checked: a new user text starts a new turn
    earlier = tool_request(
        ASK,
        model_turn(call_part("Oslo"), call_part("Lima")),
        results,
        model_turn({"text": "ok"}),
        ASK,
    )
    status, _, raw = await post(session, target, earlier, AUTH)
    assert status == 200, raw
    # older models do not check
    status, _, raw = await post(session, url(any_model), unsigned, AUTH)
    assert status == 200


BAD_TOOL_REQUESTS = {
    "signature not base64": (
        tool_request(
            ASK,
            model_turn(call_part("Oslo", "not base64!")),
            {"role": "user", "parts": [result_part("1")]},
        ),
        "Base64 decoding failed",
    ),
    "fewer responses than calls": (
        tool_request(
            ASK,
            model_turn(call_part("Oslo"), call_part("Lima")),
            {"role": "user", "parts": [result_part("1")]},
        ),
        "number of function response parts is equal to the number of function call parts",
    ),
    "response without a call turn": (
        tool_request(ASK, {"role": "user", "parts": [result_part("1")]}),
        "function response turn comes immediately after a function call turn",
    ),
    "response not an object": (
        tool_request(
            ASK,
            model_turn(call_part("Oslo")),
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "get_weather", "response": "12 C"}}],
            },
        ),
        "function_response.response",
    ),
    "response without a name": (
        tool_request(
            ASK,
            model_turn(call_part("Oslo")),
            {"role": "user", "parts": [{"functionResponse": {"response": {"output": "1"}}}]},
        ),
        "Name cannot be empty",
    ),
    "args not an object": (
        tool_request(ASK, model_turn({"functionCall": {"name": "get_weather", "args": [1]}})),
        "function_call.args",
    ),
    "unknown mode": (
        tool_request(ASK, toolConfig={"functionCallingConfig": {"mode": "SOMETIMES"}}),
        "function_calling_config.mode",
    ),
    "declaration without a name": (
        {"contents": [ASK], "tools": [{"functionDeclarations": [{"description": "x"}]}]},
        "Name cannot be empty",
    ),
    "both parameter forms": (
        {
            "contents": [ASK],
            "tools": [{"functionDeclarations": [WEATHER | {"parameters": {"type": "OBJECT"}}]}],
        },
        "mutually exclusive",
    ),
}


@pytest.mark.parametrize(
    ("body", "message"), BAD_TOOL_REQUESTS.values(), ids=BAD_TOOL_REQUESTS.keys()
)
async def test_tool_validation_errors(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], message: str
) -> None:
    status, _, raw = await post(session, url(emu), body, AUTH)
    assert status == 400
    error = status_of(raw)
    assert error["status"] == "INVALID_ARGUMENT" and message in error["message"]


async def test_stream_sends_calls_whole_in_one_chunk(
    any_model: Emulator, session: aiohttp.ClientSession
) -> None:
    target = url(any_model, stream=True, model="gemini-3-flash-preview")
    status, _, raw = await post(session, target, tool_request(ASK), AUTH)
    assert status == 200
    chunks = sse_data(raw, b"\r\n\r\n")
    assert len(chunks) == 2
    parts = chunks[0]["candidates"][0]["content"]["parts"]
    assert [p["functionCall"]["args"] for p in parts] == [{"city": "Oslo"}, {"city": "Lima"}]
    assert "thoughtSignature" in parts[0]
    assert chunks[1]["candidates"][0]["finishReason"] == "STOP"


async def test_model_without_tools(any_model: Emulator, session: aiohttp.ClientSession) -> None:
    target = url(any_model, model="gemma-notools-3")
    status, _, raw = await post(session, target, tool_request(ASK), AUTH)
    assert status == 400
    assert status_of(raw) == {
        "code": 400,
        "message": "Function calling is not enabled for models/gemma-notools-3",
        "status": "INVALID_ARGUMENT",
    }


async def test_gemini3_text_answers_are_signed(
    any_model: Emulator, session: aiohttp.ClientSession
) -> None:
    body = request("Tell me a story")
    status, _, raw = await post(session, url(any_model, model="gemini-3-pro-preview"), body, AUTH)
    assert status == 200
    (part,) = json.loads(raw)["candidates"][0]["content"]["parts"]
    assert part["text"] and base64.b64decode(part["thoughtSignature"])
    target = url(any_model, stream=True, model="gemini-3-pro-preview")
    status, _, raw = await post(session, target, body, AUTH)
    *_, last = sse_data(raw, b"\r\n\r\n")
    (part,) = last["candidates"][0]["content"]["parts"]
    assert part["text"] == "" and base64.b64decode(part["thoughtSignature"])
    # older models sign nothing
    status, _, raw = await post(session, url(any_model), body, AUTH)
    assert b"thoughtSignature" not in raw


async def test_snake_case_calls_responses_and_url_safe_signatures(
    any_model: Emulator, session: aiohttp.ClientSession
) -> None:
    signature = base64.urlsafe_b64encode(b"\xfb\xff\xfe signed").decode()
    assert "-" in signature or "_" in signature
    call = {"function_call": {"name": "get_weather", "args": {"city": "Oslo"}}}
    response = {"function_response": {"name": "get_weather", "response": {"output": "9 C"}}}
    body = tool_request(
        ASK,
        model_turn(call | {"thought_signature": signature}),
        {"role": "user", "parts": [response]},
    )
    target = url(any_model, model="gemini-3-pro-preview")
    status, _, raw = await post(session, target, body, AUTH)
    assert status == 200, raw
    (part,) = json.loads(raw)["candidates"][0]["content"]["parts"]
    assert part["text"] == "Tool results: get_weather returned 9 C."
    unsigned = tool_request(ASK, model_turn(call), {"role": "user", "parts": [response]})
    status, _, raw = await post(session, target, unsigned, AUTH)
    assert status == 400 and "thought_signature" in status_of(raw)["message"]
