"""The nine scenarios: emulators started for each, one child process per contender.

Each function runs one :mod:`bench.run_one` child per contender, each against freshly started
emulator process(es) with the same settings, and returns the figures by contender with the
ratios beside them (each contender over the bare loop, flyllm over LiteLLM). Non-streamed
runs of the bare loop and flyllm (seconds each) are repeated, interleaved, and the one with
the least CPU kept. A contender that fails is recorded as ``{"error": ...}`` and the run goes
on.

1. startup     import time (fastest of fresh interpreters) and RSS after import.
2. throughput  non-streamed requests over 4 OpenAI instances at each concurrency.
3. mixed       the same over one OpenAI, Anthropic, Gemini and Mistral instance each.
4. streaming   streams of ~200 chunks (``--reply-tokens``) arriving one per ``--chunk-delay-ms``.
5. faults      2 of 4 instances fail 30% of requests, half 500, half 429 with a 0.1 s
               retry-after; attempts are counted by the emulators, not the clients.
6. selection   flyllm's routing cost at 10, 100 and 1,000 instances (:mod:`bench.selection`).
7. memory      RSS while one batch of 10,000 requests is queued (flyllm, and the bare loop for
               reference: LiteLLM has no batch call to queue them in).
8. tools       non-streamed requests that offer one tool and require a call, over one OpenAI,
               Anthropic, Gemini and Mistral instance each: the tool translation's cost (a
               request counts only when its answer holds the call).
9. embeddings  flyllm's ``embed_batch`` of 100,000 short texts over 4 emulated OpenAI
               instances limited in rpm and tpm: wall time against the least the limits allow,
               client CPU per input, peak RSS (flyllm only: the other contenders have no
               embeddings batch here).
10. gateway    OpenAI-format requests through each gateway (none, a plain aiohttp proxy,
               flyllm serve, LiteLLM's proxy, Portkey) to one fast upstream, the gateway
               pinned to its own core (:mod:`bench.gateway.scenario`); its contenders are
               ``Settings.gateways`` (``--gateways``), not ``contenders``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.contenders import CONTENDERS, Options
from bench.core import ChildError, emulator_process, emulator_processes, import_costs, run_child
from bench.gateway.contenders import GATEWAYS
from bench.wire import Target

__all__ = ["QUICK", "SCENARIOS", "Settings"]

Figures = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Settings:
    """The size of a run. The defaults are the full run the issue names; ``QUICK`` is small."""

    requests: int = 5000
    concurrencies: tuple[int, ...] = (1, 64, 256)
    streams: int = 1000
    stream_concurrency: int = 16
    reply_tokens: int = 200
    chunk_delay_ms: float = 1.0
    fault_requests: int = 5000
    fault_concurrency: int = 64
    fault_rate: float = 0.30
    retry_after_s: float = 0.1
    memory_requests: int = 10_000
    memory_concurrency: int = 64
    selection_sizes: tuple[int, ...] = (10, 100, 1000)
    selection_tasks: int = 50
    selection_run_ms: float = 50.0
    selection_strategies: tuple[str, ...] = ("least_recently_used", "random")
    e2e_requests: int = 2000
    embed_texts: int = 100_000
    embed_rpm: int = 60
    embed_tpm: int = 60_000
    embed_dimensions: int = 64
    embed_concurrency: int = 16
    import_repeat: int = 15
    repeats: int = 3
    contenders: tuple[str, ...] = CONTENDERS
    options: Options = field(default_factory=Options)
    gateways: tuple[str, ...] = GATEWAYS
    gateway_warmup_s: float = 1.0
    gateway_latency_s: float = 5.0
    gateway_ttfc_s: float = 5.0
    gateway_ladder: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    gateway_step_s: float = 3.0
    gateway_p99_bound_ms: float = 50.0
    """Throughput is the highest rate whose p99 stays within this bound."""

    def warmup(self, n: int) -> int:
        """Warm-up requests before measuring ``n``: connections open, caches filled."""
        return max(n // 10, 20)

    def to_json(self) -> dict[str, Any]:
        """The settings as recorded in the results."""
        return asdict(self)


QUICK = Settings(
    requests=60,
    concurrencies=(64,),  # the targets' concurrency; c=1 adds child processes, not coverage
    streams=8,
    reply_tokens=50,
    fault_requests=80,
    memory_requests=300,
    selection_sizes=(10, 100),
    selection_run_ms=2.0,
    selection_strategies=("least_recently_used",),
    e2e_requests=60,
    embed_texts=400,
    import_repeat=1,
    repeats=1,
    gateway_warmup_s=0.1,
    gateway_latency_s=0.3,
    gateway_ttfc_s=0.3,
    gateway_ladder=(1, 8),
    gateway_step_s=0.3,
)
"""A small run of every scenario (``python -m bench --quick``), for the smoke test in the default
suite: every scenario and contender runs and reports, at the least size that still exercises them
(the figures mean nothing at this size; ``make bench`` is the measurement)."""


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _targets(provider: str, urls: Sequence[str]) -> list[dict[str, str]]:
    return [Target(provider, url).to_json() for url in urls]


def _run(job: dict[str, Any]) -> Figures:
    _progress(f"{job['kind']} {job.get('contender', '')} {job.get('concurrency', '')}".strip())
    try:
        return run_child(job)
    except ChildError as exc:
        print(f"  !! {exc}", file=sys.stderr, flush=True)
        return {"error": str(exc)}


def ratios(by_contender: dict[str, Figures], key: str) -> dict[str, float]:
    """``key`` of each contender over the bare loop's, and flyllm's over LiteLLM's."""
    out: dict[str, float] = {}

    def value(name: str) -> float | None:
        figure = by_contender.get(name, {}).get(key)
        return float(figure) if isinstance(figure, int | float) and figure > 0 else None

    bare = value("bare")
    for name in by_contender:
        mine = value(name)
        if name != "bare" and mine is not None and bare is not None:
            out[f"{name}/bare"] = mine / bare
    flyllm, litellm = value("flyllm"), value("litellm")
    if flyllm is not None and litellm is not None:
        out["flyllm/litellm"] = flyllm / litellm
    return out


