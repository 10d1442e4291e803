"""Chat Completions read completely and answered in OpenAI's shapes, through the openai SDK:
content parts and images, tools and tool results, tool_choice, response_format, the
parameters carried to every provider, the OpenAI-only ones passed to OpenAI-family instances
only, and the features refused with a 400 naming the field."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
import openai
import pytest

from flyllm.server.openai_chat import OpenAIChat
from flyllm.types import LlmResponse, ToolCall, Usage
from tests.server.conftest import GatewayFactory, Served

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# A 1x1 PNG, built here rather than stored.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def client(served: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0)


def sent(served: Served, provider: str = "openai") -> dict[str, Any]:
    """The body the upstream emulator received last."""
    body = served.emulators[provider].requests[-1].json
    assert isinstance(body, dict)
    return body


async def test_tool_call_round_trip_in_openais_shapes(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    messages: Any = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Lima?"}]},
    ]
    async with client(served) as c:
        first = await c.chat.completions.create(
            model="chat", messages=messages, tools=[WEATHER], tool_choice="auto",
            parallel_tool_calls=True, max_completion_tokens=64, max_tokens=5,
            temperature=0.2, seed=7,
        )  # fmt: skip
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        calls = choice.message.tool_calls or []
        assert [(t.type, t.function.name, json.loads(t.function.arguments))  # type: ignore[union-attr]
                for t in calls] == [("function", "get_weather", {"city": "Oslo"}),
                                    ("function", "get_weather", {"city": "Lima"})]  # fmt: skip
        assert len({t.id for t in calls}) == 2
        upstream = sent(served)
        assert upstream["tools"][0]["function"]["name"] == "get_weather"
        assert upstream["messages"][0] == {"role": "system", "content": "Be brief."}
        assert upstream["temperature"] == 0.2 and upstream["seed"] == 7
        assert upstream["max_completion_tokens"] == 64  # it wins over max_tokens
        results = [
            {"role": "tool", "tool_call_id": t.id, "content": f"sunny in {i}"}
            for i, t in enumerate(calls)
        ]
        history = [*messages, choice.message.model_dump(exclude_none=True), *results]
        second = await c.chat.completions.create(model="chat", messages=history, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert "sunny in 0" in (second.choices[0].message.content or "")
    assert "sunny in 1" in (second.choices[0].message.content or "")
    tool_turns = [m for m in sent(served)["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_turns] == [t.id for t in calls]


async def test_named_and_forbidden_tool_choice(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    messages: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    async with client(served) as c:
        forced = await c.chat.completions.create(
            model="chat", messages=messages, tools=[WEATHER], tool_choice=named
        )
        assert sent(served)["tool_choice"] == named
        assert forced.choices[0].message.tool_calls
        none = await c.chat.completions.create(
            model="chat", messages=messages, tools=[WEATHER], tool_choice="none"
        )
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content


async def test_images_by_data_uri_and_url(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    parts: Any = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": data_uri, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
    ]
    async with client(served) as c:
        answer = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": parts}]
        )
    assert answer.choices[0].message.content
    content = sent(served)["messages"][-1]["content"]
    images = [p["image_url"] for p in content if p["type"] == "image_url"]
    assert images[0]["url"].startswith("data:image/png;base64,")
    assert images[0]["detail"] == "low"
    assert images[1]["url"] == "https://example.test/cat.png"


async def test_json_schema_response_format(gateway: GatewayFactory) -> None:
    served = await gateway("openai")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema,
                                                       "strict": True}}  # fmt: skip
    async with client(served) as c:
        answer = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Where?"}], response_format=fmt
        )
        assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
        assert sent(served)["response_format"]["json_schema"]["name"] == "place"
        await c.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Any JSON"}],
            response_format={"type": "json_object"},
        )
    assert sent(served)["response_format"] == {"type": "json_object"}


async def test_openai_only_fields_reach_openai_instances_only(gateway: GatewayFactory) -> None:
    served = await gateway("openai", "anthropic")
    extras: Any = {"frequency_penalty": 0.5, "user": "u-1", "logit_bias": {"50256": -100}}
    async with client(served) as c:
        for _ in range(4):  # the pool alternates: both instances serve some
            await c.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], **extras
            )
    assert served.emulators["openai"].requests and served.emulators["anthropic"].requests
    assert {k: sent(served)[k] for k in extras} == extras
    anthropic_body = sent(served, "anthropic")
    assert not set(extras) & set(anthropic_body)


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"n": 2}, "n", "one choice"),
        ({"logprobs": True}, "logprobs", "log probabilities"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio", "audio"),
        ({"functions": [{"name": "f"}]}, "functions", "tools"),
        ({"colour": "blue"}, "colour", "unrecognized"),
        ({"temperature": "hot"}, "temperature", "number"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type", "function"),
        ({"response_format": {"type": "yaml"}}, "response_format", "json_schema"),
    ],
)
async def test_what_cannot_be_carried_is_a_400_naming_the_field(
    gateway: GatewayFactory, extra: dict[str, Any], param: str, words: str
) -> None:
    served = await gateway("openai")
    async with client(served) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], extra_body=extra
            )
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert words in caught.value.message
    assert not served.emulators["openai"].requests  # nothing was sent upstream


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
         "messages[0].content[1]"),
        ({"type": "file", "file": {"file_id": "f-1"}}, "messages[0].content[1]"),
        ({"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
         "messages[0].content[1].image_url.url"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}},
         "messages[0].content[1].image_url.url"),
    ],
)  # fmt: skip
async def test_parts_that_cannot_be_carried_are_named(
    gateway: GatewayFactory, part: dict[str, Any], param: str
) -> None:
    served = await gateway("openai")
    content: Any = [{"type": "text", "text": "listen"}, part]
    async with client(served) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": content}]
            )
    assert caught.value.param == param


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
async def test_streamed_tool_calls_in_openais_delta_shape(
    gateway: GatewayFactory, provider: str
) -> None:
    """Fragments (OpenAI, Anthropic's partial JSON) and whole calls (Gemini) alike."""
    served = await gateway(provider)
    async with client(served) as c:
        stream = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Weather in Oslo and Lima?"}],
            tools=[WEATHER], stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        deltas, finish, usage = [], None, None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                deltas += choice.delta.tool_calls or []
                finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens > 0
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        if d.id is not None:  # a call's first piece: id, type and name
            assert d.index not in calls and d.type == "function" and d.function
            calls[d.index] = {"id": d.id, "name": d.function.name or "", "args": ""}
        calls[d.index]["args"] += (d.function and d.function.arguments) or ""
    assert [(c["name"], json.loads(c["args"])) for c in calls.values()] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Lima"}),
    ]


