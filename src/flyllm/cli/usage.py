"""``flyllm usage``: the token usage and cost of a batch output file, or of a shared state
store's totals."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

from flyllm._display import json_text, mask_url
from flyllm.cli._common import UsageError
from flyllm.types import Usage

__all__ = ["add", "run"]


def add(commands: Any) -> None:
    """Add the ``usage`` sub-parser."""
    usage = commands.add_parser(
        "usage",
        help="print the token usage of a batch output file",
        description="Sum the final result of each id in a `flyllm batch` output per provider "
        "and model: requests, failures, prompt, completion and total tokens, and the cost at "
        "the bundled prices (unknown where a model has none).",
    )
    usage.add_argument("output", nargs="?", help="a JSONL output file of `flyllm batch`")
    usage.add_argument(
        "--state",
        metavar="URL",
        help="read the usage totals of a shared state store (redis://...) instead",
    )
    usage.add_argument("--namespace", default="flyllm", help="the store's namespace (flyllm)")
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm usage``; the exit code."""
    from flyllm.cli.batchfile import bundled_cost, format_usage_rows, summarize_usage

    if args.state:
        return _usage_from_state(args)
    if args.output is None:
        raise UsageError("give a batch output file, or --state URL")
    if not os.path.isfile(args.output):
        raise UsageError(f"{args.output}: no such file")
    rows, unreadable = summarize_usage(args.output)
    if unreadable:
        print(f"flyllm usage: {unreadable} unreadable line(s) ignored", file=sys.stderr)
    if not args.json:
        print(format_usage_rows(rows, cost=bundled_cost))
        return 0
    data = []
    for row in rows:
        data.append(dataclasses.asdict(row))
        data[-1]["cost_usd"] = bundled_cost(row.provider, row.model, row.usage)
    counts = ("requests", "failures", "prompt_tokens", "completion_tokens", "total_tokens",
              "cached_tokens")  # fmt: skip
    total: dict[str, Any] = {k: sum(row[k] for row in data) for k in counts}
    costs = [row["cost_usd"] for row in data]
    total["cost_usd"] = sum(c for c in costs if c is not None)
    total["cost_complete"] = None not in costs
    print(json_text({"rows": data, "total": total}))
    return 0


def _usage_from_state(args: argparse.Namespace) -> int:
    """The usage totals a shared state store kept, across processes and restarts."""
    from flyllm.pricing import lookup_price
    from flyllm.routing.redis_state import RedisStore
    from flyllm.usage import InstanceUsage, format_usage_table

    async def read() -> list[dict[str, Any]]:
        store = RedisStore(args.state, namespace=args.namespace)
        try:
            return await store.all_totals()
        finally:
            await store.aclose()

    rows = asyncio.run(read())
    for row in rows:
        row["base_url"] = mask_url(row["base_url"])
        price = lookup_price(row["provider"], row["model"])
        usage = Usage(row["prompt_tokens"], row["completion_tokens"], row["total_tokens"],
                      row["cached_tokens"])  # fmt: skip
        row["cost_usd"] = price.cost(usage) if price is not None else None
    if args.json:
        print(json_text({"rows": rows}))
        return 0
    fields = ("name", "provider", "model", "prompt_tokens", "completion_tokens",
              "total_tokens", "requests", "failures", "cached_tokens")  # fmt: skip
    table = [InstanceUsage(id=i, **{f: r[f] for f in fields}) for i, r in enumerate(rows)]
    print(format_usage_table(table, [r["cost_usd"] for r in rows]))
    return 0
