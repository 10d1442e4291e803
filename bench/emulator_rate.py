"""How many non-streaming requests per second the emulator serves on this machine.

The emulator (OpenAI dialect) runs in its own process, as in the library benchmarks; this
process drives it with aiohttp over keep-alive connections. Run ``python bench/emulator_rate.py
[--requests N] [--concurrency C]``; it prints one line. :func:`measure` is the importable form.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

__all__ = ["measure"]

WARMUP_REQUESTS = 2_000
_SRC = Path(__file__).resolve().parent.parent / "src"
_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Benchmark the emulator, please."}],
        "max_completion_tokens": 32,
    }
).encode()
_HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}


def _start_emulator() -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "flyllm.emulator", "--provider", "openai", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"base_url=(\S+)", line)
    if found is None:
        process.kill()
        raise RuntimeError(f"the emulator did not start (first line: {line!r})")
    return process, found.group(1)


async def _drive(base_url: str, n_requests: int, concurrency: int) -> float:
    url = base_url + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(count: int) -> None:
            for _ in range(count):
                async with session.post(url, data=_BODY, headers=_HEADERS) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"unexpected HTTP {response.status}")

        async def run(total: int) -> float:
            share, extra = divmod(total, concurrency)
            counts = [share + (1 if i < extra else 0) for i in range(concurrency)]
            started = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in counts))
            return time.perf_counter() - started

        await run(min(WARMUP_REQUESTS, n_requests))
        elapsed = await run(n_requests)
    return n_requests / elapsed


def measure(n_requests: int, concurrency: int) -> float:
    """Requests per second over ``n_requests`` (after a warm-up), ``concurrency`` connections."""
    process, base_url = _start_emulator()
    try:
        return asyncio.run(_drive(base_url, n_requests, concurrency))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    """Print the measured rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    rate = measure(args.requests, args.concurrency)
    print(
        f"emulator (openai dialect, non-streaming, {args.concurrency} keep-alive connections, "
        f"{args.requests} requests): {rate:,.0f} requests/s"
    )


if __name__ == "__main__":
    main()
