"""Reading a structured answer: the JSON in a model's text, checked against the request's
``response_format``.

Pure (no I/O) and provider-neutral; the engine calls it once an attempt's answer is complete,
and a mismatch becomes a StructuredOutputError (a failed attempt, which fails over).
"""

from __future__ import annotations

import json
import re
from typing import Any

from flyllm._schema import validate
from flyllm.params import OutputFormat

__all__ = ["read_output"]

_FENCE = re.compile(r"\A\s*```(?:json|JSON)?[ \t]*\n(.*?)\n?```\s*\Z", re.S)
MAX_ERRORS = 10


def read_output(text: str, fmt: OutputFormat) -> tuple[Any, list[str]]:
    """``(value, [])`` when ``text`` is the JSON ``fmt`` asks for (decoded, and an instance of
    the pydantic class when there is one); ``(None, errors)`` otherwise. A single markdown code
    fence around the JSON is tolerated (models asked for "some JSON" often add one)."""
    fenced = _FENCE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except RecursionError:
        return None, ["the answer is JSON nested too deeply to read"]
    except ValueError as exc:
        return None, [f"the answer is not JSON: {exc}"]
    if fmt.schema is None:
        if not isinstance(value, dict):
            return None, [f"expected a JSON object, got {type(value).__name__}"]
        return value, []
    errors = validate(value, fmt.schema)
    if errors:
        return None, errors[:MAX_ERRORS]
    if fmt.model is None:
        return value, []
    try:
        return fmt.model.model_validate(value), []
    except Exception as exc:  # pydantic's ValidationError, or the model's own validator
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return None, lines[:MAX_ERRORS] or [type(exc).__name__]
