"""Usage accounting: per-instance token totals and the printed usage table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flyllm.instance import InstanceHealth

__all__ = ["InstanceUsage", "format_health_table", "format_usage_table"]


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


_COLUMNS = ("ID", "Provider", "Model", "Prompt Tokens", "Completion Tokens", "Total Tokens")


def format_usage_table(rows: Iterable[InstanceUsage]) -> str:
    """The usage table as the original FlyLLM prints it, with a total line."""
    rows = list(rows)
    model_width = max([30, *(len(r.model) + 2 for r in rows)])
    provider_width = max([18, *(len(r.provider) + 2 for r in rows)])
    fmt = f"{{:<5}} {{:<{provider_width}}} {{:<{model_width}}} {{:>15}} {{:>18}} {{:>15}}"
    rule = "-" * len(fmt.format(*_COLUMNS))
    lines = ["--- Token Usage Statistics ---", fmt.format(*_COLUMNS), rule]
    for r in rows:
        lines.append(
            fmt.format(
                r.id, r.provider, r.model, r.prompt_tokens, r.completion_tokens, r.total_tokens
            )
        )
    lines.append(rule)
    lines.append(
        fmt.format(
            "",
            "TOTAL",
            "",
            sum(r.prompt_tokens for r in rows),
            sum(r.completion_tokens for r in rows),
            sum(r.total_tokens for r in rows),
        )
    )
    return "\n".join(lines)


def format_health_table(rows: Iterable[InstanceHealth]) -> str:
    """The instances' health as a table: state, failures and cooldown left."""
    rows = list(rows)
    name_width = max([24, *(len(r.name) + 2 for r in rows)])
    fmt = f"{{:<5}} {{:<{name_width}}} {{:<10}} {{:>12}} {{:>9}} {{:>9}} {{:>12}}  {{}}"
    header = fmt.format("ID", "Instance", "State", "Consecutive", "Failures", "Requests",
                        "Cooldown (s)", "Reason")  # fmt: skip
    lines = ["--- Instance Health ---", header, "-" * len(header)]
    for r in rows:
        cooldown = f"{r.cooldown_left:.1f}" if r.cooldown_left else "-"
        lines.append(fmt.format(r.id, r.name, r.state, r.consecutive_failures, r.failures,
                                r.requests, cooldown, r.reason))  # fmt: skip
    return "\n".join(lines)
