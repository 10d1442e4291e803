"""The instruction a JSON mode needs when the conversation never asks for JSON itself.

Cohere's ``json_object`` and Ollama's ``format`` constrain what the model may emit, but their
docs warn that a model never told to write JSON may emit whitespace until it runs out of
tokens. ``response_format="json"`` must work whatever the prompt says, so a conversation that
never says "JSON" gets one short system sentence. Pure; no provider knowledge.
"""

from __future__ import annotations

from collections.abc import Sequence

from flyllm.types import Message

__all__ = ["JSON_HINT", "with_json_hint"]

JSON_HINT = "Answer with a single JSON object and nothing else."


def with_json_hint(messages: Sequence[Message]) -> list[Message]:
    """``messages`` unchanged when one of them says "JSON" (any case); otherwise with the
    hint added to the first system turn, or as a new first system turn when there is none."""
    out = list(messages)
    if any("json" in m.content.lower() for m in out):
        return out
    if out and out[0].role == "system":
        first = out[0]
        text = f"{first.content}\n\n{JSON_HINT}" if first.content else JSON_HINT
        out[0] = Message("system", text)
        return out
    return [Message("system", JSON_HINT), *out]
