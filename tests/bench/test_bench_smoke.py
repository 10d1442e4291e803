"""A smoke run of the benchmark, so that it cannot rot: ``python -m bench --quick`` with the
bare loop and flyllm (LiteLLM runs only in the full run: it is not a test dependency), and the
gateway scenario with no gateway, the plain proxy and flyllm serve (measured once it exists,
reported unavailable until then; LiteLLM's proxy and Portkey run only in the full run).

It checks the output's shape (every scenario reported, the figures present and positive, the
targets judged) and never speed.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.scenarios import QUICK, SCENARIOS

# One quick run (about 20 s on an idle 2-core machine) feeds every test of the module; the
# bounds are generous so that a loaded machine slows it without failing it.
pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]
CONTENDERS = ("bare", "flyllm")
GATEWAYS = ("none", "plain", "flyllm")
Results = dict[str, Any]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Results, str]:
    """The JSON results and the printed tables of one quick run."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, "-m", "bench", "--quick", "--skip-emulator"]
    command += ["--contenders", ",".join(CONTENDERS), "--out", str(out)]
    command += ["--gateways", ",".join(GATEWAYS)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=200)
    assert run.returncode == 0, run.stderr[-4000:]
    results: Results = json.loads(out.read_text())
    return results, run.stdout


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def figures_of(results: Results) -> list[Results]:
    """Every child's figures, wherever they sit in the results."""
    found: list[Results] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "blocked_hosts" in node:
                found.append(node)
            for value in node.values():
                walk(value)

    walk(results["scenarios"])
    return found


def test_every_scenario_ran_without_errors(smoke: tuple[Results, str]) -> None:
    results, stdout = smoke
    assert results["mode"] == "quick"
    assert list(results["scenarios"]) == list(SCENARIOS)
    children = figures_of(results)
    per_concurrency = 2 * len(QUICK.concurrencies) * len(CONTENDERS)  # throughput and mixed
    selection = len(QUICK.selection_strategies)  # flyllm only
    embeddings = 1  # flyllm only
    # streams, faults, memory and tools (at c=64 only): one child per contender each
    assert len(children) == per_concurrency + 4 * len(CONTENDERS) + selection + embeddings
    for figures in children:
        assert "error" not in figures
        assert figures["blocked_hosts"] == []
    for number in range(1, 11):
        assert f"\n{number}. " in "\n" + stdout


def test_startup(smoke: tuple[Results, str]) -> None:
    startup = smoke[0]["scenarios"]["startup"]
    for module in ("aiohttp", "httpx", "flyllm"):
        assert positive(startup["modules"][module]["import_ms"])
        assert positive(startup["modules"][module]["rss_mb"])
    assert positive(startup["ratios"]["flyllm/aiohttp"])


@pytest.mark.parametrize("scenario", ["throughput", "mixed", "tools"])
def test_requests(smoke: tuple[Results, str], scenario: str) -> None:
    by_concurrency = smoke[0]["scenarios"][scenario]
    assert list(by_concurrency) == [f"c{c}" for c in QUICK.concurrencies]
    for by in by_concurrency.values():
        assert set(by) == {*CONTENDERS, "ratios"}
        for name in CONTENDERS:
            f = by[name]
            assert f["requests"] == f["successes"] == QUICK.requests
            assert f["attempts"] == QUICK.requests
            for key in ("rps", "cpu_ms_per_request", "p50_ms", "p99_ms", "peak_rss_mb"):
                assert positive(f[key]), (name, key, f[key])
            assert f["p99_ms"] >= f["p50_ms"]
        assert positive(by["ratios"]["flyllm/bare"])


def test_streaming(smoke: tuple[Results, str]) -> None:
    streaming = smoke[0]["scenarios"]["streaming"]
    for name in CONTENDERS:
        f = streaming[name]
        assert f["successes"] == f["streams"] == QUICK.streams
        assert f["chunks_per_stream"] == QUICK.reply_tokens
        for key in ("cpu_us_per_chunk", "ttfc_p50_ms", "ttfc_p99_ms"):
            assert positive(f[key]), (name, key)
    for key in ("cpu_per_chunk", "ttfc_p50", "ttfc_p99"):
        assert positive(streaming["ratios"][key]["flyllm/bare"])


def test_faults(smoke: tuple[Results, str]) -> None:
    faults = smoke[0]["scenarios"]["faults"]
    bare, flyllm = faults["bare"], faults["flyllm"]
    assert bare["failures"] > 0  # the faults were injected; the bare loop does not retry
    assert bare["attempts"] == QUICK.fault_requests
    assert 0 < flyllm["success_rate"] <= 1
    assert flyllm["attempts_per_success"] >= 1
    assert positive(flyllm["cpu_ms_per_success"])
    assert positive(faults["ratios"]["cpu_per_success"]["flyllm/bare"])


