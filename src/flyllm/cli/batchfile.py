"""The files of ``flyllm batch``: the JSONL input, the append-only JSONL output, and usage.

Input: one JSON object per line, ``{"id": ..., "prompt": ... | "messages": [{"role": ...,
"content": ...}], "task": ..., "params": {...}, "system": ...}`` plus any other
GenerationRequest field (``max_attempts``, ``provider_params``, ``deadline``...). A missing id
is the line number; ids are strings or integers and unique within the file. Blank lines are
skipped. ``response_format`` is "json" (any JSON object) or ``{"name": ..., "schema": {...},
"strict": true, "description": ...}`` (a JsonSchema: name and schema required).

Output: one JSON object per line, written as each request finishes (so not in input order)::

    {"id": ..., "success": true, "content": "...", "error": null, "error_kind": null,
     "provider": "openai", "model": "gpt-4o-mini", "instance_id": 0,
     "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
               "cached_tokens": 0},
     "finish_reason": "stop", "latency": 0.412, "attempts": 1}

plus ``"parsed": <the decoded JSON>`` when the request had a ``response_format`` and its
answer passed.

The output is append-only and the LAST line for an id wins: a rerun skips ids whose last line
succeeded and asks the others again, appending their new lines. Each line reaches the file in
one ``os.write`` of its full bytes on an ``O_APPEND`` descriptor, so an interrupted run (Ctrl-C,
crash, ``kill -9``) keeps every line it finished; the one torn line a crash of the machine could
leave at the end is repaired by :func:`open_output` before anything is appended.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flyllm._display import table_cell
from flyllm.types import GenerationRequest, JsonSchema, LlmResponse, Message, Usage

__all__ = [
    "BatchInputError",
    "BatchItem",
    "OutputState",
    "ResultWriter",
    "UsageRow",
    "bundled_cost",
    "format_usage_rows",
    "id_key",
    "iter_input",
    "load_line",
    "open_output",
    "parse_line",
    "read_results",
    "response_format",
    "response_record",
    "summarize_usage",
]

INPUT_FIELDS = ("id", *(f.name for f in dataclasses.fields(GenerationRequest) if f.init))
"""The keys an input line may have."""
_ROLES = ("system", "user", "assistant")
_OPTIONAL_STR = ("prompt", "task", "system")
_OPTIONAL_OBJECT = ("params", "provider_params")

JsonId = str | int


class BatchInputError(ValueError):
    """A malformed input line; ``line`` is its 1-based number."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(slots=True, frozen=True)
class BatchItem:
    """One input line: its id, line number and request."""

    id: JsonId
    line: int
    request: GenerationRequest


def id_key(value: JsonId) -> str:
    """The id as resume compares it: 7 and "7" are different ids."""
    return json.dumps(value)


def parse_line(text: str | bytes, line: int) -> BatchItem:
    """The request on one input line, or BatchInputError saying what is wrong (hostile JSON
    included: a huge number, absurd nesting, NaN, bytes that are not UTF-8)."""
    obj = load_line(text, line)
    if not isinstance(obj, dict):
        raise BatchInputError(line, "expected a JSON object")
    for key in obj:
        if key not in INPUT_FIELDS:
            raise BatchInputError(
                line, f"unknown field {key!r}; valid fields: {', '.join(INPUT_FIELDS)}"
            )
    item_id = obj.pop("id", line)
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise BatchInputError(line, "id must be a string or an integer")
    for key in _OPTIONAL_STR:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise BatchInputError(line, f"{key} must be a string")
    for key in _OPTIONAL_OBJECT:
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise BatchInputError(line, f"{key} must be a JSON object")
    if obj.get("messages") is not None:
        obj["messages"] = _messages(obj["messages"], line)
    if obj.get("prompt") is None and not obj.get("messages"):
        raise BatchInputError(line, 'needs a "prompt" or "messages"')
    if obj.get("response_format") is not None:
        try:
            obj["response_format"] = response_format(obj["response_format"])
        except ValueError as exc:
            raise BatchInputError(line, str(exc)) from None
    return BatchItem(item_id, line, GenerationRequest(**obj))


_SCHEMA_KEYS = frozenset({"name", "schema", "strict", "description"})


