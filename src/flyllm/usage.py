"""Usage accounting: the ledger entry every count goes through (``UsageTally``, defined beside
the instance that keeps one, re-exported here), per-instance totals and the printed usage and
health tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flyllm._display import table_cell
from flyllm.routing.instance import UsageTally
from flyllm.types import Usage

if TYPE_CHECKING:
    from flyllm.routing.instance import InstanceHealth, LlmInstance

__all__ = [
    "InstanceUsage",
    "UsageTally",
    "format_health_table",
    "format_usage_table",
    "instance_cost",
    "usage_report",
]


@dataclass(slots=True, frozen=True)
class InstanceUsage:
    """One instance's totals since the manager started.

    ``prompt_tokens`` includes cached input (kept apart in ``cached_tokens``); ``requests``
    counts attempts sent to the instance and ``failures`` the ones that failed.
    """

    id: int
    name: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    requests: int
    failures: int
    cached_tokens: int = 0
    average_latency: float = 0.0


_COLUMNS = (
    "ID", "Provider", "Model", "Prompt Tokens", "Completion Tokens", "Total Tokens", "Cost (USD)"
)  # fmt: skip


def _money(cost: float | None) -> str:
    return "unknown" if cost is None else f"{cost:.6f}"


def format_usage_table(
    rows: Iterable[InstanceUsage], costs: Sequence[float | None] | None = None
) -> str:
    """The usage table as the original FlyLLM prints it, with a cost column (``costs`` in USD
    per row, None where the price is unknown) and a total line."""
    rows = [
        dataclasses.replace(r, provider=table_cell(r.provider), model=table_cell(r.model))
        for r in rows
    ]
    costs = list(costs) if costs is not None else [None] * len(rows)
    model_width = max([30, *(len(r.model) + 2 for r in rows)])
    provider_width = max([18, *(len(r.provider) + 2 for r in rows)])
    fmt = f"{{:<5}} {{:<{provider_width}}} {{:<{model_width}}} {{:>15}} {{:>18}} {{:>15}} {{:>12}}"
    rule = "-" * len(fmt.format(*_COLUMNS))
    lines = ["--- Token Usage Statistics ---", fmt.format(*_COLUMNS), rule]
    for r, cost in zip(rows, costs, strict=True):
        lines.append(
            fmt.format(
                r.id,
                r.provider,
                r.model,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                _money(cost),
            )
        )
    known = [c for c in costs if c is not None]
    total_cost = _money(sum(known)) if known else "unknown"
    if known and len(known) < len(costs):
        total_cost += "+"  # some prices unknown: at least this much
    lines.append(rule)
    lines.append(
        fmt.format(
            "",
            "TOTAL",
            "",
            sum(r.prompt_tokens for r in rows),
            sum(r.completion_tokens for r in rows),
            sum(r.total_tokens for r in rows),
            total_cost,
        )
    )
    return "\n".join(lines)


def format_health_table(rows: Iterable[InstanceHealth]) -> str:
    """The instances' health as a table: state, failures and cooldown left."""
    rows = list(rows)
    clean = table_cell
    name_width = max([24, *(len(r.name) + 2 for r in rows)])
    fmt = f"{{:<5}} {{:<{name_width}}} {{:<10}} {{:>12}} {{:>9}} {{:>9}} {{:>12}}  {{}}"
    header = fmt.format("ID", "Instance", "State", "Consecutive", "Failures", "Requests",
                        "Cooldown (s)", "Reason")  # fmt: skip
    lines = ["--- Instance Health ---", header, "-" * len(header)]
    for r in rows:
        cooldown = f"{r.cooldown_left:.1f}" if r.cooldown_left else "-"
        lines.append(fmt.format(r.id, clean(r.name), r.state, r.consecutive_failures,
                                r.failures, r.requests, cooldown, clean(r.reason)))  # fmt: skip
    return "\n".join(lines)


def _usage_of(row: InstanceUsage) -> Usage:
    return Usage(row.prompt_tokens, row.completion_tokens, row.total_tokens, row.cached_tokens)


def _cost(instance: LlmInstance | None, usage: Usage) -> float | None:
    price = instance.model_price() if instance is not None else None
    return None if price is None else price.cost(usage)


def _task_entry(task: str | None, tally: UsageTally, cost: float, complete: bool) -> dict[str, Any]:
    return {"task": task, **dataclasses.asdict(tally), "cost_usd": cost, "cost_complete": complete}


def instance_cost(instance: LlmInstance, row: InstanceUsage) -> float | None:
    """An instance's cost in USD from its usage row (None: price unknown)."""
    return _cost(instance, _usage_of(row))


def usage_report(
    instances: Sequence[LlmInstance],
    rows: Sequence[InstanceUsage],
    by_id: Mapping[int, LlmInstance],
    task_usage: Mapping[tuple[str | None, int], UsageTally],
) -> dict[str, Any]:
    """The data of LlmManager.usage_report(): per instance, per task and total."""
    report_rows = [
        {**dataclasses.asdict(r), "cost_usd": instance_cost(i, r)}
        for i, r in zip(instances, rows, strict=True)
    ]
    tallies: dict[str | None, UsageTally] = {}
    costs: dict[str | None, tuple[float, bool]] = {}
    for (task, instance_id), tally in task_usage.items():
        tallies.setdefault(task, UsageTally()).add(tally)
        cost = _cost(by_id.get(instance_id), tally.usage)
        known, complete = costs.get(task, (0.0, True))
        if cost is None:  # an unknown price matters only when something was spent
            costs[task] = (known, complete and tally.prompt_tokens + tally.completion_tokens == 0)
        else:
            costs[task] = (known + cost, complete)
    total = UsageTally()
    for tally in tallies.values():
        total.add(tally)
    by_task = [_task_entry(task, tallies[task], *costs[task]) for task in tallies]
    total_entry = _task_entry(None, total, sum((c for c, _ in costs.values()), 0.0),
                              all(ok for _, ok in costs.values()))  # fmt: skip
    del total_entry["task"]
    return {"instances": report_rows, "tasks": by_task, "total": total_entry}