def test_selection(smoke: tuple[Results, str]) -> None:
    selection = smoke[0]["scenarios"]["selection"]
    assert "least_recently_used" in selection
    for f in selection.values():
        sizes = [str(n) for n in QUICK.selection_sizes]
        assert set(f["selection_ns"]) == {"fixed", "spread", "untasked"}
        for by_size in f["selection_ns"].values():
            assert all(positive(by_size[n]) for n in sizes)
            assert positive(by_size["growth"])
        assert all(positive(f["e2e_cpu_ms_per_request"][n]) for n in sizes)


def test_memory(smoke: tuple[Results, str]) -> None:
    memory = smoke[0]["scenarios"]["memory"]
    for name in CONTENDERS:
        f = memory[name]
        assert f["requests"] == f["successes"] == QUICK.memory_requests
        assert f["rss_peak_mb"] >= f["rss_before_mb"] > 0
        assert f["samples"] > 0


def test_embeddings(smoke: tuple[Results, str]) -> None:
    f = smoke[0]["scenarios"]["embeddings"]
    assert f["texts"] == f["successes"] == QUICK.embed_texts
    assert f["instances"] == 4 and f["requests"] >= 1
    assert f["tokens"] >= QUICK.embed_texts  # billed: at least a word a text
    for key in ("seconds", "cpu_us_per_input", "peak_rss_mb"):
        assert positive(f[key]), (key, f[key])
    assert 0 < f["busiest_minute_over_tpm"] <= 1  # the limits held
    assert f["minimum_s"] == 0 and f["over_minimum"] is None  # the quick size never waits
    assert "9. Embeddings under rpm/tpm limits" in smoke[1]


def test_targets_are_judged(smoke: tuple[Results, str]) -> None:
    results, stdout = smoke
    targets = {t["name"]: t for t in results["targets"]}
    assert len(targets) == 6
    litellm = [t for name, t in targets.items() if "LiteLLM" in name]
    assert len(litellm) == 2 and all(t["met"] is None for t in litellm)
    # The limits bind only past a minute: the quick run has no minimum to compare with.
    assert targets["embeddings wall time / the limits' minimum"]["met"] is None
    measured = [t for name, t in targets.items() if "LiteLLM" not in name and "embed" not in name]
    assert all(isinstance(t["met"], bool) and positive(t["value"]) for t in measured)
    assert "Targets" in stdout


def flyllm_serves() -> bool:
    """Whether this tree has ``flyllm serve`` (its help exits 0)."""
    command = [sys.executable, "-m", "flyllm", "serve", "--help"]
    return subprocess.run(command, capture_output=True, cwd=ROOT, timeout=60).returncode == 0


def test_gateway(smoke: tuple[Results, str]) -> None:
    results, stdout = smoke
    gateway = results["scenarios"]["gateway"]
    assert list(gateway["by_gateway"]) == list(GATEWAYS)
    measured = ["none", "plain", *(["flyllm"] if flyllm_serves() else [])]
    for name in measured:
        f = gateway["by_gateway"][name]
        assert "unavailable" not in f and "error" not in f, f
        assert f["latency"]["requests"] > 0 and f["latency"]["failures"] == 0
        assert f["ttfc"]["requests"] > 0 and f["ttfc"]["failures"] == 0
        assert 1 <= len(f["ladder"]) <= len(QUICK.gateway_ladder)
        assert all(positive(step["rps"]) for step in f["ladder"])
        d = gateway["derived"][name]
        for key in ("added_p50_ms", "added_p99_ms", "ttfc_added_p50_ms"):
            assert isinstance(d[key], float), (name, key)
        if name != "none":
            assert positive(d["cpu_ms_per_request_c1"]) and positive(d["peak_rss_mb"])
    assert gateway["derived"]["none"]["peak_rss_mb"] is None  # no gateway, no process
    if "flyllm" not in measured:
        reason = gateway["by_gateway"]["flyllm"]["unavailable"]
        assert reason.startswith("contender unavailable: exited with status ")
        assert re.search(rf"\nflyllm +{re.escape(reason)}\n", stdout)
    targets = {t["name"]: t["met"] for t in gateway["targets"]}
    assert len(targets) == 5
    judged_here = {
        "gateway: flyllm added p99 at c=1, ms",
        "gateway: flyllm / plain CPU per request",
    }
    for name, met in targets.items():
        # Portkey and LiteLLM are not in the smoke run: their comparisons are never judged
        expected = bool if "flyllm" in measured and name in judged_here else type(None)
        assert isinstance(met, expected), (name, met)
    assert "10. Gateways" in stdout and "targets (flyllm serve):" in stdout
    assert re.search(r"load generator against no gateway: \d+ rps, [\d.]+x the fastest", stdout)
