"""``flyllm batch``: answer a JSONL file of requests into a JSONL file of results, resumably
(the runner is ``flyllm.cli.batchrun``, the file formats ``flyllm.cli.batchfile``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from flyllm.cli._common import FORMATTER, UsageError, add_config, load, positive, start_logging
from flyllm.manager import LlmManager

__all__ = ["add", "add_run_options", "check_files", "run"]

_HELP = """\
Answer one request per input line, in parallel, appending one result per line to the
output as each finishes (so not in input order).

input line:   {"id": ..., "prompt": "..." | "messages": [{"role": ..., "content": ...}],
               "task": ..., "params": {...}, "system": ...}
              (a missing id is the line number; ids are strings or integers, unique)
output line:  {"id": ..., "success": ..., "content": ..., "error": ..., "error_kind": ...,
               "provider": ..., "model": ..., "instance_id": ..., "usage": {...},
               "finish_reason": ..., "latency": ..., "attempts": ...}

Resume: the output is append-only and the last line of an id wins. Running the same
command again skips the ids whose last line succeeded and asks the others again.
Every finished result is on disk whatever stops the run (Ctrl-C, a crash, kill -9).
Malformed input lines are reported with their line numbers and skipped (exit 1).
One run at a time per output: a second run on an output in use is refused (exit 1)."""


def add(commands: Any) -> None:
    """Add the ``batch`` sub-parser."""
    batch = commands.add_parser(
        "batch",
        help="answer a JSONL file of requests into a JSONL file of results (resumable)",
        formatter_class=FORMATTER,
        description=_HELP,
        epilog="examples:\n  flyllm batch prompts.jsonl -o results.jsonl --concurrency 32\n"
        "  flyllm usage results.jsonl",
    )
    batch.add_argument("input", help="the JSONL input file")
    batch.add_argument(
        "-o", "--output", required=True, help="the JSONL output file (appended to, for resume)"
    )
    batch.add_argument(
        "--concurrency",
        type=positive,
        metavar="N",
        help="requests in flight at once (default: the config's max_concurrency, 64)",
    )
    add_run_options(batch, "ask again")


def add_run_options(parser: argparse.ArgumentParser, again: str) -> None:
    """The options every run of the batch runner takes: ``--strict``, ``--skip-failed``
    (whose help says what is done ``again`` to a failed id) and ``--config``."""
    parser.add_argument(
        "--strict",
        action="store_true",
        help="send nothing if any input line is malformed (exit 2); default: report and skip",
    )
    parser.add_argument(
        "--skip-failed",
        action="store_true",
        help=f"on resume, do not {again} the ids whose last result failed",
    )
    add_config(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm batch``; the exit code."""
    start_logging("error")
    check_files(args)
    return asyncio.run(_batch(load(args.config), args))


def check_files(args: argparse.Namespace) -> None:
    """UsageError unless the input exists and the output can be written beside it."""
    if not os.path.isfile(args.input):
        raise UsageError(f"{args.input}: no such input file")
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise UsageError("the output file must not be the input file")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise UsageError(f"{args.output}: no such directory {folder}")


async def _batch(manager: LlmManager, args: argparse.Namespace) -> int:
    from flyllm.cli.batchrun import run_batch

    async with manager:
        report = await run_batch(
            manager,
            args.input,
            args.output,
            concurrency=args.concurrency or manager.max_concurrency,
            err=sys.stderr,
            strict=args.strict,
            retry_failed=not args.skip_failed,
        )
    return report.exit_code
