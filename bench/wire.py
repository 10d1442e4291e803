"""The bare loop's wire formats: the least a hand-written client does per request, per provider.

The floor of the benchmark speaks each provider's HTTP API directly, as a user without any
library would: build the JSON body, POST it, parse the answer and take the text. No routing,
no validation, no error classification. One :class:`Target` names an emulated instance; the
same targets configure every contender, so all of them do the same work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODELS",
    "TOOL",
    "Target",
    "content_of",
    "request_for",
    "stream_delta",
    "tool_calls_of",
    "tool_prompt",
]

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "mistral": "mistral-small-latest",
}
"""The model each provider's instances are asked for (the emulator accepts any)."""

API_KEY = "bench"

TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
    },
}
"""The one tool the tools scenario offers (and requires) on every request."""


def tool_prompt(n: int) -> str:
    """The prompt of request ``n`` in the tools scenario (the emulator calls the tool once)."""
    return f"Weather in Oslo in celsius, request {n}?"


def _tool_fields(provider: str) -> dict[str, Any]:
    """The body fields that offer TOOL and require a call, in each provider's shape."""
    name, description, schema = TOOL["name"], TOOL["description"], TOOL["parameters"]
    if provider in ("openai", "mistral"):
        function = {"name": name, "description": description, "parameters": schema}
        choice = "required" if provider == "openai" else "any"
        return {"tools": [{"type": "function", "function": function}], "tool_choice": choice}
    if provider == "anthropic":
        tool = {"name": name, "description": description, "input_schema": schema}
        return {"tools": [tool], "tool_choice": {"type": "any"}}
    if provider == "google":
        declaration = {"name": name, "description": description, "parametersJsonSchema": schema}
        return {
            "tools": [{"functionDeclarations": [declaration]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        }
    raise ValueError(f"unknown provider {provider!r}")


@dataclass(frozen=True, slots=True)
class Target:
    """One emulated provider instance: its wire format and the base URL its emulator printed
    (the official SDK's convention: ``.../v1`` for OpenAI, the root for the others)."""

    provider: str
    base_url: str

    @property
    def model(self) -> str:
        """The model name sent to this instance."""
        return MODELS[self.provider]

    @property
    def root(self) -> str:
        """``http://host:port`` without the OpenAI ``/v1`` suffix."""
        url = self.base_url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    def to_json(self) -> dict[str, str]:
        """The JSON form passed to child processes."""
        return {"provider": self.provider, "base_url": self.base_url}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Target:
        """The inverse of :meth:`to_json`."""
        return cls(data["provider"], data["base_url"])


def request_for(
    target: Target, prompt: str, max_tokens: int, *, stream: bool = False, tools: bool = False
) -> tuple[str, dict[str, str], bytes]:
    """The URL, headers and body of one chat request to ``target`` (offering TOOL and
    requiring a call when ``tools``)."""
    messages = [{"role": "user", "content": prompt}]
    provider, model = target.provider, target.model
    headers = {"Content-Type": "application/json"}
    body: dict[str, Any]
    if provider == "openai":
        url = target.root + "/v1/chat/completions"
        headers["Authorization"] = f"Bearer {API_KEY}"
        body = {"model": model, "messages": messages, "max_completion_tokens": max_tokens}
    elif provider == "mistral":
        url = target.root + "/v1/chat/completions"
        headers["Authorization"] = f"Bearer {API_KEY}"
        body = {"model": model, "messages": messages, "max_tokens": max_tokens}
    elif provider == "anthropic":
        url = target.root + "/v1/messages"
        headers["x-api-key"] = API_KEY
        headers["anthropic-version"] = "2023-06-01"
        body = {"model": model, "messages": messages, "max_tokens": max_tokens}
    elif provider == "google":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{target.root}/v1/models/{model}:{action}"
        headers["x-goog-api-key"] = API_KEY
        body = {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {"maxOutputTokens": max_tokens},
        }
    else:
        raise ValueError(f"unknown provider {provider!r}")
    if tools:
        body.update(_tool_fields(provider))
    if stream and provider != "google":
        body["stream"] = True
        if provider == "openai":
            body["stream_options"] = {"include_usage": True}
    return url, headers, json.dumps(body).encode()


def content_of(provider: str, raw: bytes) -> str:
    """The answer's text from a non-streamed response body."""
    data = json.loads(raw)
    if provider in ("openai", "mistral"):
        return str(data["choices"][0]["message"]["content"])
    if provider == "anthropic":
        return "".join(b["text"] for b in data["content"] if b.get("type") == "text")
    if provider == "google":
        parts = data["candidates"][0]["content"]["parts"]
        return "".join(p.get("text", "") for p in parts)
    raise ValueError(f"unknown provider {provider!r}")


def tool_calls_of(provider: str, raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (name, arguments) of each tool call in a non-streamed response body, arguments
    decoded (OpenAI and Mistral send them as JSON text)."""
    data = json.loads(raw)
    if provider in ("openai", "mistral"):
        calls = data["choices"][0]["message"].get("tool_calls") or []
        return [
            (c["function"]["name"], json.loads(c["function"]["arguments"] or "{}")) for c in calls
        ]
    if provider == "anthropic":
        return [(b["name"], b["input"]) for b in data["content"] if b.get("type") == "tool_use"]
    if provider == "google":
        parts = data["candidates"][0]["content"]["parts"]
        return [
            (p["functionCall"]["name"], p["functionCall"].get("args", {}))
            for p in parts
            if "functionCall" in p
        ]
    raise ValueError(f"unknown provider {provider!r}")


def stream_delta(line: bytes) -> str | None:
    """The text of one OpenAI SSE line (``data: {...}``); None for other lines and the end."""
    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
        return None
    choices = json.loads(line[6:]).get("choices")
    if not choices:
        return None
    text = choices[0].get("delta", {}).get("content")
    return text if isinstance(text, str) else None
