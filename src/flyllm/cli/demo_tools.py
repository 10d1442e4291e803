"""The demo's tool-calling part: one ``run_tools`` conversation whose steps land on different
providers (one of them failing over), printed step by step.

Its own manager spreads the steps over one instance each of OpenAI, Anthropic, Gemini 3 and
Mistral (least recently used first), so consecutive steps of one conversation go to different
providers:
ids in each provider's format, Gemini's thought signatures and Anthropic's block rules are
flyllm's business, not the caller's. Anthropic is overloaded for its first request, so the
step that lands there fails over.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from flyllm.emulator import Emulator
from flyllm.manager import LlmManager
from flyllm.observe.events import Event
from flyllm.types import GenerationRequest, LlmResponse, Message, TaskDefinition

__all__ = ["tool_conversation"]

_CITIES = {"Oslo": (3, "sleet", 1), "Lima": (19, "cloudy", -5), "Quito": (14, "rain", -5)}


def get_weather(city: str) -> dict[str, object]:
    """Current weather for a city."""
    temperature, sky, _ = _CITIES.get(city, (20, "clear", 0))
    return {"city": city, "temperature_c": temperature, "sky": sky}


async def get_time(city: str) -> str:
    """The local time in a city (24-hour clock)."""
    offset = _CITIES.get(city, (0, "", 0))[2]
    return (datetime.now(timezone.utc) + timedelta(hours=offset)).strftime("%H:%M")


async def tool_conversation(emulators: dict[str, Emulator]) -> bool:
    """Run the conversation against the demo's ``emulators`` (by provider); True when every
    turn got its answer."""
    agent = TaskDefinition("agent", {"max_tokens": 200})
    answered: list[str] = []

    def on_event(event: Event) -> None:  # which instance answered each step
        if event.kind == "attempt_end" and event.success:
            answered.append(f"{event.provider}/{event.model}")

    async with LlmManager(max_attempts=3) as manager:  # least recently used: turns
        for provider, model in [
            ("openai", "gpt-4o-mini"),
            ("anthropic", "claude-sonnet-4-5"),
            ("google", "gemini-3-flash-preview"),
            ("mistral", "mistral-small-latest"),
        ]:
            url = emulators[provider].base_url
            manager.add_provider(provider, f"demo-{provider}-key", model, [agent], base_url=url)
        manager.add_hook(on_event)
        emulators["anthropic"].schedule("overloaded", count=1)
        print("\nTool calling: one conversation, each step on the instance used least recently")
        transcript: list[Message] = []
        for question in ("What is the weather in Oslo and Lima?", "And the local time in Quito?"):
            transcript.append(Message.user(question))
            print(f"  user: {question}")
            request = GenerationRequest(task="agent", messages=transcript)
            first = len(transcript)
            result = await manager.run_tools(request, [get_weather, get_time])
            _print_steps(result, first, answered)
            transcript = list(result.messages)
            if not result.success or result.tool_calls:
                return False
        print(f"  ({len(transcript)} turns, {result.usage.total_tokens} tokens in the last run)")
    return True


def _print_steps(result: LlmResponse, first: int, answered: list[str]) -> None:
    """The new turns of the transcript: each step's provider and calls, each result."""
    for turn in result.messages[first:]:
        if turn.role == "assistant":
            who = answered.pop(0) if answered else "?"
            if turn.tool_calls:
                calls = ", ".join(f"{c.name}({_args(c.arguments)})" for c in turn.tool_calls)
                print(f"  {who:<38} asks: {calls}")
            else:
                text = turn.content if len(turn.content) <= 90 else turn.content[:87] + "..."
                print(f"  {who:<38} answers: {text}")
        elif turn.role == "tool":
            print(f"  {'':<38}   {turn.tool_name} -> {turn.content}")


def _args(arguments: object) -> str:
    if isinstance(arguments, dict):
        return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return str(arguments)
