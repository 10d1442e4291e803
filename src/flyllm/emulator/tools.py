"""The emulator's tool-calling "model", shared by every dialect: which tools a conversation
calls, with which arguments, and the answer once results come back. Deterministic: the same
conversation always gets the same calls and the same answer.

The rules (documented for tests and users of the emulator):

- Tools are called when some are offered, ``tool_choice`` is not "none" and the last turn is
  the user's; "required" and a named tool force a call whatever the last turn is (as real
  providers do).
- Which tools: a named choice calls that tool; otherwise every offered tool one of whose name
  words (split at "_" and "-") appears in the prompt, or the first tool when none does.
- How many: one call per *subject* of the prompt (its capitalised words that do not start a
  sentence, e.g. "Oslo" and "Lima" in "Weather in Oslo and Lima?"), at most three, when
  parallel calls are allowed; one call otherwise (the first tool, the first subject).
- Arguments follow the tool's JSON Schema: strings are the subject (or the first ``enum``
  value the prompt mentions, else the first), integers and numbers the first number in the
  prompt (else the subject's length), booleans true, arrays one item, objects recurse over
  their properties (required ones, or all when none is marked required); a ``$ref`` to
  ``#/$defs/...`` or ``#/definitions/...`` of the tool's schema is followed.
- A forced call ("required") once results came back calls a tool that has no result yet when
  there is one (a model that called the weather tool goes on to the answer tool).
- When the last turns are tool results, the answer is text that quotes each result, so a
  test can tell the results reached the model.
- A model whose name contains "notools" does not support tools: the dialect answers with its
  provider's "does not support tools" error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flyllm.emulator.text import Reply, count_words, text_reply

__all__ = [
    "MAX_PARALLEL_CALLS",
    "OfferedTool",
    "PlannedCall",
    "ToolResult",
    "arguments_for",
    "plan_calls",
    "results_text",
    "supports_tools",
    "tool_reply",
]

MAX_PARALLEL_CALLS = 3
_MAX_DEPTH = 8
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """A tool as a request offered it: its name and its parameters' JSON Schema."""

    name: str
    schema: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A call the emulated model makes: the tool's name and the arguments object. Dialects
    give it an id in their provider's format."""

    name: str
    arguments: Mapping[str, Any]

    @property
    def arguments_json(self) -> str:
        """The arguments as compact JSON text (what OpenAI-style wires carry)."""
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool result a request sent back: the tool's name (or the call id when the wire does
    not name the tool), its text, and whether it reports an error."""

    name: str
    content: str
    is_error: bool = False


def supports_tools(model: str) -> bool:
    """False for the emulator's tool-incapable models (names containing "notools")."""
    return "notools" not in model.lower()


def _subjects(prompt: str) -> list[str]:
    found: list[str] = []
    for sentence in _SENTENCE.split(prompt):
        for word in _WORD.findall(sentence)[1:]:  # a sentence's first word is capitalised anyway
            if word[0].isupper() and word not in found:
                found.append(word)
    if not found:
        words = _WORD.findall(prompt)
        found = [words[-1] if words else "emulator"]
    return found


def _chosen_tools(tools: Sequence[OfferedTool], choice: str, prompt: str) -> list[OfferedTool]:
    if choice not in ("auto", "required", "none"):
        return [t for t in tools if t.name == choice][:1] or list(tools[:1])
    words = {w.lower() for w in _WORD.findall(prompt)}
    named = [t for t in tools if any(part.lower() in words for part in re.split(r"[_\-]", t.name))]
    return named or list(tools[:1])


