"""The printed tables (one per scenario, ratios beside the figures) and the target verdicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TABLES", "Verdict", "format_table", "verdicts"]

Figures = dict[str, Any]
_CONTENDERS = ("bare", "flyllm", "litellm")


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def format_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned. A row of
    two cells (a label and a message, as for a contender that failed) spans the table."""
    full = [r for r in rows if len(r) == len(headers)]
    widths = [max(len(h), *(len(r[i]) for r in full)) for i, h in enumerate(headers)]
    widths[0] = max(widths[0], *(len(r[0]) for r in rows))

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        if len(cells) != len(widths):
            return "  ".join([first, *cells[1:]])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [title, line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _error_row(name: str, figures: Figures, width: int = 0) -> list[str]:
    """A spanning row: the contender failed; the last line of its error says why."""
    lines = [x.strip() for x in str(figures["error"]).splitlines() if x.strip()]
    return [name, f"FAILED: {lines[-1][:120] if lines else 'no output'}"]


def _vs(ratios: Figures, name: str, key: str = "bare") -> str:
    return _fmt(ratios.get(f"{name}/{key}"), ".2f")


def startup_table(fig: Figures) -> str:
    """Scenario 1."""
    rows = []
    for name, m in fig["modules"].items():
        label = "(interpreter)" if name == "sys" else name
        ratio = fig["ratios"].get(f"{name}/aiohttp", 1.0 if name == "aiohttp" else None)
        rows.append(
            [
                label,
                _fmt(m["import_ms"], ".1f"),
                _fmt(ratio, ".2f"),
                _fmt(m["rss_mb"], ".1f"),
                _fmt(m["rss_over_interpreter_mb"], ".1f"),
            ]
        )
    headers = ["module", "import ms", "x aiohttp", "RSS MB", "+RSS MB"]
    return format_table("1. Start-up: import (fastest of fresh interpreters)", headers, rows)


def _requests_table(title: str, fig: Figures) -> str:
    headers = ["conc / contender", "req/s", "CPU ms/req", "x bare", "x litellm", "p50 ms"]
    headers += ["p99 ms", "peak RSS MB"]
    rows = []
    for key, by in fig.items():
        for name in _CONTENDERS:
            f = by.get(name)
            if f is None:
                continue
            label = f"{key[1:]:>4} {name}"
            if "error" in f:
                rows.append(_error_row(label, f, len(headers)))
                continue
            vs_litellm = _fmt(by["ratios"].get("flyllm/litellm"), ".3f") if name == "flyllm" else ""
            rows.append(
                [
                    label,
                    _fmt(f["rps"], ".0f"),
                    _fmt(f["cpu_ms_per_request"], ".3f"),
                    _vs(by["ratios"], name) if name != "bare" else "1.00",
                    vs_litellm,
                    _fmt(f["p50_ms"], ".2f"),
                    _fmt(f["p99_ms"], ".2f"),
                    _fmt(f["peak_rss_mb"], ".0f"),
                ]
            )
    return format_table(title, headers, rows)


def throughput_table(fig: Figures) -> str:
    """Scenario 2."""
    return _requests_table("2. Non-streaming throughput, 4 OpenAI instances", fig)


def mixed_table(fig: Figures) -> str:
    """Scenario 3."""
    return _requests_table("3. Mixed providers: OpenAI, Anthropic, Gemini, Mistral", fig)


def streaming_table(fig: Figures) -> str:
    """Scenario 4."""
    headers = ["contender", "streams", "chunks/stream", "CPU us/chunk", "x bare"]
    headers += ["TTFC p50 ms", "x bare", "TTFC p99 ms", "peak RSS MB"]
    r = fig["ratios"]
    rows = []
    for name in _CONTENDERS:
        f = fig.get(name)
        if f is None:
            continue
        if "error" in f:
            rows.append(_error_row(name, f, len(headers)))
            continue
        bare = name == "bare"
        rows.append(
            [
                name,
                f"{f['successes']}/{f['streams']}",
                _fmt(f["chunks_per_stream"], ".0f"),
                _fmt(f["cpu_us_per_chunk"], ".1f"),
                "1.00" if bare else _vs(r["cpu_per_chunk"], name),
                _fmt(f["ttfc_p50_ms"], ".2f"),
                "1.00" if bare else _vs(r["ttfc_p50"], name),
                _fmt(f["ttfc_p99_ms"], ".2f"),
                _fmt(f["peak_rss_mb"], ".0f"),
            ]
        )
    return format_table("4. Streaming", headers, rows)


def faults_table(fig: Figures) -> str:
    """Scenario 5."""
    headers = ["contender", "success %", "attempts/success", "CPU ms/success", "x bare"]
    headers += ["p50 ms", "p99 ms", "seconds"]
    rows = []
    for name in _CONTENDERS:
        f = fig.get(name)
        if f is None:
            continue
        if "error" in f:
            rows.append(_error_row(name, f, len(headers)))
            continue
        rows.append(
            [
                name,
                _fmt(100 * f["success_rate"], ".2f"),
                _fmt(f["attempts_per_success"], ".3f"),
                _fmt(f["cpu_ms_per_success"], ".3f"),
                "1.00" if name == "bare" else _vs(fig["ratios"]["cpu_per_success"], name),
                _fmt(f["p50_ms"], ".2f"),
                _fmt(f["p99_ms"], ".2f"),
                _fmt(f["seconds"], ".2f"),
            ]
        )
    title = "5. Faults: 2 of 4 instances fail 30% (500 or 429)"
    return format_table(title + " (bare: no retry, the floor)", headers, rows)


def selection_table(fig: Figures) -> str:
    """Scenario 6."""
    rows: list[list[str]] = []
    sizes: list[int] = []
    for strategy, f in fig.items():
        if "error" in f:
            rows.append(_error_row(strategy, f, 5))
            continue
        sizes = f["sizes"]
        for layout, by_size in f["selection_ns"].items():
            cells = [_fmt(by_size[str(n)] / 1000, ".2f") for n in sizes]
            growth = _fmt(by_size["growth"], ".2f")
            rows.append([f"{strategy} {layout} (us/select)", *cells, growth])
        e2e = f["e2e_cpu_ms_per_request"]
        cells = [_fmt(e2e[str(n)], ".3f") for n in sizes]
        rows.append([f"{strategy} end to end (CPU ms/req)", *cells, _fmt(e2e["growth"], ".2f")])
    headers = ["strategy / layout", *(f"{n} inst." for n in sizes or (10, 100, 1000))]
    headers.append(f"x {sizes[0] if sizes else 10}")
    return format_table("6. Routing cost as instances grow (50 tasks)", headers, rows)


def memory_table(fig: Figures) -> str:
    """Scenario 7."""
    headers = ["contender", "requests", "RSS before MB", "peak MB", "growth MB", "KB/request"]
    rows = []
    for name in _CONTENDERS:
        f = fig.get(name)
        if f is None:
            continue
        if "error" in f:
            rows.append(_error_row(name, f, len(headers)))
            continue
        rows.append(
            [
                name,
                str(f["requests"]),
                _fmt(f["rss_before_mb"], ".1f"),
                _fmt(f["rss_peak_mb"], ".1f"),
                _fmt(f["growth_mb"], ".1f"),
                _fmt(f["kb_per_request"], ".2f"),
            ]
        )
    return format_table("7. Memory while one batch is queued", headers, rows)


def tools_table(fig: Figures) -> str:
    """Scenario 8."""
    return _requests_table("8. Tool calls (one required call), mixed providers", fig)


def embeddings_table(fig: Figures) -> str:
    """Scenario 9."""
    title = "9. Embeddings under rpm/tpm limits (flyllm embed_batch, 4 instances)"
    headers = ["contender", "texts", "tokens", "requests", "seconds", "minimum s", "x minimum",
               "CPU us/input", "peak MB", "busiest min/tpm"]  # fmt: skip
    if "error" in fig:
        return format_table(title, headers, [_error_row("flyllm", fig)])
    row = [
        "flyllm",
        str(fig["texts"]),
        str(fig["tokens"]),
        str(fig["requests"]),
        _fmt(fig["seconds"], ".1f"),
        _fmt(fig["minimum_s"], ".0f"),
        _fmt(fig["over_minimum"], ".3f"),
        _fmt(fig["cpu_us_per_input"], ".1f"),
        _fmt(fig["peak_rss_mb"], ".1f"),
        _fmt(fig["busiest_minute_over_tpm"], ".3f"),
    ]
    return format_table(title, headers, [row])


_GATEWAY_COLUMNS = (
    ("added p50", "added_p50_ms", ".2f"),
    ("added p99", "added_p99_ms", ".2f"),
    ("TTFC added p50", "ttfc_added_p50_ms", ".2f"),
    ("rps at bound", "rps_at_bound", ".0f"),
    ("(c)", "concurrency_at_bound", "d"),
    ("CPU ms/req", "cpu_ms_per_request", ".3f"),
    ("x plain", "cpu_ms_per_request/plain", ".2f"),
    ("peak RSS MB", "peak_rss_mb", ".0f"),
)


def gateway_table(fig: Figures) -> str:
    """Scenario 10: a row per gateway (or why it did not run), the ratios between gateways,
    and the issue's targets for flyllm serve."""
    derived, pinning = fig["derived"], fig["pinning"]
    headers = ["gateway", "version", *(c[0] for c in _GATEWAY_COLUMNS)]
    rows: list[list[str]] = []
    for name, f in fig["by_gateway"].items():
        if "unavailable" in f or "error" in f:
            rows.append([name, f.get("unavailable") or _error_row(name, f)[1]])
            continue
        d = derived[name]
        version = "" if name == "none" else str(f.get("version") or "?")
        cells = [_fmt(d.get(k), spec) for _, k, spec in _GATEWAY_COLUMNS]
        if name == "plain":
            cells[6] = "1.00"
        rows.append([name, version, *cells])
    bound = fig["p99_bound_ms"]
    where = (
        f"gateway on CPU {pinning['gateway_cores']}, load and upstream on "
        f"{pinning['load_and_upstream_cores']}"
        if pinning["gateway_cores"]
        else "nothing pinned (one CPU)"
    )
    title = f"10. Gateways ({where}; latency in ms at c=1; rps at p99 <= {bound:g} ms)"
    out = [format_table(title, headers, rows)]
    none = derived.get("none")
    if none:
        line = f"load generator against no gateway: {_fmt(none['rps_at_bound'], '.0f')} rps"
        rates = {n: d["rps_at_bound"] for n, d in derived.items() if n != "none"}
        fastest = max((n for n in rates if rates[n]), key=lambda n: rates[n], default=None)
        if fastest and none["rps_at_bound"]:
            headroom = none["rps_at_bound"] / rates[fastest]
            line += f", {headroom:.1f}x the fastest gateway's ({fastest}): "
            line += "not the bottleneck" if headroom >= 2 else "WARNING: it may be the bottleneck"
        out.append(line)
    for name, f in fig["by_gateway"].items():
        if f.get("notes"):
            out.append(f"{name}: {f['notes']}")
    ratios = []
    for name, d in derived.items():
        for other in ("portkey", "litellm"):
            rps, cpu = d.get(f"rps_at_bound/{other}"), d.get(f"cpu_ms_per_request/{other}")
            if rps is not None or cpu is not None:
                ratios.append(
                    f"  {name} / {other}: throughput x{_fmt(rps, '.2f')}, CPU x{_fmt(cpu, '.2f')}"
                )
    if ratios:
        out += ["ratios:", *ratios]
    out.append("targets (flyllm serve):")
    out += ["  " + Verdict(**t).line() for t in fig["targets"]]
    return "\n".join(out)


TABLES: dict[str, Callable[[Figures], str]] = {
    "startup": startup_table,
    "throughput": throughput_table,
    "mixed": mixed_table,
    "streaming": streaming_table,
    "faults": faults_table,
    "selection": selection_table,
    "memory": memory_table,
    "tools": tools_table,
    "embeddings": embeddings_table,
    "gateway": gateway_table,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target: the figure measured in this run, its bound, and whether it was met (None:
    not measured in this run)."""

    name: str
    value: float | None
    bound: str
    met: bool | None

    def line(self) -> str:
        """``PASS``/``MISS``/``n/a`` and the figure."""
        status = {True: "PASS", False: "MISS", None: "n/a "}[self.met]
        return f"{status}  {self.name}: {_fmt(self.value, '.3f')} (target {self.bound})"

    def to_json(self) -> dict[str, Any]:
        """The verdict as recorded in the results."""
        return asdict(self)


def _get(fig: Figures, *keys: str) -> float | None:
    node: Any = fig
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def verdicts(scenarios: Figures) -> list[Verdict]:
    """The issue's targets, judged on this run's ratios."""

    def at_most(name: str, value: float | None, bound: float) -> Verdict:
        return Verdict(name, value, f"<= {bound}", None if value is None else value <= bound)

    c64 = ("throughput", "c64", "ratios")
    fly_ok = _get(scenarios, "faults", "flyllm", "success_rate")
    lite_ok = _get(scenarios, "faults", "litellm", "success_rate")
    both = fly_ok is not None and lite_ok is not None
    flat = _get(scenarios, "selection", "least_recently_used", "selection_ns", "fixed", "growth")
    imports = _get(scenarios, "startup", "ratios", "flyllm/aiohttp")
    return [
        at_most("flyllm / bare CPU per request, c=64", _get(scenarios, *c64, "flyllm/bare"), 1.5),
        at_most(
            "flyllm / LiteLLM CPU per request, c=64", _get(scenarios, *c64, "flyllm/litellm"), 0.1
        ),
        at_most("import flyllm / import aiohttp", imports, 1.5),
        Verdict(
            "faults: flyllm success rate - LiteLLM's",
            (fly_ok or 0.0) - (lite_ok or 0.0) if both else None,
            ">= 0",
            (fly_ok or 0.0) >= (lite_ok or 0.0) if both else None,
        ),
        at_most("selection at 1,000 / at 10 instances (fixed task)", flat, 1.5),
        at_most(
            "embeddings wall time / the limits' minimum",
            _get(scenarios, "embeddings", "over_minimum"),
            1.1,
        ),
    ]
