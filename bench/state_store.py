"""What Redis adds: flyllm with the memory store and with the Redis store, side by side.

``python -m bench.state_store`` starts a redis-server on loopback (or uses ``REDIS_URL``) and
four emulated OpenAI instances in their own process, then runs the same batch through each
store in this process, alternating, and prints client CPU per request and p50/p99 latency.
The Redis store makes one round trip (an atomic script) before each attempt and writes its
records in the background; the memory store does no I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from bench.core import emulator_process, percentile
from flyllm import GenerationRequest, LlmManager
from flyllm.routing.redis_state import RedisStore
from flyllm.routing.state import StateStore


@contextmanager
def redis_server() -> Iterator[str]:
    """``REDIS_URL``, or a redis-server on a free loopback port for the run."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("needs redis-server on the PATH or REDIS_URL")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(500):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


async def run(
    urls: list[str], store: StateStore | None, n: int, concurrency: int
) -> dict[str, float]:
    """CPU per request and latency percentiles of one batch through ``store``."""
    async with LlmManager(strategy="random", state=store) as manager:
        for url in urls:
            manager.add_provider("openai", "bench", "gpt-4o-mini", base_url=url,
                                 parameters={"max_tokens": 64}, rpm=1_000_000)  # fmt: skip
        warm = [GenerationRequest(prompt=f"w{i}") for i in range(200)]
        await manager.batch_generate(warm, max_concurrency=concurrency)
        requests = [GenerationRequest(prompt=f"p{i}") for i in range(n)]
        cpu = time.process_time()
        responses = await manager.batch_generate(requests, max_concurrency=concurrency)
        cpu = time.process_time() - cpu
    assert all(r.success for r in responses), [r.error for r in responses if not r.success][:3]
    latencies = [1000 * r.latency for r in responses]
    return {
        "cpu_ms_per_request": 1000 * cpu / n,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.state_store", description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"memory": [], "redis": []}
    with redis_server() as redis_url, emulator_process("openai", 4) as urls:
        for _ in range(args.rounds):
            results["memory"].append(asyncio.run(run(urls, None, args.requests, args.concurrency)))
            store = RedisStore(redis_url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
            results["redis"].append(asyncio.run(run(urls, store, args.requests, args.concurrency)))
    best = {k: min(v, key=lambda r: r["cpu_ms_per_request"]) for k, v in results.items()}
    print(f"{args.requests} requests, concurrency {args.concurrency}, best of {args.rounds}")
    print(f"{'store':<8} {'CPU ms/req':>11} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in best.items():
        print(f"{name:<8} {row['cpu_ms_per_request']:>11.3f} {row['p50_ms']:>8.2f} "
              f"{row['p99_ms']:>8.2f}")  # fmt: skip
    added = best["redis"]["cpu_ms_per_request"] - best["memory"]["cpu_ms_per_request"]
    print(f"Redis adds {1000 * added:.0f} us of client CPU per request")
    print(json.dumps({"best": best, "rounds": results}))


if __name__ == "__main__":
    main()