def plan_calls(
    tools: Sequence[OfferedTool],
    choice: str,
    parallel: bool,
    prompt: str,
    last_role: str,
) -> list[PlannedCall]:
    """The calls the emulated model makes for this conversation (none: it answers in text).
    ``choice`` is "auto", "none", "required" or a tool name; ``last_role`` the role of the
    conversation's last turn ("user", or "tool" once results came back)."""
    if not tools or choice == "none":
        return []
    if last_role != "user" and choice == "auto":
        return []
    chosen = _chosen_tools(tools, choice, prompt)
    subjects = _subjects(prompt)
    if not parallel:
        return [PlannedCall(chosen[0].name, _arguments(chosen[0].schema, subjects[0], prompt))]
    calls = [
        PlannedCall(tool.name, _arguments(tool.schema, subject, prompt))
        for tool in chosen
        for subject in subjects
    ]
    return calls[:MAX_PARALLEL_CALLS]


def _arguments(schema: Mapping[str, Any], subject: str, prompt: str) -> Mapping[str, Any]:
    """A call's arguments: always an object, as every provider sends them (a tool whose schema
    is ``{}``, any value, gets an empty one)."""
    value = arguments_for(schema, subject, prompt)
    return value if isinstance(value, Mapping) else {}


def arguments_for(
    schema: Mapping[str, Any],
    subject: str,
    prompt: str,
    depth: int = 0,
    root: Mapping[str, Any] | None = None,
) -> Any:
    """A value that follows ``schema`` (a part of ``root``, the tool's whole schema, where
    its ``$ref``s point), derived from the ``subject`` and the prompt."""
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return subject
    root = schema if root is None else root
    schema = _resolve(schema, root)
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        lowered = prompt.lower()
        return next((v for v in enum if str(v).lower() in lowered), enum[0])
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first that is not null
        kind = next((k for k in kind if k != "null"), "null")
    for union in ("anyOf", "oneOf"):
        options = schema.get(union)
        if kind is None and isinstance(options, list) and options:
            usable = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            return arguments_for((usable or options)[0], subject, prompt, depth + 1, root)
    if kind == "object" or (kind is None and "properties" in schema):
        return _object_for(schema, subject, prompt, depth, root)
    if kind == "array":
        return [arguments_for(schema.get("items", {}), subject, prompt, depth + 1, root)]
    if kind in ("integer", "number"):
        number = _NUMBER.search(prompt)
        value = float(number.group()) if number else float(len(subject))
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return subject


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """The schema a local ``$ref`` points to (``{}`` when it points nowhere)."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    kind, _, name = ref.removeprefix("#/").partition("/")
    defs = root.get(kind) if kind in ("$defs", "definitions") else None
    target = defs.get(name) if isinstance(defs, Mapping) else None
    return target if isinstance(target, Mapping) else {}


def _object_for(
    schema: Mapping[str, Any], subject: str, prompt: str, depth: int, root: Mapping[str, Any]
) -> Any:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    required = schema.get("required")
    names = [n for n in properties if not isinstance(required, list) or n in required]
    return {n: arguments_for(properties[n], subject, prompt, depth + 1, root) for n in names}


def results_text(results: Sequence[ToolResult]) -> str:
    """The answer once results came back: each result quoted (errors marked as such)."""
    quoted = [
        f"{r.name} {'failed with' if r.is_error else 'returned'} {r.content}" for r in results
    ]
    return "Tool results: " + "; ".join(quoted) + "."


def tool_reply(
    tools: Sequence[OfferedTool],
    choice: str,
    parallel: bool,
    prompt: str,
    last_role: str,
    results: Sequence[ToolResult],
    max_tokens: int | None,
    stops: tuple[str, ...],
) -> Reply | None:
    """The reply of a tool conversation: the calls (with no text), or the text quoting the
    results that came back; None when tools play no part (the usual reply then)."""
    if choice == "required" and last_role == "tool":
        answered = {r.name for r in results}
        tools = [t for t in tools if t.name not in answered] or tools
    calls = plan_calls(tools, choice, parallel, prompt, last_role)
    if calls:
        tokens = sum(count_words(c.arguments_json.replace(",", " ")) for c in calls)
        return Reply("", (), max(tokens, 1), "tool_calls", calls=tuple(calls))
    if results and last_role == "tool":
        return text_reply(results_text(results), max_tokens, stops)
    return None
