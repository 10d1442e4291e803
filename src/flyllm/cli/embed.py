"""``flyllm embed``: embed a JSONL file of texts into a JSONL file of vectors, resumably, on
the same runner and output files as ``flyllm batch`` (:mod:`flyllm.cli.batchrun`,
:mod:`flyllm.cli.batchfile`).

Input: one JSON object per line, ``{"id": ..., "text": "..."}``. A missing id is the line
number; ids are strings or integers and unique within the file (a repeated id is a malformed
line, reported and skipped like any other). An empty text is not sent (the providers refuse
it): its line is written as a failed result (``error_kind`` "invalid_request").

Output: one JSON object per input line, appended as each group of texts finishes::

    {"id": ..., "success": true, "vector": [0.0123, ...], "encoding": "float",
     "dimensions": 1536, "error": null, "error_kind": null, "provider": "openai",
     "model": "text-embedding-3-small", "instance_id": 0,
     "usage": {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7,
               "cached_tokens": 0},
     "latency": 0.212, "attempts": 1}

``--vectors base64`` writes ``"vector"`` as the base64 of the vector's little-endian float32
bytes with ``"encoding": "base64"`` (OpenAI's own ``encoding_format=base64``): 2.7 times
smaller, exact. JSON arrays hold the float32 values to 9 significant digits, which reads back
to the same float32 exactly. A failed line has ``"vector": null`` and the error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flyllm.cli._common import FORMATTER, load, positive, start_logging
from flyllm.cli.batch import add_run_options, check_files
from flyllm.cli.batchfile import BatchInputError, JsonId, load_line
from flyllm.manager import LlmManager
from flyllm.types import EmbeddingResult

if TYPE_CHECKING:  # the runner is imported when a run starts, as by ``flyllm batch``
    from flyllm.cli.batchrun import JobKind

__all__ = [
    "DEFAULT_GROUP",
    "EmbedItem",
    "add",
    "embed_kind",
    "embedding_record",
    "parse_embed_line",
    "run",
    "vector_base64",
    "vector_json",
]

DEFAULT_GROUP = 1024
"""Texts a worker takes at once without ``--batch-size``; the manager splits them into
requests by the providers' limits and the instances' tpm headroom."""

_HELP = """\
Embed one text per input line, in parallel, appending one result per line to the output
as each group of texts finishes (so not in input order).

input line:   {"id": ..., "text": "..."}
              (a missing id is the line number; ids are strings or integers, unique;
               a repeated id is a malformed line; an empty text is written as a failed line)
output line:  {"id": ..., "success": ..., "vector": [...] | "<base64>",
               "encoding": "float" | "base64", "dimensions": ..., "error": ...,
               "error_kind": ..., "provider": ..., "model": ..., "instance_id": ...,
               "usage": {...}, "latency": ..., "attempts": ...}

--vectors json (the default) writes each vector as a JSON array of numbers; --vectors
base64 writes the base64 of its little-endian float32 bytes (OpenAI's encoding_format
"base64"): numpy.frombuffer(base64.b64decode(v), "<f4") reads it.

Resume: the output is append-only and the last line of an id wins. Running the same
command again skips the ids whose last line succeeded and embeds the others.
Every finished result is on disk whatever stops the run (Ctrl-C, a crash, kill -9).
The first Ctrl-C lets the requests in flight finish and be written (exit 130).
Malformed input lines are reported with their line numbers and skipped (exit 1).
One run at a time per output: a second run on an output in use is refused (exit 1)."""


@dataclass(slots=True, frozen=True)
class EmbedItem:
    """One input line of ``flyllm embed``: its id, line number and text."""

    id: JsonId
    line: int
    text: str


_FIELDS = ("id", "text")


def parse_embed_line(text: str | bytes, line: int) -> EmbedItem:
    """The text on one input line, or BatchInputError saying what is wrong."""
    obj = load_line(text, line)
    if not isinstance(obj, dict):
        raise BatchInputError(line, "expected a JSON object")
    for key in obj:
        if key not in _FIELDS:
            raise BatchInputError(line, f"unknown field {key!r}; valid fields: id, text")
    item_id = obj.get("id", line)
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        raise BatchInputError(line, "id must be a string or an integer")
    value = obj.get("text")
    if not isinstance(value, str):
        raise BatchInputError(line, 'needs a "text" (a string)')
    return EmbedItem(item_id, line, value)


def vector_json(vector: Sequence[float]) -> list[float]:
    """The vector as JSON numbers: float32 values to 9 significant digits, the shortest that
    always reads back to the same float32 (a float32 printed as a double takes 17)."""
    return [float(f"{x:.9g}") for x in vector]


def vector_base64(vector: Sequence[float]) -> str:
    """The base64 of the vector's little-endian float32 bytes, as OpenAI's
    ``encoding_format="base64"``."""
    values = vector if isinstance(vector, array) and vector.typecode == "f" else array("f", vector)
    if sys.byteorder != "little":
        values = array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


ENCODERS: dict[str, Callable[[Sequence[float]], Any]] = {
    "float": vector_json,
    "base64": vector_base64,
}


def embedding_record(result: EmbeddingResult, item_id: JsonId, encoding: str) -> dict[str, Any]:
    """The output line of one text's result (``encoding`` "float" or "base64")."""
    vector = result.vector if result.success else None
    return {
        "id": item_id,
        "success": result.success,
        "vector": None if vector is None else ENCODERS[encoding](vector),
        "encoding": encoding,
        "dimensions": None if vector is None else len(vector),
        "error": result.error,
        "error_kind": result.error_kind,
        "provider": result.provider,
        "model": result.model,
        "instance_id": result.instance_id,
        "usage": dataclasses.asdict(result.usage),
        "latency": round(result.latency, 4),
        "attempts": result.attempts,
    }


