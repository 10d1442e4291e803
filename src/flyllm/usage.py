"""Usage accounting: per-instance token totals and the printed usage table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["InstanceUsage", "format_usage_table"]


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
