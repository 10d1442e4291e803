"""Run the benchmarks and write bench/results/latest.json."""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

from bench.core import run_core


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests per measured run")
    parser.add_argument("--skip-emulator", action="store_true", help="skip the emulator's rate")
    args = parser.parse_args()
    results: dict[str, object] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    if not args.skip_emulator:
        from bench.emulator_rate import measure

        rate = measure(20_000, 64)
        print(f"emulator: {rate:.0f} requests/s (own process, keep-alive, 64 connections)\n")
        results["emulator_rps"] = rate
    results["core"] = run_core(args.requests)
    out = pathlib.Path(__file__).parent / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
