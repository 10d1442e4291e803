"""One measurement in a fresh process: ``python -m bench.run_one '<job as JSON>'``.

The orchestrator (:mod:`bench.scenarios`) starts one of these per (scenario, contender), so
each contender's CPU time and peak RSS are its own. The process prints one line
``BENCH-RESULT {...}`` with its figures. A loopback guard refuses, and records, any attempt to
connect beyond 127.0.0.1 / ::1: the benchmark never leaves the machine, and a library that
tries to cannot hang it.

Job kinds: ``requests`` (non-streamed batch), ``streams``, ``memory`` (RSS while one big
batch is queued), ``selection`` (flyllm's routing cost, :mod:`bench.selection`) and
``embeddings`` (flyllm's ``embed_batch`` under rpm/tpm limits).
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench.core import (
    RESULT_PREFIX,
    current_rss_mb,
    peak_rss_mb,
    percentile,
    settle,
)

BLOCKED: list[str] = []
"""Hosts beyond loopback that the measured code tried to reach (refused)."""


def _loopback(host: object) -> bool:
    if not isinstance(host, str) or host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install_loopback_guard() -> None:
    """Refuse (ConnectionRefusedError, at once) any connection or lookup beyond loopback."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def check(host: object) -> None:
        if not _loopback(host):
            BLOCKED.append(str(host))
            raise ConnectionRefusedError(f"bench: {host!r} is beyond loopback")

    def connect(self: socket.socket, address: Any) -> None:
        check(address[0] if isinstance(address, tuple) else address)
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    setattr(socket.socket, "connect", connect)  # noqa: B010 (patching a C type's method)
    socket.getaddrinfo = getaddrinfo


# -- jobs ------------------------------------------------------------------------------------


async def _emulator_requests(roots: list[str]) -> int:
    """The provider requests the emulated instances received so far (their control API)."""
    import aiohttp

    total = 0
    async with aiohttp.ClientSession() as session:
        for root in dict.fromkeys(roots):
            async with session.get(root + "/_emulator/stats") as resp:
                total += int((await resp.json())["requests"])
    return total


def _contender(job: dict[str, Any]) -> Any:
    from bench.contenders import Options, make_contender
    from bench.wire import Target

    targets = [Target.from_json(t) for t in job["targets"]]
    return make_contender(job["contender"], targets, Options(**job["options"])), targets


async def requests_job(job: dict[str, Any]) -> dict[str, Any]:
    """A warm-up batch, then the measured batch: rate, CPU, latency, attempts, peak RSS."""
    contender, targets = _contender(job)
    n, concurrency = int(job["requests"]), int(job["concurrency"])
    roots = [t.root for t in targets]
    try:
        await contender.batch(0, int(job["warmup"]), concurrency)
        await settle()
        sent0 = await _emulator_requests(roots)
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = await contender.batch(job["warmup"], n, concurrency)
        seconds = time.perf_counter() - t0
        await settle()
        cpu = time.process_time() - cpu0
        sent = await _emulator_requests(roots) - sent0
    finally:
        await contender.aclose()
    ok = max(result.successes, 1)
    return {
        "requests": n,
        "successes": result.successes,
        "failures": result.failures,
        "success_rate": result.successes / n,
        "seconds": seconds,
        "rps": n / seconds,
        "cpu_s": cpu,
        "cpu_ms_per_request": 1000 * cpu / n,
        "cpu_ms_per_success": 1000 * cpu / ok,
        "p50_ms": 1000 * percentile(result.latencies, 0.5),
        "p99_ms": 1000 * percentile(result.latencies, 0.99),
        "attempts": sent,
        "attempts_per_success": sent / ok,
        "peak_rss_mb": peak_rss_mb(),
    }


async def streams_job(job: dict[str, Any]) -> dict[str, Any]:
    """Warm-up streams, then the measured ones: CPU per chunk, time to first chunk."""
    contender, _ = _contender(job)
    n, concurrency = int(job["streams"]), int(job["concurrency"])
    try:
        await contender.streams(0, int(job["warmup"]), concurrency)
        await settle()
        cpu0, t0 = time.process_time(), time.perf_counter()
        result = await contender.streams(job["warmup"], n, concurrency)
        seconds = time.perf_counter() - t0
        await settle()
        cpu = time.process_time() - cpu0
    finally:
        await contender.aclose()
    chunks = max(result.chunks, 1)
    return {
        "streams": n,
        "successes": result.successes,
        "failures": result.failures,
        "chunks": result.chunks,
        "chunks_per_stream": result.chunks / max(result.successes, 1),
        "seconds": seconds,
        "cpu_s": cpu,
        "cpu_us_per_chunk": 1e6 * cpu / chunks,
        "ttfc_p50_ms": 1000 * percentile(result.ttfc, 0.5),
        "ttfc_p99_ms": 1000 * percentile(result.ttfc, 0.99),
        "peak_rss_mb": peak_rss_mb(),
    }