Emulators = Callable[[], AbstractContextManager[list[dict[str, str]]]]
"""Starts the emulator process(es) of a scenario; the context yields the targets."""


_CPU_KEY = {"requests": "cpu_ms_per_request"}


def _each_contender(
    settings: Settings, job: dict[str, Any], names: Sequence[str], emulators: Emulators
) -> Figures:
    """Run ``job`` once per contender, each against freshly started emulators: every
    contender meets the same emulator state (fault draws from the same seed, empty
    rate-limit windows, which flyllm reads from the response headers).

    For batches of non-streamed requests, the bare loop and flyllm (a few seconds each) run
    ``settings.repeats`` times, interleaved, and the run with the least CPU per request is
    kept: noise from the rest of the machine only ever adds CPU time. LiteLLM, 30 times
    slower, runs once.
    """
    options = asdict(settings.options) | job.pop("options", {})
    cpu_key = _CPU_KEY.get(job["kind"])
    figures: Figures = {}
    for round_number in range(settings.repeats if cpu_key else 1):
        for name in names:
            if name not in settings.contenders or (round_number and name == "litellm"):
                continue
            with emulators() as targets:
                run = {**job, "contender": name, "options": options, "targets": targets}
                result = _run(run)
            figures[name] = _better(figures.get(name), result, cpu_key)
    return figures


def _better(kept: Figures | None, new: Figures, cpu_key: str | None) -> Figures:
    """The run to keep of two: the one that did not fail, then the one with the least CPU;
    ``cpu_runs`` lists the CPU figure of every run."""
    if kept is None or cpu_key is None:
        if cpu_key and "error" not in new:
            new["cpu_runs"] = [new[cpu_key]]
        return new
    if "error" in new:
        return kept
    runs = [*kept.get("cpu_runs", []), new[cpu_key]]
    best = new if "error" in kept or new[cpu_key] < kept[cpu_key] else kept
    best["cpu_runs"] = runs
    return best


