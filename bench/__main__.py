"""Run the benchmarks side by side, print a table per scenario and write the results as JSON.

``python -m bench`` (``make bench``) is the full run: the bare aiohttp loop, flyllm and
LiteLLM's Router on every scenario of :mod:`bench.scenarios`, then the targets' verdicts.
``--quick`` is a small run of the same; ``--contenders bare,flyllm`` leaves LiteLLM out (it is
left out anyway when it is not installed: it is the ``bench`` extra). The gateway scenario
(``--scenario gateway``) has its own contenders, ``--gateways none,plain,flyllm,litellm,portkey``;
one that cannot start is reported as unavailable, and the run goes on. Results go to
``bench/results/latest.json`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.contenders import CONTENDERS, Options
from bench.core import ROOT
from bench.gateway.contenders import GATEWAYS
from bench.report import TABLES, verdicts
from bench.scenarios import QUICK, SCENARIOS, Settings

DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run of every scenario")
    parser.add_argument("--requests", type=int, help="requests per measured run (scenarios 2, 3)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, from {', '.join(CONTENDERS)} (default: all)",
    )
    parser.add_argument(
        "--gateways",
        default=",".join(GATEWAYS),
        help=f"the gateway scenario's contenders, from {', '.join(GATEWAYS)} (default: all)",
    )
    parser.add_argument("--strategy", default=Options().strategy, help="flyllm's strategy")
    parser.add_argument("--skip-emulator", action="store_true", help="skip the emulator's rate")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else Settings()
    contenders = tuple(c.strip() for c in args.contenders.split(",") if c.strip())
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contender(s): {', '.join(sorted(unknown))}")
    if "litellm" in contenders and importlib.util.find_spec("litellm") is None:
        print("litellm is not installed (pip install -e '.[bench]'): left out\n", file=sys.stderr)
        contenders = tuple(c for c in contenders if c != "litellm")
    gateways = tuple(g.strip() for g in args.gateways.split(",") if g.strip())
    unknown = set(gateways) - set(GATEWAYS)
    if unknown:
        raise SystemExit(f"unknown gateway(s): {', '.join(sorted(unknown))}")
    changes: dict[str, Any] = {"contenders": contenders, "gateways": gateways}
    changes["options"] = dataclasses.replace(settings.options, strategy=args.strategy)
    if args.requests:
        changes["requests"] = args.requests
    return dataclasses.replace(settings, **changes)


def _provenance() -> dict[str, Any]:
    """What was measured: package versions, the commit (``dirty`` when src/ has changes) and
    where flyllm was imported from (the children inherit ``PYTHONPATH``, so a snapshot of
    another commit can be measured with ``PYTHONPATH=/path/to/src python -m bench``)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("flyllm", "aiohttp", "httpx", "litellm"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    git: dict[str, Any] = {}
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT
        )
        git = {"commit": head.stdout.strip() or None, "dirty": bool(status.stdout.strip())}
    except OSError:
        pass
    spec = importlib.util.find_spec("flyllm")
    source = Path(spec.origin).parent if spec and spec.origin else None
    # The commit describes what was measured only when flyllm came from this tree.
    git["measured_this_tree"] = source is not None and source.is_relative_to(ROOT)
    return {"versions": versions, "git": git, "flyllm_source": str(source)}


def _contenders(settings: Settings) -> dict[str, Any]:
    """How each contender is configured, as recorded in the results."""
    from bench.litellm_client import router_settings

    options = settings.options
    return {
        "bare": "one aiohttp session, round-robin over the instances, no retry",
        "flyllm": {"strategy": options.strategy, "max_attempts": options.max_attempts},
        "litellm": {
            **router_settings(options),
            "cooldowns": "LiteLLM's defaults (3 allowed failures a minute, then 5 s out)",
        },
    }


def _clean(value: Any) -> Any:
    """NaN (a figure with no sample) as null, so that the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen scenarios, printing each table as it completes; return the results."""
    settings = _settings(args)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mode": "quick" if args.quick else "full",
        "settings": settings.to_json(),
        **_provenance(),
        "contenders": _contenders(settings),
    }
    if not args.skip_emulator:
        from bench.emulator_rate import measure

        rate = measure(2_000 if args.quick else 20_000, 64)
        print(f"emulator: {rate:.0f} requests/s (own process, keep-alive, 64 connections)\n")
        results["emulator_rps"] = rate
    scenarios: dict[str, Any] = {}
    results["scenarios"] = scenarios
    for name in args.scenario or list(SCENARIOS):
        t0 = time.perf_counter()
        scenarios[name] = SCENARIOS[name](settings)
        print(TABLES[name](scenarios[name]))
        print(f"({time.perf_counter() - t0:.0f} s)\n", flush=True)
    judged = verdicts(scenarios)
    print("Targets (ratios measured in this run):")
    for verdict in judged:
        print("  " + verdict.line())
    results["targets"] = [v.to_json() for v in judged]
    results["duration_s"] = time.perf_counter() - started
    return results


def main() -> None:
    """Parse the command line, run, write the JSON file."""
    args = _parser().parse_args()
    results = run(args)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(results), indent=2) + "\n")
    print(f"\nwrote {out} ({results['duration_s']:.0f} s in all)")


if __name__ == "__main__":
    main()
