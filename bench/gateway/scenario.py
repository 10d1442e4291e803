"""Scenario 9, gateways: the same OpenAI-format load through each gateway to one fast upstream.

One upstream process (:mod:`bench.gateway.upstream`) serves every gateway of the run in turn.
Each gateway is started pinned to the first CPU of this process's affinity (the gateway core);
the upstream and the load generator (:mod:`bench.gateway.load`, a fresh process per gateway)
are pinned to the others. With a single CPU nothing is pinned, and the results say so.

Per gateway, against the figures of ``none`` (no gateway) in the same run:

    added latency    p50 and p99 at concurrency 1, non-streamed, minus none's
    throughput       the highest rate of a ladder step (concurrency 1, 2, 4...) whose p99 stays
                     within the bound (``gateway_p99_bound_ms``) with no failed request
    TTFC added       time to the first content chunk of a stream at concurrency 1, minus none's
    CPU/request      the gateway's process tree's CPU time over the requests of that step
    peak RSS         the tree's peak resident memory (``VmHWM``) at the end

then the ratios against the plain proxy, Portkey and LiteLLM, and the issue's targets for
flyllm as PASS/MISS lines (n/a when flyllm or the gateway it is compared with did not run).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.core import ChildError, child_env, run_child
from bench.gateway.contenders import Unavailable, pin, start_gateway
from bench.report import Verdict

__all__ = ["core_split", "derive", "gateway_targets", "run_gateways"]

Figures = dict[str, Any]


def core_split() -> tuple[set[int] | None, set[int] | None]:
    """(gateway cores, load cores): the first CPU this process may use, and the rest; both
    None when there is only one (nothing pinned)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


@contextmanager
def upstream_process(cores: set[int] | None) -> Iterator[str]:
    """Start the fixed-answer upstream pinned to ``cores``; yield its base URL (``.../v1``)."""
    command = [sys.executable, "-m", "bench.gateway.upstream", "--port", "0"]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env=child_env(), preexec_fn=pin(cores)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("base_url="):
            raise RuntimeError(f"the bench upstream did not start: {line!r}")
        yield line.strip().removeprefix("base_url=")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def run_gateways(names: tuple[str, ...], phases: Figures) -> Figures:
    """Measure each gateway of ``names`` in turn with the load ``phases`` (the load
    generator's job without its target); an unavailable gateway is recorded as such."""
    gateway_cores, load_cores = core_split()
    figures: Figures = {
        "pinning": {
            "gateway_cores": sorted(gateway_cores) if gateway_cores else None,
            "load_and_upstream_cores": sorted(load_cores) if load_cores else None,
        },
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "p99_bound_ms": phases["bound_ms"],
        "by_gateway": {},
    }
    with upstream_process(load_cores) as upstream, tempfile.TemporaryDirectory() as tmp:
        for name in names:
            _progress(f"gateway {name}")
            figures["by_gateway"][name] = _one(name, upstream, Path(tmp), phases, load_cores)
    figures["derived"] = derive(figures["by_gateway"], float(phases["bound_ms"]))
    figures["targets"] = [v.to_json() for v in gateway_targets(figures["derived"])]
    return figures


def _one(
    name: str, upstream: str, workdir: Path, phases: Figures, load_cores: set[int] | None
) -> Figures:
    try:
        with start_gateway(name, upstream, workdir, core_split()[0]) as gateway:
            job = {**phases, "url": gateway.url, "model": gateway.model}
            job |= {"headers": gateway.headers, "gateway_pid": gateway.pid}
            result = run_child(job, 600.0, "bench.gateway.load", pin(load_cores))
            return {**result, "version": gateway.version, "notes": gateway.notes}
    except Unavailable as exc:
        message = f"contender unavailable: {exc}"
        print(f"  !! {name}: {message}", file=sys.stderr, flush=True)
        return {"unavailable": message}
    except ChildError as exc:
        print(f"  !! {name}: {exc}", file=sys.stderr, flush=True)
        return {"error": str(exc)}


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and math.isfinite(value)
    return float(value) if ok else None


