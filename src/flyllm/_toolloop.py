"""The tool loop behind ``LlmManager.run_tools``: ask the model, run the functions it calls,
append their results, and ask again, until it answers without tool calls.

Each step is one ordinary ``generate`` (routed, failed over, counted, reported to the hooks),
so a conversation may move between providers from one step to the next. What the functions
do wrong (raise, return what JSON cannot carry) and what the model does wrong (an unknown
tool, arguments that are not JSON or break the tool's schema) become ``is_error`` results the
model reads, never a crash of the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from flyllm._schema import call_arguments, validate
from flyllm._tasks import gather_or_cancel
from flyllm.errors import InvalidRequestError, ToolLoopError
from flyllm.params import conversation
from flyllm.types import GenerationRequest, LlmResponse, Message, Tool, ToolCall, Usage

__all__ = ["ToolFunctions", "run_tools"]

ToolFunctions = Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]]
"""The functions a ``run_tools`` loop may call: by tool name, or a list (named by
``Tool.from_function``)."""

MAX_RESULT_CHARS = 100_000
"""The longest error text sent back to the model (an exception's message can be huge)."""

_NOT_FORCING = frozenset({"auto", "none"})


async def run_tools(
    generate: Callable[[GenerationRequest], Awaitable[LlmResponse]],
    request: GenerationRequest,
    functions: ToolFunctions,
    max_steps: int,
) -> LlmResponse:
    """The loop (see ``LlmManager.run_tools`` for the contract): ``generate`` answers one
    step or raises."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise InvalidRequestError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not isinstance(request, GenerationRequest):
        raise InvalidRequestError(f"expected a GenerationRequest, got {type(request).__name__}")
    table = _functions(functions)
    tools = _tools(request.tools, table)
    transcript = list(conversation(request))
    step = dataclasses.replace(request, prompt=None, system=None, messages=transcript, tools=tools)
    start = time.perf_counter()
    usage, attempts = Usage(), 0
    schemas = {t.name: t.parameters for t in tools}
    for _ in range(max_steps):
        response = await generate(dataclasses.replace(step, messages=tuple(transcript)))
        usage, attempts = usage + response.usage, attempts + response.attempts
        transcript.append(response.message)
        total = dataclasses.replace(
            response, usage=usage, attempts=attempts, messages=tuple(transcript),
            latency=time.perf_counter() - start,
        )  # fmt: skip
        if not response.tool_calls:
            return total
        transcript += await _run_calls(response.tool_calls, table, schemas)
        total = dataclasses.replace(total, messages=tuple(transcript))
        if step.tool_choice not in (None, *_NOT_FORCING):  # "required" or a named tool
            step = dataclasses.replace(step, tool_choice="auto")
    raise ToolLoopError(
        f"run_tools reached max_steps={max_steps} while the model still calls tools; the "
        "error's messages hold the transcript (its last calls answered): continue with "
        "them, or allow more steps",
        transcript,
        total,
    )


def _functions(functions: ToolFunctions) -> dict[str, Callable[..., Any]]:
    """Tool name -> function; InvalidRequestError for anything else."""
    items: list[tuple[Any, Any]]
    if isinstance(functions, Mapping):
        items = list(functions.items())
    elif isinstance(functions, Sequence) and not isinstance(functions, str | bytes):
        items = [(getattr(f, "__name__", None), f) for f in functions]
    else:
        raise InvalidRequestError(
            "functions must map tool names to callables, or be a list of functions"
        )
    table: dict[str, Callable[..., Any]] = {}
    for name, fn in items:
        if not isinstance(name, str) or not callable(fn):
            raise InvalidRequestError(f"functions: {fn!r} is not a named callable")
        if name in table:
            raise InvalidRequestError(f"functions: two functions are named {name!r}")
        table[name] = fn
    if not table:
        raise InvalidRequestError("run_tools needs at least one function")
    return table


def _tools(tools: Sequence[Tool] | None, table: Mapping[str, Callable[..., Any]]) -> list[Tool]:
    """The tools to offer: the request's, each with its function, or else one per function
    from its signature."""
    if tools is None:
        out = []
        for name, fn in table.items():
            try:
                out.append(Tool.from_function(fn, name=name))
            except TypeError as exc:
                raise InvalidRequestError(
                    f"function {name!r} cannot be offered as a tool: {exc}; pass its Tool in "
                    "request.tools instead"
                ) from None
        return out
    if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
        raise InvalidRequestError("tools must be a sequence of Tool")
    for tool in tools:
        if isinstance(tool, Tool) and tool.name not in table:
            raise InvalidRequestError(
                f"tool {tool.name!r} has no function: add it to functions "
                f"({', '.join(sorted(table))})"
            )
    return list(tools)


async def _run_calls(
    calls: Sequence[ToolCall],
    table: Mapping[str, Callable[..., Any]],
    schemas: Mapping[str, Mapping[str, Any]],
) -> list[Message]:
    """Every call's result, in the calls' order; the calls run concurrently. Leaving (a
    cancellation) cancels the functions still running."""
    return await gather_or_cancel(_run_call(c, table, schemas) for c in calls)


async def _run_call(
    call: ToolCall,
    table: Mapping[str, Callable[..., Any]],
    schemas: Mapping[str, Mapping[str, Any]],
) -> Message:
    """One call's result message; what goes wrong is an ``is_error`` result."""
    fn = table.get(call.name)
    if fn is None or call.name not in schemas:
        known = ", ".join(sorted(schemas))
        return _error(call, f"unknown tool {call.name!r}; the tools are: {known}")
    if call.raw_arguments is not None:
        return _error(
            call,
            f"the arguments are not a JSON object: {_clip(call.raw_arguments, 200)!s}; call "
            f"{call.name} again with a JSON object",
        )
    problems = validate(call.arguments, schemas[call.name])
    if problems:
        return _error(
            call,
            f"invalid arguments for {call.name}: {'; '.join(problems)}. Call it again with "
            "arguments that match its schema",
        )
    try:  # building the arguments runs the caller's code too (a dataclass __post_init__)
        value = await _call(fn, call_arguments(fn, call.arguments))
    except Exception as exc:  # the function's failure is the model's to read
        return _error(call, _describe(exc))
    except asyncio.CancelledError:
        if _being_cancelled():
            raise
        return _error(call, "CancelledError")  # the function's own, not the loop's
    try:  # text as it is, anything else as JSON
        return Message.tool_result(call.id, value, name=call.name)
    except TypeError:
        return _error(
            call,
            f"{call.name} returned a {type(value).__name__}, which JSON cannot carry (return "
            "text or JSON-able data)",
        )


async def _call(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> Any:
    """Await an async function; run a plain one in a thread, so it does not block the
    event loop (a cancelled thread runs to its end, its result dropped)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(**arguments)
    value = await asyncio.to_thread(fn, **arguments)
    if inspect.isawaitable(value):  # a callable object whose __call__ is async
        value = await value
    return value


def _being_cancelled() -> bool:
    """True when the running task was asked to cancel (so a CancelledError is the caller's);
    without Task.cancelling (Python 3.10) every CancelledError is taken as the caller's."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


def _describe(exc: Exception) -> str:
    """The exception's type and message (never its traceback), even when its __str__ fails."""
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be read)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error(call: ToolCall, text: str) -> Message:
    return Message.tool_result(
        call.id, _clip(text, MAX_RESULT_CHARS), is_error=True, name=call.name
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