def test_answers_render_tool_calls_usage_and_finish_reasons_in_openais_shape() -> None:
    call = OpenAIChat().parse({"model": "alias", "messages": [{"role": "user", "content": "x"}]})
    calls = (ToolCall("call_1", "f", {"a": 1}), ToolCall("call_2", "g", raw_arguments="{oops"))
    usage = Usage(10, 5, 15, cached_tokens=4)
    answer = LlmResponse("", True, "anthropic", "m", 0, usage, "tool_calls", tool_calls=calls)
    out = OpenAIChat().render(call, answer, "r1")
    message = out["choices"][0]["message"]
    assert out["model"] == "alias" and out["id"] == "chatcmpl-r1"
    assert message["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{oops"}},
    ]
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}
    for flyllm_reason, openai_reason in [("length", "length"), ("other", "stop"),
                                         ("content_filter", "content_filter")]:  # fmt: skip
        text = LlmResponse("t", True, finish_reason=flyllm_reason)  # type: ignore[arg-type]
        assert OpenAIChat().render(call, text, "r")["choices"][0]["finish_reason"] == openai_reason


async def test_hostile_nesting_ends_quickly(gateway: GatewayFactory) -> None:
    """A body nested past the JSON decoder's depth is a 400; tool-call arguments nested too
    deep to decode are kept as the raw text the model sent, and the request is served."""
    served = await gateway("openai")
    arguments = "[" * 100_000 + "]" * 100_000
    call: Any = {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": arguments}}  # fmt: skip
    turns: Any = [{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "tool_calls": [call]},
                  {"role": "tool", "tool_call_id": "c1", "content": "snow"}]  # fmt: skip
    nested = '{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "metadata": '
    nested += '{"a": ' * 100_000 + "{}" + "}" * 100_000 + "}"
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        url = served.url + "/v1/chat/completions"
        async with session.post(url, data=nested) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["message"] == "the request body is not valid JSON"
        body = {"model": "chat", "messages": turns, "tools": [WEATHER]}
        async with session.post(url, json=body) as resp:
            assert resp.status == 200, await resp.text()
    assert time.perf_counter() - started < 5
    sent_call = sent(served)["messages"][1]["tool_calls"][0]
    assert sent_call["function"]["arguments"] == arguments
