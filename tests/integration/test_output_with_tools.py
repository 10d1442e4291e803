"""A request with both tools and a response_format: the steps that call tools are not checked
as the structured answer; the final answer is, and is parsed (through run_tools, on every
provider that has both)."""

from __future__ import annotations

import pytest

from flyllm import GenerationRequest, JsonSchema, LlmManager
from tests.integration.conftest import EmulatorFactory

REPORT = JsonSchema(
    "report",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "summary": {"type": "string"}},
        "required": ["city", "summary"],
    },
)
PROVIDERS = {"anthropic": "claude-sonnet-4-5"}


def get_weather(city: str) -> dict[str, object]:
    """Current weather for a city."""
    return {"city": city, "temperature_c": 3}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_tool_steps_then_a_parsed_answer(
    manager: LlmManager, emulators: EmulatorFactory, provider: str
) -> None:
    emu = await emulators(provider)
    manager.add_provider(provider, "test-key-123", PROVIDERS[provider], base_url=emu.base_url)
    request = GenerationRequest("Weather report for Oslo?", response_format=REPORT)
    response = await manager.run_tools(request, [get_weather])
    assert response.success and not response.tool_calls
    assert [m.role for m in response.messages] == ["user", "assistant", "tool", "assistant"]
    assert response.messages[1].tool_calls[0].name == "get_weather"
    assert isinstance(response.parsed, dict) and set(response.parsed) >= {"city", "summary"}