def response_format(value: Any) -> JsonSchema | str:
    """A ``response_format`` as JSON gives it: "json", or an object with ``name`` and
    ``schema`` (and optionally ``strict`` and ``description``) as a JsonSchema; ValueError
    for another shape. The schema itself is checked when the request is made (a bad one is
    that line's InvalidRequestError in the output)."""
    if value == "json":
        return "json"
    if not isinstance(value, dict) or not {"name", "schema"} <= set(value) <= _SCHEMA_KEYS:
        raise ValueError(
            'response_format must be "json" or {"name": ..., "schema": {...}} (optionally '
            '"strict" and "description")'
        )
    return JsonSchema(
        value["name"], value["schema"], value.get("strict", True),
        description=value.get("description"),
    )  # fmt: skip


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_line(text: str | bytes, line: int) -> Any:
    """The JSON value of one input line; BatchInputError for anything that is not plain JSON
    (bytes that are not UTF-8, NaN, absurd nesting, a huge integer)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BatchInputError(line, f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise BatchInputError(line, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise BatchInputError(line, "invalid JSON: nested too deep") from None
    except ValueError as exc:  # NaN, Infinity, an integer of more than 4,300 digits
        raise BatchInputError(line, f"invalid JSON: {str(exc).split(':')[0]}") from None


def _messages(value: Any, line: int) -> list[Message]:
    if not isinstance(value, list):
        raise BatchInputError(line, "messages must be a list")
    out: list[Message] = []
    for i, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or set(m) != {"role", "content"}
            or m["role"] not in _ROLES
            or not isinstance(m["content"], str)
        ):
            raise BatchInputError(
                line,
                f'messages[{i}] must be {{"role": one of {", ".join(_ROLES)}, '
                '"content": a string}',
            )
        out.append(Message(m["role"], m["content"]))
    return out


def iter_input(path: str) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of the input file with their 1-based numbers, read lazily, as
    bytes: a line that is not UTF-8 is one malformed line (parse_line says so), not the end."""
    with open(path, "rb") as f:
        for number, text in enumerate(f, start=1):
            if text.strip():
                yield number, text


def response_record(response: LlmResponse, item_id: JsonId | None = None) -> dict[str, Any]:
    """The JSON object of one response (with ``id`` first when given)."""
    record: dict[str, Any] = {} if item_id is None else {"id": item_id}
    record.update(
        success=response.success,
        content=response.content,
        error=response.error,
        error_kind=response.error_kind,
        provider=response.provider,
        model=response.model,
        instance_id=response.instance_id,
        usage=dataclasses.asdict(response.usage),
        finish_reason=response.finish_reason,
        latency=round(response.latency, 4),
        attempts=response.attempts,
    )
    if response.parsed is not None:
        parsed = response.parsed
        dump = getattr(parsed, "model_dump", None)  # a pydantic instance (from the API)
        record["parsed"] = dump(mode="json") if callable(dump) else parsed
    return record


# -- output ------------------------------------------------------------------------------------


@dataclass(slots=True)
class OutputState:
    """What an existing output file holds: the last outcome per id (by ``id_key``)."""

    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    unreadable_lines: list[int] = field(default_factory=list)
    repaired: str | None = None
    """What open_output did to a torn last line, if there was one."""


