"""The instruction a JSON mode needs when the conversation never asks for JSON itself.

OpenAI's and Mistral's ``json_object`` refuse (or misbehave on) a conversation that never
says "JSON"; Cohere's ``json_object`` and Ollama's ``format`` constrain what the model may emit,
but their docs warn that a model never told to write JSON may emit whitespace until it runs out
of tokens. ``response_format="json"`` must work whatever the prompt says, so a conversation that
never says "JSON" gets one short system sentence. A service that takes only ``json_object``
(DeepSeek) is told the schema in the same sentence. Pure; no provider knowledge.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from flyllm.types import Message

__all__ = ["JSON_HINT", "with_json_hint"]

JSON_HINT = "Answer with a single JSON object and nothing else."


def with_json_hint(
    messages: Sequence[Message], schema: Mapping[str, Any] | None = None
) -> list[Message]:
    """``messages`` unchanged when one of them says "JSON" (any case) and no ``schema`` is
    given; otherwise with the hint (and the ``schema`` it must follow, stated in words) added
    to the first system turn, or as a new first system turn when there is none."""
    out = list(messages)
    hint = JSON_HINT
    if schema is not None:
        text = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
        hint = f"{JSON_HINT} It must follow this JSON Schema: {text}"
    elif any("json" in m.content.lower() for m in out):
        return out
    if out and out[0].role == "system":
        first = out[0]
        out[0] = Message("system", f"{first.content}\n\n{hint}" if first.content else hint)
        return out
    return [Message("system", hint), *out]
