"""``POST /v1/messages`` on the wire: Anthropic's exact stream event sequence, the version
header, ``x-api-key``, stop sequences, thinking blocks kept for Anthropic and count_tokens."""

from __future__ import annotations

import json
import secrets
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam, ThinkingConfigParam, ToolParam, ToolResultBlockParam

from flyllm.server import GatewaySettings, KeyRing, VirtualKey, hash_key
from tests.server.conftest import GatewayFactory, Served

V2023 = {"anthropic-version": "2023-06-01"}
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]},
}  # fmt: skip


async def post(
    served: Served, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` to /v1/messages: (status, headers, raw body)."""
    url, sent = served.url + "/v1/messages", V2023 if headers is None else headers
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=sent) as r:
        return r.status, dict(r.headers), await r.read()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of an SSE body; each event's name matches its data's type."""
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame:
            continue
        head, data = frame.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        decoded = json.loads(data[6:])
        assert decoded["type"] == head[7:]
        out.append((head[7:], decoded))
    return out


def ask(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": text}],
            **fields}  # fmt: skip


async def test_a_text_stream_is_anthropics_event_sequence(gateway: GatewayFactory) -> None:
    served = await gateway("openai")  # OpenAI reports usage only in its last chunk
    status, headers, raw = await post(served, ask("hello there", stream=True))
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    seq = events(raw)
    names = [name for name, _ in seq]
    deltas = names.count("content_block_delta")
    assert deltas > 1
    assert names == ["message_start", "content_block_start", "ping",
                     *["content_block_delta"] * deltas,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    start = seq[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == []
    assert start["stop_reason"] is None and start["usage"]["output_tokens"] == 0
    assert seq[1][1] == {"type": "content_block_start", "index": 0,
                         "content_block": {"type": "text", "text": ""}}  # fmt: skip
    assert {d["delta"]["type"] for _, d in seq[3:-3]} == {"text_delta"}
    end = seq[-2][1]
    assert end["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert end["usage"]["input_tokens"] > 0 and end["usage"]["output_tokens"] == deltas


async def test_final_usage_holds_input_tokens_reported_only_at_the_end(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("openai")
    messages: list[MessageParam] = [{"role": "user", "content": "count these words please"}]
    async with anthropic.AsyncAnthropic(base_url=served.url, api_key="x", max_retries=0) as c:
        plain = await c.messages.create(model="chat", max_tokens=50, messages=messages)
        async with c.messages.stream(model="chat", max_tokens=50, messages=messages) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_message()
    # The emulator counts words + 3 per message: the same count, only told at the end.
    assert final.usage.input_tokens == plain.usage.input_tokens == 4 + 3
    assert final.usage.output_tokens == plain.usage.output_tokens


async def test_a_tool_stream_sends_input_json_deltas(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    body = ask("weather in Oslo?", stream=True, tools=[WEATHER], tool_choice={"type": "any"})
    _, _, raw = await post(served, body)
    seq = events(raw)
    starts = [d for name, d in seq if name == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    block = starts[0]["content_block"]
    assert block["name"] == "get_weather" and block["input"] == {}
    pieces = [d["delta"] for name, d in seq if name == "content_block_delta"]
    assert {p["type"] for p in pieces} == {"input_json_delta"}
    assert json.loads("".join(p["partial_json"] for p in pieces)) == {"city": "Oslo"}
    assert seq[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"anthropic-version": "2024-13-01"}, 400),
        ({"anthropic-version": "2023-01-01"}, 200),
        ({"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"}, 200),
    ],
)
async def test_the_version_header_is_required_and_checked(
    gateway: GatewayFactory, headers: dict[str, str], status: int
) -> None:
    served = await gateway("openai")
    got, answer_headers, raw = await post(served, ask("hi"), headers)
    assert got == status and answer_headers["request-id"]
    body = json.loads(raw)
    if status == 400:
        assert body["error"]["type"] == "invalid_request_error"
        assert "anthropic-version" in body["error"]["message"]
    else:
        assert body["type"] == "message"
    assert served.emulators["openai"].stats()["requests"] == (1 if status == 200 else 0)


async def test_x_api_key_is_accepted(gateway: GatewayFactory) -> None:
    key = "fk-test-" + secrets.token_hex(8)
    ring = KeyRing([VirtualKey(name="k", sha256=hash_key(key))])
    served = await gateway("openai", settings=GatewaySettings(keys=ring))
    status, _, _ = await post(served, ask("hi"), {**V2023, "x-api-key": key})
    refused, _, raw = await post(served, ask("hi"), {**V2023, "x-api-key": key + "x"})
    assert status == 200 and refused == 401 and key.encode() not in raw


async def test_a_stop_sequence_is_reported_when_the_upstream_says_so(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("anthropic")
    _, _, raw = await post(served, ask("hello"))
    second_word = json.loads(raw)["content"][0]["text"].split()[1]
    _, _, stopped = await post(served, ask("hello", stop_sequences=[second_word]))
    answer = json.loads(stopped)
    assert answer["stop_reason"] == "stop_sequence" and answer["stop_sequence"] == second_word
    _, _, streamed = await post(served, ask("hello", stop_sequences=[second_word], stream=True))
    assert events(streamed)[-2][1]["delta"] == {
        "stop_reason": "stop_sequence", "stop_sequence": second_word
    }  # fmt: skip


async def test_thinking_blocks_go_back_to_anthropic(gateway: GatewayFactory) -> None:
    served = await gateway("anthropic")
    thinking: ThinkingConfigParam = {"type": "enabled", "budget_tokens": 1024}
    question: list[MessageParam] = [{"role": "user", "content": "weather in Oslo?"}]
    async with anthropic.AsyncAnthropic(base_url=served.url, api_key="x", max_retries=0) as c:
        plain = await c.messages.create(
            model="chat", max_tokens=2048, messages=question, tools=[WEATHER], thinking=thinking
        )
        async with c.messages.stream(
            model="chat", max_tokens=2048, messages=question, tools=[WEATHER], thinking=thinking
        ) as stream:
            final = await stream.get_final_message()
        assert plain.content[0].type == "thinking" and plain.content[0].signature
        assert {b.type for b in final.content} == {"thinking", "tool_use"}
        results: list[ToolResultBlockParam] = [
            {"type": "tool_result", "tool_use_id": b.id, "content": "12 C"}
            for b in final.content if b.type == "tool_use"
        ]  # fmt: skip
        answer = await c.messages.create(
            model="chat", max_tokens=2048, tools=[WEATHER], thinking=thinking,
            messages=[*question, final.to_param(), {"role": "user", "content": results}],
        )  # fmt: skip
    # The emulator checks the thinking blocks' signatures: they came back unchanged.
    assert answer.content[-1].type == "text" and "12 C" in answer.content[-1].text
    sent = served.emulators["anthropic"].requests[-1].json
    assert sent is not None and sent["thinking"] == thinking
    assert sent["messages"][1]["content"][0]["type"] == "thinking"  # first, as Anthropic wants


async def test_count_tokens_is_an_estimate_behind_the_same_checks(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("openai")
    messages: list[MessageParam] = [{"role": "user", "content": "x" * 400}]
    async with anthropic.AsyncAnthropic(base_url=served.url, api_key="x", max_retries=0) as c:
        counted = await c.messages.count_tokens(model="chat", messages=messages)
        with_tool = await c.messages.count_tokens(model="chat", messages=messages, tools=[WEATHER])
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.count_tokens(model="nope", messages=messages)
    assert 100 <= counted.input_tokens <= 110
    assert with_tool.input_tokens > counted.input_tokens
    assert served.emulators["openai"].stats()["requests"] == 0


PNG_B64 = "iVBORw0KGgoAAAAAAAAAAAAAAAAAAAAA"  # a PNG signature and zeros
DEEP_CALL = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [[[[[[[[1]]]]]]]]}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"temperature": "hot"}, 400),
        ({"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}, 400),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": 5, "data": PNG_B64}}]}]}, 400),
        ({"messages": DEEP_CALL}, 200),
    ],
)  # fmt: skip
async def test_hostile_values_end_in_a_400_not_a_500(
    gateway: GatewayFactory, fields: dict[str, Any], status: int
) -> None:
    served = await gateway("openai")
    got, _, raw = await post(served, {**ask("hi"), **fields})
    assert got == status, raw
    if status == 400:
        assert json.loads(raw)["error"]["type"] == "invalid_request_error"


async def test_output_config_format_is_structured_output_on_any_provider(
    gateway: GatewayFactory,
) -> None:
    served = await gateway("gemini")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}  # fmt: skip
    fields = {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
    status, _, raw = await post(served, ask("a number please", **fields))
    assert status == 200, raw
    assert set(json.loads(json.loads(raw)["content"][0]["text"])) == {"n"}
    sent = served.emulators["gemini"].requests[-1].json
    assert sent is not None and sent["generationConfig"]["responseMimeType"] == "application/json"
