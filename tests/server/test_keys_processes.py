"""Limits hold across processes: two ``flyllm serve`` processes on one Redis (``--state``), or
one ``flyllm serve --workers 2`` (two workers on one port), under concurrent load, never admit
more than a key's rpm, and never spend more than its budget by more than one call's estimated
cost (the bound the ledger guarantees while calls cost no more than their estimates: each
running call reserves its estimate)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from flyllm.emulator import Emulator
from flyllm.server import hash_key, new_key

# 40 characters: estimated at 11 prompt tokens, which the emulator counts as 4 (a word + 3).
PROMPT = [{"role": "user", "content": "x" * 40}]
ESTIMATE_USD = 11 + 10  # prompt + max_tokens, at 1 USD a token


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=["two-serves", "two-workers"])
async def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> AsyncIterator[tuple[list[str], dict[str, str]]]:
    """Two gateway processes sharing one Redis, over one emulator: two ``flyllm serve`` on
    their own ports, or one with two workers on one port; the keys by name."""
    keys = {"rpm": new_key(), "budget": new_key()}
    async with Emulator(provider="openai", reply_tokens=10, latency_ms=5) as emu:
        config = tmp_path / "flyllm.toml"
        config.write_text(f"""
[tasks.chat]

[[instances]]
provider = "openai"
model = "m"
api_key = "k"
tasks = ["chat"]
base_url = "{emu.base_url}"
price = {{ input_per_mtok = 1000000.0, output_per_mtok = 1000000.0 }}

[[gateway.keys]]
name = "rpm"
sha256 = "{hash_key(keys["rpm"])}"
rpm = 10

[[gateway.keys]]
name = "budget"
sha256 = "{hash_key(keys["budget"])}"
budget_usd = 25.0
""")
        state = redis_url.rsplit("/", 1)[0] + "/" + str(uuid.uuid4().int % 16)
        procs, urls = [], []
        try:
            if request.param == "two-workers":
                proc, url = _spawn(config, state, "--workers", "2")
                procs.append(proc)
                urls += [url, url]
                _listening(proc)
                procs.append(proc)  # one per URL, for _ready
            else:
                for _ in range(2):
                    proc, url = _spawn(config, state)
                    procs.append(proc)
                    urls.append(url)
            await _ready(urls, procs)
            yield urls, keys
        finally:
            for proc in set(procs):
                proc.terminate()
            for proc in set(procs):
                proc.wait(timeout=10)
            _flush(state)


def _spawn(config: Path, state: str, *more: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flyllm.cli", "serve", "--config", str(config), "--port",
         str(port), "--state", state, *more],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _listening(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the supervisor's line saying every worker listens."""
    assert proc.stderr is not None
    seen = b""
    while b"listening on" not in seen:
        line = proc.stderr.readline()
        assert line, f"flyllm serve exited: {seen.decode()[-2000:]}"
        seen += line
    assert b"with 2 workers" in seen, seen


def _flush(state: str) -> None:
    import redis

    client = redis.Redis.from_url(state)
    for key in client.scan_iter(match="flyllm:gw:*"):
        client.delete(key)
    client.close()


async def _ready(urls: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        for url, proc in zip(urls, procs, strict=True):
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(f"flyllm serve exited: {err[-2000:]}")
                try:
                    async with session.get(url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "flyllm serve did not start in 20 s"
                await asyncio.sleep(0.05)


ANSWERED_BY: set[str] = set()  # the processes that answered (their request ids' prefix)


async def _post(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, str, int]:
    """Status, error code and the answer's total tokens."""
    body = {"model": "chat", "messages": PROMPT, "max_tokens": 10}
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}  # spread over workers
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        ANSWERED_BY.add(r.headers.get("x-request-id", "")[:12])
        data = await r.json()
        if r.status == 200:
            return 200, "", int(data["usage"]["total_tokens"])
        return r.status, data.get("error", {}).get("code", ""), 0


async def test_two_processes_hold_a_keys_rpm_and_budget_together(
    fleet: tuple[list[str], dict[str, str]],
) -> None:
    urls, keys = fleet
    ANSWERED_BY.clear()
    await _rpm_holds(urls, keys)
    await _budget_holds(urls, keys)
    assert len(ANSWERED_BY) == 2  # both processes (or workers) took part


async def _rpm_holds(urls: list[str], keys: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(_post(session, urls[i % 2], keys["rpm"]) for i in range(30))
        )
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 20


async def _budget_holds(urls: list[str], keys: dict[str, str]) -> None:
    costs: list[float] = []  # USD: 1 per token at the configured price

    async def worker(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                status, code, tokens = await _post(session, url, keys["budget"])
                if status == 200:
                    costs.append(float(tokens))
                elif code == "insufficient_quota":
                    return
                else:
                    assert (status, code) == (429, "rate_limit_exceeded")  # reserved in flight
                    await asyncio.sleep(0.005)
            raise AssertionError("the budget was never reached")

    await asyncio.gather(*(worker(urls[i % 2]) for i in range(6)))
    # Six clients on two processes: the budget of 25 USD was reached (every client was told
    # so), and passed by less than one call's estimate (a call of 14 USD reserves 21).
    assert max(costs) <= ESTIMATE_USD
    assert 25.0 <= sum(costs) < 25.0 + ESTIMATE_USD
    assert len(costs) >= 2  # the budget took several calls, so the processes had to agree