def embed_kind(
    task: str | None,
    batch_size: int | None = None,
    *,
    dimensions: int | None = None,
    input_type: str | None = None,
    encoding: str = "float",
) -> JobKind[EmbedItem]:
    """The ``flyllm embed`` job for the batch runner: each worker embeds ``batch_size`` texts
    (else ``DEFAULT_GROUP``) with one ``embed_batch`` call, its requests one at a time (the
    runner's workers are the concurrency)."""
    from flyllm.cli.batchrun import JobKind, Outcome

    async def answer(manager: LlmManager, items: list[EmbedItem]) -> list[Outcome]:
        results = await manager.embed_batch(
            [item.text for item in items], task, batch_size, 1,
            dimensions=dimensions, input_type=input_type,
        )  # fmt: skip
        return [
            (embedding_record(result, item.id, encoding), result.success)
            for result, item in zip(results, items, strict=True)
        ]

    return JobKind("embed", parse_embed_line, answer, take=batch_size or DEFAULT_GROUP)


def add(commands: Any) -> None:
    """Add the ``embed`` sub-parser."""
    embed = commands.add_parser(
        "embed",
        help="embed a JSONL file of texts into a JSONL file of vectors (resumable)",
        formatter_class=FORMATTER,
        description=_HELP,
        epilog="examples:\n  flyllm embed texts.jsonl vectors.jsonl --task embed\n"
        "  flyllm embed texts.jsonl vectors.jsonl --vectors base64 --max-concurrency 8\n"
        "  flyllm usage vectors.jsonl",
    )
    embed.add_argument("input", help="the JSONL input file")
    embed.add_argument("output", help="the JSONL output file (appended to, for resume)")
    embed.add_argument("--task", help="the task whose instances embed (default: none)")
    embed.add_argument(
        "--batch-size",
        type=positive,
        metavar="N",
        help="at most N texts a request (default: as many as the providers' limits and the "
        f"instances' tpm allow, from groups of {DEFAULT_GROUP})",
    )
    embed.add_argument(
        "--max-concurrency",
        type=positive,
        default=16,
        metavar="N",
        help="requests in flight at once (default: 16)",
    )
    embed.add_argument(
        "--vectors",
        choices=("json", "base64"),
        default="json",
        help="vectors as JSON arrays (default) or base64 of little-endian float32",
    )
    embed.add_argument("--dimensions", type=positive, metavar="N", help="ask for N dimensions")
    embed.add_argument(
        "--input-type", choices=("document", "query"), help="what the texts are (default: none)"
    )
    add_run_options(embed, "embed again")


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm embed``; the exit code."""
    start_logging("error")
    check_files(args)
    return asyncio.run(_embed(load(args.config), args))


async def _embed(manager: LlmManager, args: argparse.Namespace) -> int:
    from flyllm.cli.batchrun import run_batch

    kind = embed_kind(
        args.task, args.batch_size, dimensions=args.dimensions, input_type=args.input_type,
        encoding="float" if args.vectors == "json" else "base64",
    )  # fmt: skip
    async with manager:
        report = await run_batch(
            manager, args.input, args.output, concurrency=args.max_concurrency,
            err=sys.stderr, strict=args.strict, retry_failed=not args.skip_failed, kind=kind,
        )  # fmt: skip
    return report.exit_code