class _RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds until stopped; keeps the peak."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self.samples = interval, current_rss_mb(), 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, current_rss_mb())
            self.samples += 1

    def stop(self) -> float:
        """Stop sampling; the peak RSS seen, in MiB."""
        self._stop_event.set()
        self.join()
        return max(self.peak, current_rss_mb())


async def memory_job(job: dict[str, Any]) -> dict[str, Any]:
    """RSS before, during (sampled from a thread) and after one batch of ``requests``."""
    contender, _ = _contender(job)
    n, concurrency = int(job["requests"]), int(job["concurrency"])
    try:
        await contender.batch(0, int(job["warmup"]), concurrency)
        await settle()
        gc.collect()
        before = current_rss_mb()
        sampler = _RssSampler()
        sampler.start()
        t0 = time.perf_counter()
        result = await contender.batch(job["warmup"], n, concurrency)
        seconds = time.perf_counter() - t0
        peak = sampler.stop()
        after = current_rss_mb()
    finally:
        await contender.aclose()
    return {
        "requests": n,
        "successes": result.successes,
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_peak_mb": peak,
        "rss_after_mb": after,
        "growth_mb": peak - before,
        "kb_per_request": 1024 * (peak - before) / n,
        "samples": sampler.samples,
        "peak_rss_mb": peak_rss_mb(),
    }


async def selection_job(job: dict[str, Any]) -> dict[str, Any]:
    """flyllm's selection cost as instances grow (:mod:`bench.selection`)."""
    from bench.selection import measure_selection

    return await measure_selection(job)


async def embeddings_job(job: dict[str, Any]) -> dict[str, Any]:
    """``embed_batch`` of ``texts`` short texts over the targets, each instance limited to
    ``rpm`` and ``tpm``: wall time, client CPU per input, peak RSS, and what the limits
    counted (tokens billed, requests sent, the most tokens any instance took in a minute)."""
    from bench.wire import Target
    from flyllm import LlmManager, TaskDefinition
    from flyllm.observe.events import Event
    from flyllm.routing.limits import WINDOW

    targets = [Target.from_json(t) for t in job["targets"]]
    n, rpm, tpm = int(job["texts"]), int(job["rpm"]), int(job["tpm"])
    texts = [f"text {i} is one short sentence to embed" for i in range(n)]
    started: dict[tuple[int, int], float] = {}
    sent: dict[int, list[tuple[float, int]]] = {}  # instance -> (start, tokens billed)

    def hook(event: Event) -> None:
        key = (event.request_id, event.attempt)
        if event.kind == "attempt_start":
            started[key] = event.time
        elif event.kind == "attempt_end" and event.success and event.usage is not None:
            assert event.instance_id is not None
            sent.setdefault(event.instance_id, []).append(
                (started.pop(key), event.usage.total_tokens)
            )

    manager = LlmManager()
    manager.add_hook(hook)
    for target in targets:
        manager.add_provider(
            "openai", "bench", "text-embedding-3-small", [TaskDefinition("embed")],
            base_url=target.base_url, rpm=rpm, tpm=tpm,
        )  # fmt: skip
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = await manager.embed_batch(
            texts, "embed", max_concurrency=int(job["concurrency"]),
            dimensions=int(job["dimensions"]),
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await manager.aclose()
    tokens = sum(r.usage.total_tokens for r in results)
    requests = sum(len(v) for v in sent.values())
    share = len(targets)
    windows = max(math.ceil(tokens / (share * tpm)), math.ceil(requests / (share * rpm)))
    minimum = WINDOW * (windows - 1)  # the first minute's worth goes at once
    return {
        "texts": n,
        "successes": sum(r.success for r in results),
        "instances": share,
        "rpm": rpm,
        "tpm": tpm,
        "tokens": tokens,
        "requests": requests,
        "seconds": seconds,
        "minimum_s": minimum,
        "over_minimum": seconds / minimum if minimum else None,
        "cpu_s": cpu,
        "cpu_us_per_input": 1e6 * cpu / n,
        "peak_rss_mb": peak_rss_mb(),
        "busiest_minute_over_tpm": max(
            (_busiest_minute(v, WINDOW) / tpm for v in sent.values()), default=0.0
        ),
    }


def _busiest_minute(sent: list[tuple[float, int]], window: float) -> int:
    """The most tokens sent within any ``window`` seconds (by the attempts' start times)."""
    sent = sorted(sent)
    best = total = first = 0
    for start, tokens in sent:
        total += tokens
        while sent[first][0] <= start - window:
            total -= sent[first][1]
            first += 1
        best = max(best, total)
    return best


JOBS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "requests": requests_job,
    "streams": streams_job,
    "memory": memory_job,
    "selection": selection_job,
    "embeddings": embeddings_job,
}


def main() -> None:
    """Run the job given as JSON in ``argv[1]``; print its figures on one line."""
    job = json.loads(sys.argv[1])
    install_loopback_guard()
    result = asyncio.run(JOBS[job["kind"]](job))
    result["blocked_hosts"] = sorted(set(BLOCKED))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
