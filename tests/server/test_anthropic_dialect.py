"""The Anthropic dialect on its own (pure, no server): request bodies read into flyllm's
types, every unreadable shape a 400 naming its field, answers rendered in Anthropic's shapes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from flyllm.server.anthropic_messages import AnthropicMessages, estimate_tokens
from flyllm.server.anthropic_render import stop_reason, tool_use_id, usage
from flyllm.server.dialect import Call
from flyllm.server.errors import GatewayError
from flyllm.types import GenerationRequest, Image, LlmResponse, Message, ToolCall, Usage

DIALECT = AnthropicMessages()
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
BY_STOP = {"provider": "anthropic", "raw_finish_reason": "stop_sequence"}
THOUGHT = {"type": "thinking", "thinking": "hmm", "signature": "c2ln"}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    turns = list(messages) or [{"role": "user", "content": "hi"}]
    return {"model": "chat", "max_tokens": 64, "messages": turns, **fields}


def refused(raw: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        DIALECT.parse(raw)
    assert caught.value.status == 400 and caught.value.kind == "invalid_request"
    return caught.value


def test_a_plain_request_reads_into_flyllm_types() -> None:
    call = DIALECT.parse(body(
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "be kind"}],
        stop_sequences=["END"], temperature=0.5, top_p=0.9, top_k=5, stream=True,
        metadata={"user_id": "u1"},
    ))  # fmt: skip
    request = call.request
    assert call.model == "chat" and call.stream and call.echo == {"stop_sequences": ["END"]}
    assert request.system == "be brief\nbe kind"
    assert request.messages == [Message("user", "hi")]
    assert request.params == {"temperature": 0.5, "top_p": 0.9, "top_k": 5, "max_tokens": 64,
                              "stop": ["END"]}  # fmt: skip
    assert request.provider_params is None and request.tools is None


def test_blocks_read_into_turns_with_tool_results_first() -> None:
    encoded = base64.b64encode(PNG).decode()
    call = DIALECT.parse(body(
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": encoded}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        ]},
        {"role": "assistant", "content": [
            THOUGHT, {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "and?"},
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "bad"}, {"type": "text", "text": "input"},
                         {"type": "image", "source": {"type": "base64", "data": encoded}}]},
        ]},
    ))  # fmt: skip
    user, assistant, result, follow = call.request.messages or []
    assert user.parts == (
        "look",
        Image.from_bytes(PNG),
        Image.from_url("https://example.com/a.png"),
    )
    assert assistant.content == "calling"
    assert assistant.tool_calls == (ToolCall("toolu_1", "f", {"a": 1}),)
    assert assistant.provider_data == {"anthropic": {"thinking_blocks": [THOUGHT]}}
    assert result == Message.tool_result("toolu_1", "bad\ninput", is_error=True)
    assert follow.parts == ("and?", Image.from_bytes(PNG))


def test_tools_choice_thinking_and_output_format() -> None:
    tool = {"name": "f", "description": "does f", "input_schema": {"type": "object"}}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = DIALECT.parse(body(
        tools=[tool, {**tool, "name": "g", "type": "custom"}],
        tool_choice={"type": "tool", "name": "g", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 1024},
        output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"},
    ))  # fmt: skip
    request = call.request
    assert [t.name for t in request.tools or ()] == ["f", "g"]
    assert request.tools and request.tools[0].parameters == {"type": "object"}
    assert request.tool_choice == "g" and request.parallel_tool_calls is False
    assert request.provider_params == {
        "anthropic": {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    }
    assert request.response_format is not None and request.response_format.schema == schema
    for kind, choice in (("auto", "auto"), ("any", "required"), ("none", "none")):
        read = DIALECT.parse(body(tools=[tool], tool_choice={"type": kind})).request
        assert (read.tool_choice, read.parallel_tool_calls) == (choice, None)


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ([], "JSON object"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        (body(max_tokens=None), "max_tokens"),
        (body(max_tokens=0), "max_tokens"),
        (body(max_tokens=True), "max_tokens"),
        (body(stream="yes"), "stream"),
        ({**body(), "messages": []}, "messages"),
        (body({"role": "system", "content": "x"}), "messages[0]"),
        (body({"role": "user", "content": 5}), "messages[0].content"),
        (body({"role": "user", "content": [{"type": "document", "source": {}}]}), "'document'"),
        (
            body(
                {
                    "role": "user",
                    "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                }
            ),
            "Files API",
        ),
        (
            body(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "%%%"},
                        }
                    ],
                }
            ),
            "source",
        ),
        (
            body(
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/jpeg",
                                "data": base64.b64encode(PNG).decode(),
                            },
                        }
                    ],
                }
            ),
            "image/png",
        ),
        (body({"role": "user", "content": [{"type": "tool_result"}]}), "tool_use_id"),
        (
            body(
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}],
                }
            ),
            "is_error",
        ),
        (
            body(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}],
                }
            ),
            "input",
        ),
        (body({"role": "assistant", "content": [{"type": "server_tool_use"}]}), "server_tool_use"),
        (body({"role": "user", "content": [{"text": "no type"}]}), "content[0]"),
        (body(system=5), "system"),
        (body(system=[{"type": "image"}]), "system[0]"),
        (body(stop_sequences="END"), "stop_sequences"),
        (body(tools=[{"type": "bash_20250124", "name": "bash"}]), "bash_20250124"),
        (body(tools=[{"name": "f"}]), "input_schema"),
        (body(tool_choice={"type": "auto"}), "'tools'"),
        (body(tools=[{"name": "f", "input_schema": {}}], tool_choice={"type": "tool"}), "name"),
        (
            body(tools=[{"name": "f", "input_schema": {}}], tool_choice={"type": "maybe"}),
            "tool_choice",
        ),
        (body(thinking="on"), "thinking"),
        (body(output_config={"format": {"type": "regex"}}), "output_config"),
        (body(mcp_servers=[{"url": "https://example.com"}]), "mcp_servers"),
        (body(container="c1"), "container"),
    ],
)
def test_unreadable_requests_are_400s_that_name_the_field(raw: Any, names: str) -> None:
    assert names in refused(raw).message


def test_the_version_header() -> None:
    for ok in ("2023-01-01", "2023-06-01", "2026-10-21"):
        assert DIALECT.check_headers({"anthropic-version": ok}) is None
    missing = DIALECT.check_headers({})
    wrong = DIALECT.check_headers({"anthropic-version": "x" * 500})
    assert missing is not None and "required" in missing.message
    assert wrong is not None and wrong.status == 400 and len(wrong.message) < 200


def answer(**fields: Any) -> LlmResponse:
    fields = {"provider": "openai", "finish_reason": "stop", **fields}
    return LlmResponse(fields.pop("content", "hi"), True, **fields)


def call_with(stops: list[str] | None = None) -> Call:
    echo = {"stop_sequences": stops} if stops else {}
    return Call(GenerationRequest(prompt="x"), "chat", echo=echo)


def test_a_whole_answer_in_anthropics_shape() -> None:
    calls = (ToolCall("call_1", "f", {"a": 1}), ToolCall("fc.7/x", "g"))
    thinking = {"anthropic": {"thinking_blocks": [THOUGHT, {"type": "other"}]}}
    rendered = DIALECT.render(
        call_with(), answer(tool_calls=calls, finish_reason="tool_calls", provider_data=thinking,
                            usage=Usage(10, 5, 15, 4)), "abc",
    )  # fmt: skip
    assert rendered == {
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "chat",
        "content": [
            THOUGHT, {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": tool_use_id("fc.7/x"), "name": "g", "input": {}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 6, "output_tokens": 5, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 4},
    }  # fmt: skip
    assert tool_use_id("fc.7/x").startswith("toolu_") and tool_use_id("fc.7/x") != "fc.7/x"
    assert DIALECT.render(call_with(), answer(content=""), "a")["content"] == [
        {"type": "text", "text": ""}
    ]  # never an empty content array: clients read content[0]


@pytest.mark.parametrize(
    ("fields", "stops", "expected"),
    [
        ({}, None, ("end_turn", None)),
        ({"finish_reason": "length"}, None, ("max_tokens", None)),
        ({"finish_reason": "content_filter"}, None, ("refusal", None)),
        ({"finish_reason": "other"}, None, ("end_turn", None)),
        ({"finish_reason": None}, None, ("end_turn", None)),
        ({"tool_calls": (ToolCall("c", "f"),)}, None, ("tool_use", None)),
        (BY_STOP, ["A"], ("stop_sequence", "A")),
        (BY_STOP, ["A", "B"], ("stop_sequence", None)),
        ({"provider": "anthropic", "raw_finish_reason": "pause_turn"}, None, ("pause_turn", None)),
        ({"provider": "openai", "raw_finish_reason": "stop"}, ["A"], ("end_turn", None)),
    ],
)  # fmt: skip
def test_stop_reasons(fields: dict[str, Any], stops: list[str] | None, expected: Any) -> None:
    assert stop_reason(call_with(stops), answer(**fields)) == expected


def test_errors_in_anthropics_shape() -> None:
    for kind, name in (("invalid_request", "invalid_request_error"),
                       ("authentication", "authentication_error"),
                       ("permission", "permission_error"), ("not_found", "not_found_error"),
                       ("too_large", "request_too_large"), ("rate_limit", "rate_limit_error"),
                       ("upstream", "api_error"), ("unavailable", "overloaded_error"),
                       ("timeout", "timeout_error"), ("internal", "api_error")):  # fmt: skip
        assert DIALECT.render_error(GatewayError(400, kind, "m")) == {
            "type": "error", "error": {"type": name, "message": "m"}
        }  # fmt: skip


def test_usage_never_goes_negative_and_the_estimate_counts_everything() -> None:
    assert usage(Usage(1, 2, 3, 5))["input_tokens"] == 0
    plain = DIALECT.parse(body({"role": "user", "content": "x" * 400}), counting=True)
    tooled = DIALECT.parse(
        {**body({"role": "user", "content": "x" * 400}),
         "tools": [{"name": "f", "input_schema": {"type": "object"}}]}, counting=True,
    )  # fmt: skip
    assert not plain.stream and estimate_tokens(plain) == (400 + 4) // 4 + 1
    assert estimate_tokens(tooled) > estimate_tokens(plain)