def read_results(path: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Each complete line of an output file as (line number, record or None if unreadable).
    A last line without its newline is skipped: it is a write cut short."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return
            try:
                record = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or absurdly deep
                yield number, None
                continue
            ok = isinstance(record, dict) and isinstance(record.get("id"), str | int)
            yield number, record if ok else None


def open_output(path: str) -> OutputState:
    """Read the outcomes already in ``path`` (missing: none) and repair a torn last line:
    completed with its newline when it is a whole record, cut off otherwise."""
    state = OutputState()
    if not os.path.exists(path):
        return state
    state.repaired = _repair_tail(path)
    for number, record in read_results(path):
        if record is None:
            state.unreadable_lines.append(number)
            continue
        key = id_key(record["id"])
        if record.get("success") is True:
            state.succeeded.add(key)
            state.failed.discard(key)
        else:
            state.failed.add(key)
            state.succeeded.discard(key)
    return state


def _repair_tail(path: str) -> str | None:
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        start = size
        while start > 0:
            step = min(65536, start)
            f.seek(start - step)
            block = f.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                start = start - step + cut + 1
                break
            start -= step
        f.seek(start)
        tail = f.read()
        try:
            whole = isinstance(json.loads(tail), dict)
        except (ValueError, RecursionError):
            whole = False
        if whole:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            return "completed the last line, which had lost its newline"
        f.truncate(start)
        return f"dropped a torn last line ({size - start} bytes) left by an interrupted run"


class ResultWriter:
    """Appends records to the output, one ``os.write`` per line on an ``O_APPEND`` descriptor;
    fsyncs at most every ``sync_every`` seconds and on ``close()``."""

    def __init__(self, path: str, sync_every: float = 1.0) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, 0o644)
        self._sync_every = sync_every
        self._next_sync = time.monotonic() + sync_every
        self.written = 0

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line."""
        # A lone surrogate (a server can send one as \ud800 in JSON) is written as that escape.
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.written += 1
        if time.monotonic() >= self._next_sync:
            os.fsync(self._fd)
            self._next_sync = time.monotonic() + self._sync_every

    def close(self) -> None:
        """Flush to disk and close; safe to call twice."""
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- usage -------------------------------------------------------------------------------------


@dataclass(slots=True)
class UsageRow:
    """Totals of one provider/model over the final result of each id."""

    provider: str
    model: str
    requests: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    @property
    def usage(self) -> Usage:
        """The token totals as a Usage, the shape a pricing function takes."""
        return Usage(
            self.prompt_tokens, self.completion_tokens, self.total_tokens, self.cached_tokens
        )


_Outcome = tuple[str, str, bool, int, int, int, int]


def summarize_usage(path: str) -> tuple[list[UsageRow], int]:
    """Per provider/model totals of an output file, counting only the last line of each id;
    also the number of unreadable lines ignored. Failures without a provider are under "-"."""
    last: dict[str, _Outcome] = {}
    unreadable = 0
    for _, record in read_results(path):
        if record is None:
            unreadable += 1
            continue
        raw_usage = record.get("usage")
        usage = raw_usage if isinstance(raw_usage, dict) else {}
        prompt, completion, total, cached = (_int(usage.get(k)) for k in _TOKEN_KEYS)
        last[id_key(record["id"])] = (
            str(record.get("provider") or "-"),
            str(record.get("model") or "-"),
            record.get("success") is True,
            prompt,
            completion,
            total,
            cached,
        )
    rows: dict[tuple[str, str], UsageRow] = {}
    for provider, model, success, prompt, completion, total, cached in last.values():
        row = rows.setdefault((provider, model), UsageRow(provider, model))
        row.requests += 1
        row.failures += not success
        row.prompt_tokens += prompt
        row.completion_tokens += completion
        row.total_tokens += total
        row.cached_tokens += cached
    return sorted(rows.values(), key=lambda r: (r.provider, r.model)), unreadable


_TOKEN_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


Pricing = Callable[[str, str, Usage], float | None]
"""A price in USD for (provider, model, usage), or None when unknown."""


def bundled_cost(provider: str, model: str, usage: Usage) -> float | None:
    """The cost of ``usage`` at the bundled price of the model (:mod:`flyllm.pricing`), or
    None when the price is unknown."""
    from flyllm.pricing import lookup_price

    price = lookup_price(provider, model) if provider != "-" and model != "-" else None
    return None if price is None else price.cost(usage)


def _money(cost: float | None) -> str:
    return "unknown" if cost is None else f"{cost:.6f}"


def format_usage_rows(rows: list[UsageRow], cost: Pricing | None = None) -> str:
    """The usage table of a batch, with a TOTAL line; a "Cost (USD)" column when ``cost`` is
    given ("unknown" where it returns None; a total ending in "+" misses those rows)."""
    head = ["Provider", "Model", "Requests", "Failures", "Prompt", "Completion", "Total"]
    counts = [
        [r.requests, r.failures, r.prompt_tokens, r.completion_tokens, r.total_tokens] for r in rows
    ]
    table: list[list[Any]] = [
        [table_cell(r.provider), table_cell(r.model), *c] for r, c in zip(rows, counts, strict=True)
    ]
    totals: list[Any] = ["TOTAL", "", *(sum(c[i] for c in counts) for i in range(5))]
    if cost is not None:
        head.append("Cost (USD)")
        prices = [cost(r.provider, r.model, r.usage) for r in rows]
        for line, price in zip(table, prices, strict=True):
            line.append(_money(price))
        known = [p for p in prices if p is not None]
        partial = "+" if known and len(known) < len(prices) else ""
        totals.append(_money(sum(known)) + partial if known else "unknown")
    cells = [[str(c) for c in line] for line in [head, *table, totals]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(head))]

    def fmt(line: list[str]) -> str:
        left = [c.ljust(w) for c, w in zip(line[:2], widths[:2], strict=True)]
        right = [c.rjust(w) for c, w in zip(line[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(fmt(cells[0]))
    return "\n".join(
        ["--- Batch Usage ---", fmt(cells[0]), rule, *map(fmt, cells[1:-1]), rule, fmt(cells[-1])]
    )
