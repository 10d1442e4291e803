"""What a request with tools, an output format or images asks of routing: the capabilities it
needs, the instances that have them, and how large it is (tool schemas, calls and results,
images and the output schema count toward its tokens).

Plain text requests pay nothing here but ``prompt_chars``' one pass over the messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from flyllm.errors import ConfigurationError, NoInstanceAvailableError
from flyllm.params import OutputFormat, ToolSet
from flyllm.types import Message

__all__ = ["capable", "declared_capabilities", "needs", "no_capable_instance", "prompt_chars"]

_UNFORCED = frozenset({"auto", "none", "required"})


class _Candidate(Protocol):
    id: int
    name: str
    enabled: bool
    capabilities: frozenset[str]


C = TypeVar("C", bound=_Candidate)


def declared_capabilities(declared: Any, offered: frozenset[str], provider: str) -> frozenset[str]:
    """An instance's capabilities: the provider's (``offered``) when ``declared`` is None,
    else ``declared``, which may only narrow them (ConfigurationError naming the culprit)."""
    if declared is None:
        return offered
    if isinstance(declared, str | bytes) or not isinstance(declared, Iterable):
        raise ConfigurationError(
            f"capabilities must be a list of capability names ({', '.join(sorted(offered))})"
        )
    out: set[str] = set()
    for name in declared:
        if name not in offered:
            raise ConfigurationError(
                f"capability {name!r} is not one {provider} offers; it may only narrow "
                f"{', '.join(sorted(offered)) or 'nothing'}"
            )
        out.add(name)
    return frozenset(out)


def needs(tools: ToolSet | None, output: OutputFormat | None, images: bool) -> frozenset[str]:
    """The capabilities a request with these tools, this output format and (or not) images
    needs."""
    need: set[str] = set()
    if tools is not None:
        need.add("tools")
        if tools.choice not in _UNFORCED:
            need.add("named_tool_choice")
    if output is not None:
        need.add("structured_output")
    if images:
        need.add("images")
    return frozenset(need)


def capable(candidates: Sequence[C], need: frozenset[str]) -> list[C]:
    """The candidates that have every capability in ``need``."""
    return [c for c in candidates if need <= c.capabilities]


def no_capable_instance(
    what: str, need: frozenset[str], candidates: Iterable[_Candidate]
) -> NoInstanceAvailableError:
    """The error for a request no enabled instance of ``what`` can take."""
    lacking = [
        f"instance {c.id} ({c.name}) lacks {', '.join(sorted(need - c.capabilities))}"
        for c in candidates
        if c.enabled
    ]
    return NoInstanceAvailableError(
        f"no enabled instance of {what} can take this request: it needs "
        f"{', '.join(sorted(need))}; {'; '.join(lacking[:10])} (narrowed by "
        "add_provider(capabilities=...) or learned from the provider's answers)"
    )


IMAGE_CHARS = 4 * 1_000
"""What one image counts for in the token estimate: about a thousand tokens (a large image
at high detail on OpenAI; Anthropic's 1,600 at most, Gemini's 258 per tile)."""


def prompt_chars(
    messages: Sequence[Message], tools: ToolSet | None, output: OutputFormat | None = None
) -> int:
    """The characters a request sends the model: texts, images, tool calls (name and
    arguments), the offered tools (name, description and schema) and the output schema.
    Results are texts already."""
    chars = 0 if output is None or output.schema is None else _json_len(output.schema)
    for m in messages:
        chars += len(m.content)
        if m.parts:
            chars += IMAGE_CHARS * len(m.images)
        if m.tool_calls:
            for call in m.tool_calls:
                arguments = call.raw_arguments
                chars += len(call.name) + (
                    len(arguments) if arguments is not None else _json_len(call.arguments)
                )
    if tools is not None:
        for tool in tools.tools:
            chars += len(tool.name) + len(tool.description) + _json_len(tool.parameters)
    return chars


def _json_len(value: Any) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError):
        return 0  # refused before sending anyway (params checks what JSON cannot carry)