@contextmanager
def _openai(count: int, *flags: str) -> Iterator[list[dict[str, str]]]:
    with emulator_process("openai", count, *flags) as urls:
        yield _targets("openai", urls)


# -- the scenarios ---------------------------------------------------------------------------


def startup(settings: Settings) -> Figures:
    """1. Import time and RSS after import of flyllm, aiohttp, httpx and litellm."""
    modules = ["sys", "aiohttp", "httpx", "flyllm"]
    if "litellm" in settings.contenders:
        modules.append("litellm")
    _progress(f"imports x{settings.import_repeat}: {', '.join(modules[1:])}")
    costs = import_costs(modules, settings.import_repeat)
    base = costs.get("sys")
    figures: Figures = {"modules": {}}
    for name, cost in costs.items():
        figures["modules"][name] = {
            "import_ms": 1000 * cost.seconds,
            "rss_mb": cost.rss_mb,
            "rss_over_interpreter_mb": cost.rss_mb - base.rss_mb if base else None,
        }
    figures["ratios"] = {
        f"{m}/aiohttp": costs[m].seconds / costs["aiohttp"].seconds
        for m in costs
        if m not in ("sys", "aiohttp") and "aiohttp" in costs
    }
    return figures


def _requests_by_concurrency(settings: Settings, emulators: Emulators) -> Figures:
    figures: Figures = {}
    n = settings.requests
    for conc in settings.concurrencies:
        job = {"kind": "requests", "requests": n, "concurrency": conc}
        job["warmup"] = settings.warmup(n)
        by = _each_contender(settings, job, CONTENDERS, emulators)
        by["ratios"] = ratios(by, "cpu_ms_per_request")
        figures[f"c{conc}"] = by
    return figures


def throughput(settings: Settings) -> Figures:
    """2. Non-streamed requests over 4 emulated OpenAI instances, at each concurrency."""
    return _requests_by_concurrency(settings, lambda: _openai(4))


MIXED = ("openai", "anthropic", "google", "mistral")


@contextmanager
def _mixed() -> Iterator[list[dict[str, str]]]:
    """One emulator process per provider, one instance each."""
    with emulator_processes(*((p, 1, ()) for p in MIXED)) as urls:
        yield [t for p, u in zip(MIXED, urls, strict=True) for t in _targets(p, u)]


def mixed(settings: Settings) -> Figures:
    """3. The same over one instance each of OpenAI, Anthropic, Gemini and Mistral."""
    return _requests_by_concurrency(settings, _mixed)


def streaming(settings: Settings) -> Figures:
    """4. Streams of ``reply_tokens`` chunks: CPU per chunk and time to first chunk."""
    flags = ["--reply-tokens", str(settings.reply_tokens)]
    flags += ["--chunk-delay-ms", str(settings.chunk_delay_ms)]
    job = {
        "kind": "streams",
        "streams": settings.streams,
        "concurrency": settings.stream_concurrency,
        "warmup": settings.warmup(settings.streams),
        "options": {"max_tokens": 2 * settings.reply_tokens},
    }
    by = _each_contender(settings, job, CONTENDERS, lambda: _openai(4, *flags))
    by["ratios"] = {
        "cpu_per_chunk": ratios(by, "cpu_us_per_chunk"),
        "ttfc_p50": ratios(by, "ttfc_p50_ms"),
        "ttfc_p99": ratios(by, "ttfc_p99_ms"),
    }
    return by


def _faulty_openai(settings: Settings) -> Emulators:
    """2 healthy instances, then 2 that fail ``fault_rate`` of requests: half 500, half 429."""
    half = settings.fault_rate / 2
    # The emulator draws the kinds in order, each with its own probability: the second is
    # scaled so that both come out at half the rate.
    flags = ["--fault", f"server_error={half}", "--fault", f"rate_limit={half / (1 - half)}"]
    flags += ["--retry-after", str(settings.retry_after_s)]

    @contextmanager
    def start() -> Iterator[list[dict[str, str]]]:
        with emulator_processes(("openai", 2, ()), ("openai", 2, flags)) as (good, bad):
            yield _targets("openai", good + bad)

    return start