def _best_step(ladder: list[Figures], bound_ms: float) -> Figures | None:
    """The ladder step with the highest rate whose p99 is within the bound, none failed."""
    within = [
        s
        for s in ladder
        if s["failures"] == 0 and (p99 := _number(s["p99_ms"])) is not None and p99 <= bound_ms
    ]
    return max(within, key=lambda s: s["rps"], default=None)


def _minus(a: Any, b: Any) -> float | None:
    x, y = _number(a), _number(b)
    return None if x is None or y is None else x - y


def derive(by_gateway: Figures, bound_ms: float) -> Figures:
    """The reported figures of each measured gateway (added latency against ``none``'s) and
    the ratios between gateways."""
    none = by_gateway.get("none", {})
    measured = {n: f for n, f in by_gateway.items() if "latency" in f}
    out: Figures = {}
    for name, f in measured.items():
        step = _best_step(f.get("ladder", []), bound_ms)
        base = none if "latency" in none else {}
        out[name] = {
            "added_p50_ms": _minus(f["latency"]["p50_ms"], base.get("latency", {}).get("p50_ms")),
            "added_p99_ms": _minus(f["latency"]["p99_ms"], base.get("latency", {}).get("p99_ms")),
            "ttfc_added_p50_ms": _minus(
                f["ttfc"]["ttfc_p50_ms"], base.get("ttfc", {}).get("ttfc_p50_ms")
            ),
            "ttfc_added_p99_ms": _minus(
                f["ttfc"]["ttfc_p99_ms"], base.get("ttfc", {}).get("ttfc_p99_ms")
            ),
            "rps_at_bound": step["rps"] if step else None,
            "concurrency_at_bound": step["concurrency"] if step else None,
            "cpu_ms_per_request": step["gateway_cpu_ms_per_request"] if step else None,
            "cpu_ms_per_request_c1": f["latency"]["gateway_cpu_ms_per_request"],
            "peak_rss_mb": f.get("gateway_peak_rss_mb"),
            "failures": f["latency"]["failures"] + f["ttfc"]["failures"],
        }
    for name, d in out.items():
        if name == "none":
            continue
        for other in ("plain", "portkey", "litellm"):
            if other == name or other not in out:
                continue
            for key in ("rps_at_bound", "cpu_ms_per_request", "added_p99_ms"):
                mine, theirs = _number(d[key]), _number(out[other][key])
                if mine is not None and theirs is not None and theirs > 0:
                    d[f"{key}/{other}"] = mine / theirs
    return out


def gateway_targets(derived: Figures) -> list[Verdict]:
    """The issue's targets for flyllm serve, judged on this run (n/a for what did not run)."""
    fly = derived.get("flyllm", {})

    def value(name: str, key: str) -> float | None:
        return _number(derived.get(name, {}).get(key))

    def judged(name: str, mine: float | None, bound: str, ok: bool | None) -> Verdict:
        return Verdict(name, mine, bound, None if mine is None or ok is None else ok)

    p99, portkey_p99 = value("flyllm", "added_p99_ms"), value("portkey", "added_p99_ms")
    verdicts = [
        judged("gateway: flyllm added p99 at c=1, ms", p99, "< 1", p99 is not None and p99 < 1),
        judged(
            "gateway: flyllm added p99 at c=1 - Portkey's, ms",
            None if p99 is None or portkey_p99 is None else p99 - portkey_p99,
            "<= 0",
            None if p99 is None or portkey_p99 is None else p99 <= portkey_p99,
        ),
    ]
    for key, other, bound, at_least in (
        ("cpu_ms_per_request", "plain", 2.0, False),
        ("rps_at_bound", "portkey", 2.5, True),
        ("rps_at_bound", "litellm", 15.0, True),
    ):
        ratio = _number(fly.get(f"{key}/{other}"))
        met = None if ratio is None else (ratio >= bound if at_least else ratio <= bound)
        what = "CPU per request" if key.startswith("cpu") else "throughput per core"
        sign = ">=" if at_least else "<="
        verdicts.append(Verdict(f"gateway: flyllm / {other} {what}", ratio, f"{sign} {bound}", met))
    return verdicts
