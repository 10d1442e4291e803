"""Edges of tool calling that no single provider's tests cover: names every provider accepts,
what a tool result may hold, ids that must stay apart after rewriting, Unicode."""

from __future__ import annotations

import pytest

from flyllm import GenerationRequest, Message, Tool
from flyllm.errors import InvalidRequestError
from flyllm.params import tool_set


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