def faults(settings: Settings) -> Figures:
    """5. Success rate, attempts per success and CPU per success under injected faults."""
    n = settings.fault_requests
    job = {
        "kind": "requests",
        "requests": n,
        "concurrency": settings.fault_concurrency,
        "warmup": settings.warmup(n),
    }
    by = _each_contender(settings, job, CONTENDERS, _faulty_openai(settings))
    by["ratios"] = {
        "cpu_per_success": ratios(by, "cpu_ms_per_success"),
        "success_rate": ratios(by, "success_rate"),
    }
    return by


def selection(settings: Settings) -> Figures:
    """6. flyllm's selection cost at each size, with its default strategy and the one the
    contest uses (``random``, as LiteLLM's simple-shuffle)."""
    figures: Figures = {}
    for strategy in settings.selection_strategies:
        with _openai(4) as targets:
            figures[strategy] = _run(
                {
                    "kind": "selection",
                    "contender": "flyllm",
                    "targets": targets,
                    "sizes": list(settings.selection_sizes),
                    "tasks": settings.selection_tasks,
                    "strategy": strategy,
                    "run_ms": settings.selection_run_ms,
                    "e2e_requests": settings.e2e_requests,
                }
            )
    return figures


def memory(settings: Settings) -> Figures:
    """7. RSS while ``memory_requests`` requests are queued in one batch."""
    job = {
        "kind": "memory",
        "requests": settings.memory_requests,
        "concurrency": settings.memory_concurrency,
        "warmup": 200,
    }
    return _each_contender(settings, job, ("bare", "flyllm"), lambda: _openai(4))


def tools(settings: Settings) -> Figures:
    """8. Tool-call requests over the mixed providers, at the targets' concurrency (64)."""
    n = settings.requests
    job = {"kind": "requests", "requests": n, "concurrency": 64, "warmup": settings.warmup(n)}
    job["options"] = {"tools": True}
    by = _each_contender(settings, job, CONTENDERS, _mixed)
    by["ratios"] = ratios(by, "cpu_ms_per_request")
    return {"c64": by}


def embeddings(settings: Settings) -> Figures:
    """9. ``embed_texts`` texts over 4 instances, each limited to ``embed_rpm`` and
    ``embed_tpm``. The least time the limits allow is a minute per window's worth of tokens
    (or requests) after the first, which goes at once; at the quick size the limits never bind
    and there is no minimum to compare with."""
    with _openai(4) as targets:
        return _run(
            {
                "kind": "embeddings",
                "contender": "flyllm",
                "targets": targets,
                "texts": settings.embed_texts,
                "rpm": settings.embed_rpm,
                "tpm": settings.embed_tpm,
                "dimensions": settings.embed_dimensions,
                "concurrency": settings.embed_concurrency,
            }
        )


def gateway(settings: Settings) -> Figures:
    """10. The gateways side by side (:mod:`bench.gateway.scenario`)."""
    from bench.gateway.scenario import run_gateways

    bound = settings.gateway_p99_bound_ms
    phases = {
        "warmup_s": settings.gateway_warmup_s,
        "latency_s": settings.gateway_latency_s,
        "ttfc_s": settings.gateway_ttfc_s,
        "ladder": list(settings.gateway_ladder),
        "step_s": settings.gateway_step_s,
        "bound_ms": bound,
        "stop_p99_ms": 2 * bound,
    }
    return run_gateways(settings.gateways, phases)


SCENARIOS: dict[str, Callable[[Settings], Figures]] = {
    "startup": startup,
    "throughput": throughput,
    "mixed": mixed,
    "streaming": streaming,
    "faults": faults,
    "selection": selection,
    "memory": memory,
    "tools": tools,
    "embeddings": embeddings,
    "gateway": gateway,
}
"""The scenarios in the order they run, by the name ``--scenario`` takes."""
