"""flyllm's overhead against a bare aiohttp loop, measured side by side in one run.

The emulator runs in its own process (so its CPU is not counted); the client's CPU is this
process's own user+sys time (``time.process_time``) over the measured requests, after a
warm-up. Ratios, not absolute times, are the figures to read: the machine is noisy.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp

from flyllm import GenerationRequest, LlmManager

_URL = re.compile(r"base_url=(\S+)")


@contextmanager
def emulator_process(provider: str = "openai", count: int = 4) -> Iterator[list[str]]:
    """Start ``flyllm emulate`` in its own process; yields the instances' base URLs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flyllm.emulator",
            "--provider",
            provider,
            "--port",
            "0",
            "--count",
            str(count),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls: list[str] = []
        assert proc.stdout is not None
        while len(urls) < count:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the emulator exited before printing its URLs")
            urls += _URL.findall(line)
        yield urls
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(slots=True)
class Run:
    """One contender's figures."""

    name: str
    requests: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_seconds / self.requests

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def _measure(name: str, n: int, job: Callable[[int], Awaitable[None]]) -> Run:
    await job(max(n // 10, 50))  # warm-up: connections open, caches filled
    cpu0, t0 = time.process_time(), time.perf_counter()
    await job(n)
    return Run(name, n, time.perf_counter() - t0, time.process_time() - cpu0)


async def bare_aiohttp(urls: list[str], n: int, concurrency: int) -> Run:
    """The floor: one pooled session, a JSON body per request, the reply parsed, no routing."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

        async def job(count: int) -> None:
            todo = iter(range(count))

            async def worker() -> None:
                for i in todo:
                    url = urls[i % len(urls)] + "/chat/completions"
                    body = json.dumps(
                        {
                            "model": "gpt-4o-mini",
                            "messages": [{"role": "user", "content": f"prompt {i}"}],
                            "max_completion_tokens": 64,
                        }
                    ).encode()
                    async with session.post(url, data=body, headers=headers) as resp:
                        data = json.loads(await resp.read())
                        assert resp.status == 200, data
                        _ = data["choices"][0]["message"]["content"]

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        return await _measure("bare aiohttp", n, job)


async def flyllm_batch(urls: list[str], n: int, concurrency: int) -> Run:
    """flyllm's batch_generate over one instance per emulator port."""
    async with LlmManager() as manager:
        for url in urls:
            manager.add_provider(
                "openai", "bench", "gpt-4o-mini", base_url=url, parameters={"max_tokens": 64}
            )

        async def job(count: int) -> None:
            requests = [GenerationRequest(prompt=f"prompt {i}") for i in range(count)]
            responses = await manager.batch_generate(requests, max_concurrency=concurrency)
            failed = [r for r in responses if not r.success]
            assert not failed, failed[0].error

        return await _measure("flyllm", n, job)


def import_times(modules: tuple[str, ...], repeat: int = 15) -> dict[str, float]:
    """Fastest wall time of importing each module in a fresh interpreter, in seconds. Runs are
    interleaved and the minimum kept, since noise only ever adds time."""
    best = dict.fromkeys(modules, float("inf"))
    for _ in range(repeat):
        for module in modules:
            code = f"import time; t = time.perf_counter(); import {module}; "
            code += "print(time.perf_counter() - t)"
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if out.returncode == 0:
                best[module] = min(best[module], float(out.stdout))
    return best


def run_core(n: int = 5000, concurrencies: tuple[int, ...] = (1, 64, 256)) -> dict[str, object]:
    """Import times and client CPU per request for each concurrency; prints a table."""
    results: dict[str, object] = {}
    times = import_times(("flyllm", "aiohttp"))
    t_flyllm, t_aiohttp = times["flyllm"], times["aiohttp"]
    results["import"] = {
        "flyllm_s": t_flyllm,
        "aiohttp_s": t_aiohttp,
        "ratio": t_flyllm / t_aiohttp,
    }
    print(
        f"import flyllm {t_flyllm * 1000:.1f} ms, import aiohttp {t_aiohttp * 1000:.1f} ms, "
        f"ratio {t_flyllm / t_aiohttp:.2f} (target <= 1.5)"
    )
    with emulator_process("openai", 4) as urls:
        print(f"\n{'contender':<14} {'conc':>5} {'req/s':>8} {'CPU ms/req':>11} {'ratio':>6}")
        for conc in concurrencies:
            count = n if conc > 1 else max(n // 5, 200)
            bare = asyncio.run(bare_aiohttp(urls, count, conc))
            ours = asyncio.run(flyllm_batch(urls, count, conc))
            ratio = ours.cpu_ms_per_request / bare.cpu_ms_per_request
            for run in (bare, ours):
                r = f"{ratio:.2f}" if run is ours else ""
                print(
                    f"{run.name:<14} {conc:>5} {run.rate:>8.0f} "
                    f"{run.cpu_ms_per_request:>11.3f} {r:>6}"
                )
            results[f"concurrency_{conc}"] = {
                "bare_cpu_ms": bare.cpu_ms_per_request,
                "flyllm_cpu_ms": ours.cpu_ms_per_request,
                "bare_rps": bare.rate,
                "flyllm_rps": ours.rate,
                "ratio": ratio,
            }
    return results
