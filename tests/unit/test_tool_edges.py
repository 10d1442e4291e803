"""Edges of tool calling that no single provider's tests cover: names every provider accepts,
what a tool result may hold, ids that must stay apart after rewriting, Unicode."""

from __future__ import annotations

import pytest

from flyllm import GenerationRequest, Message, Tool, ToolCall
from flyllm.errors import InvalidRequestError
from flyllm.params import ToolSet, tool_set
from flyllm.providers import get_provider
from flyllm.providers.base import Endpoint


@pytest.mark.parametrize("name", ["1st_tool", "-flag", "9"])
def test_a_tool_name_must_start_as_gemini_requires(name: str) -> None:
    """Gemini rejects a function name that does not start with a letter or "_"; refused
    before sending, whichever provider the request would reach."""
    with pytest.raises(InvalidRequestError, match="start with a letter or '_'"):
        tool_set(GenerationRequest(prompt="hi", tools=[Tool(name)]))


@pytest.mark.parametrize("name", ["_private", "get-weather", "a" * 64, "T9"])
def test_names_every_provider_takes_pass(name: str) -> None:
    tools = tool_set(GenerationRequest(prompt="hi", tools=[Tool(name)]))
    assert tools is not None and tools.tools[0].name == name


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("plain", "plain"),
        ("", ""),
        ({"temp": 3, "sky": ["snow", None]}, '{"temp": 3, "sky": ["snow", null]}'),
        ([1, 2.5, True], "[1, 2.5, true]"),
        (7, "7"),
        (None, "null"),
        ("Zürich 🌧", "Zürich 🌧"),
        ({"city": "Zürich"}, '{"city": "Zürich"}'),  # serialised once, not escaped
    ],
)
def test_a_tool_result_holds_text_or_any_json_value(content: object, text: str) -> None:
    assert Message.tool_result("c1", content).content == text


@pytest.mark.parametrize("content", [float("nan"), {1, 2}, b"bytes", {"k": object()}])
def test_a_tool_result_json_cannot_carry_is_a_type_error(content: object) -> None:
    with pytest.raises(TypeError, match="text or JSON-able"):
        Message.tool_result("c1", content)


LONE = "\ud800"  # what json.loads decodes from a hostile server's "\\ud800"


@pytest.mark.parametrize(
    "provider", ["openai", "anthropic", "google", "mistral", "cohere", "ollama"]
)
@pytest.mark.parametrize("where", ["arguments", "result"])
def test_a_lone_surrogate_is_an_invalid_request_not_a_crash(provider: str, where: str) -> None:
    call = ToolCall("c1", "get_weather", {"city": LONE if where == "arguments" else "Oslo"})
    turns = [
        Message.user("Weather?"),
        Message.assistant("", [call]),
        Message.tool_result("c1", LONE if where == "result" else "3C"),
    ]
    endpoint = Endpoint("gemini-3-flash-preview", "k" * 12, "http://127.0.0.1:1")
    tools = ToolSet((Tool("get_weather"),))
    with pytest.raises(InvalidRequestError, match="cannot be sent"):
        get_provider(provider).build(endpoint, turns, {}, tools=tools)
