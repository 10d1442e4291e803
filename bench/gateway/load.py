"""The gateways' load generator: raw asyncio HTTP/1.1 keep-alive connections, one request in
flight on each, requests and answers pre-built and parsed by hand (a few tens of microseconds
of CPU per request, so that it is never the bottleneck: its rate against no gateway shows it),
on uvloop when installed.

``python -m bench.gateway.load JOB`` (JSON) runs the job's phases against one URL and prints one
``BENCH-RESULT`` line. The gateway's CPU time is read from ``/proc`` around each measured phase
(:mod:`bench.gateway.proctree`), so that CPU per request covers exactly the measured requests.

    latency      one connection, requests back to back for ``seconds``: latency p50/p99
                 (concurrency 1) and the gateway's CPU per request there.
    ttfc         the same with ``"stream": true``: time to the first content chunk, and to
                 the end of the stream.
    ladder       at each concurrency in turn, that many connections for ``seconds``: rate,
                 latency p50/p99, CPU per request; it stops after the first step whose p99
                 passes ``stop_p99_ms`` (more concurrency only queues longer).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from bench.core import RESULT_PREFIX, percentile, run_fast
from bench.gateway.proctree import TreeStats

__all__ = ["Answer", "Connection", "Target", "build_request", "run_job"]

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_CONTENT = re.compile(rb'"content"\s*:\s*"[^"]')
"""A delta with non-empty content (the role chunk's ``"content": ""`` does not count)."""
MAX_ANSWER = 1 << 20
ANSWER_TIMEOUT_S = 10.0
"""An answer slower than this closes its connection and counts as a failure (no hang)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the requests go and what they carry."""

    url: str
    model: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def host_port(self) -> tuple[str, int]:
        """The URL's host and port."""
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80


def build_request(target: Target, stream: bool) -> bytes:
    """The whole HTTP request, built once and written as is for every request."""
    body: dict[str, Any] = {
        "model": target.model,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    raw = json.dumps(body).encode()
    parts = urlsplit(target.url)
    host, port = target.host_port
    lines = [f"POST {parts.path} HTTP/1.1", f"host: {host}:{port}"]
    lines += ["content-type: application/json", f"content-length: {len(raw)}"]
    lines += [f"{k}: {v}" for k, v in target.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


@dataclass(slots=True)
class Answer:
    """One answer: whether it was a complete 200 with content, and its timings (seconds)."""

    ok: bool
    latency: float
    first_content: float | None = None
    status: int = 0


class Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight; parses the answer's head and its
    body (by length or chunked) and notes when the first content arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Answer] | None = None
        self._t0 = 0.0
        self._first: float | None = None
        self._status = 0
        self._body_at = -1
        self._length = -1  # -1: not known yet; -2: chunked
        self._scan = 0  # where the chunk parser stands
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        """An answer cut short is a failure."""
        self.transport = None
        self._finish(False)

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        """Write ``request``; the future resolves with its answer."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if self.transport is None:
            self._waiter.set_result(Answer(False, 0.0))
            return self._waiter
        self._buffer.clear()
        self._first, self._status, self._body_at, self._length, self._scan = None, 0, -1, -1, 0
        self._t0 = time.perf_counter()
        self._timer = loop.call_later(ANSWER_TIMEOUT_S, self.transport.abort)
        self.transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        """Parse as far as the bytes go."""
        buffer = self._buffer
        buffer += data
        if len(buffer) > MAX_ANSWER and self.transport is not None:
            self.transport.close()
            return
        if self._body_at < 0 and not self._head():
            return
        if self._first is None and _CONTENT.search(buffer, self._body_at):
            self._first = time.perf_counter() - self._t0
        if self._length >= 0:
            if len(buffer) >= self._body_at + self._length:
                self._finish(self._status == 200 and self._first is not None)
        elif self._chunked_done():
            done = b"[DONE]" in buffer or b"chat.completion" in buffer
            self._finish(self._status == 200 and self._first is not None and done)

    def _head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end])
        self._status = int(head[9:12]) if head[:5] == b"HTTP/" else 0
        self._body_at = self._scan = end + 4
        found = _LENGTH.search(head)
        if _CHUNKED.search(head):
            self._length = -2
        elif found:
            self._length = int(found.group(1))
        else:  # no length: the body ends with the connection; not keep-alive
            self._length = 1 << 40
        return True

    def _chunked_done(self) -> bool:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n", self._scan)
            if line_end < 0:
                return False
            size = int(bytes(buffer[self._scan : line_end]).split(b";")[0] or b"0", 16)
            if size == 0:
                return buffer.find(b"\r\n\r\n", line_end) >= 0
            if len(buffer) < line_end + 2 + size + 2:
                return False
            self._scan = line_end + 2 + size + 2

    def _finish(self, ok: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is not None and not waiter.done():
            latency = time.perf_counter() - self._t0
            waiter.set_result(Answer(ok, latency, self._first, self._status))


async def _connect(target: Target) -> Connection:
    loop = asyncio.get_running_loop()
    host, port = target.host_port
    _, protocol = await loop.create_connection(Connection, host, port)
    return protocol


class Load:
    """Connections to one target, kept open across phases and reopened when one closes."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.requests = {s: build_request(target, s) for s in (False, True)}
        self.pool: list[Connection] = []

    async def ensure(self, count: int) -> None:
        """At least ``count`` open connections, each warmed by one request."""
        while len(self.pool) < count:
            conn = await _connect(self.target)
            await conn.send(self.requests[False])
            self.pool.append(conn)

    async def one(self, index: int, stream: bool) -> Answer:
        """One request on connection ``index`` (reopened first if the server closed it)."""
        conn = self.pool[index]
        if conn.transport is None or conn.transport.is_closing():
            conn = self.pool[index] = await _connect(self.target)
        return await conn.send(self.requests[stream])

    async def run(self, concurrency: int, seconds: float, stream: bool = False) -> list[Answer]:
        """``concurrency`` connections sending back to back until ``seconds`` have passed."""
        await self.ensure(concurrency)
        answers: list[Answer] = []
        deadline = time.perf_counter() + seconds

        async def worker(index: int) -> None:
            while time.perf_counter() < deadline:
                answers.append(await self.one(index, stream))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return answers

    def close(self) -> None:
        """Close every connection."""
        for conn in self.pool:
            if conn.transport is not None:
                conn.transport.close()


def _ms(values: list[float], q: float) -> float:
    return 1000 * percentile(values, q)


async def _measured(
    load: Load, stats: TreeStats, concurrency: int, seconds: float, stream: bool = False
) -> tuple[list[Answer], dict[str, Any]]:
    await load.ensure(concurrency)  # new connections and their warm-up are not measured
    cpu0, t0 = stats.cpu(), time.perf_counter()
    answers = await load.run(concurrency, seconds, stream)
    elapsed = time.perf_counter() - t0
    cpu = stats.cpu() - cpu0
    ok = [a for a in answers if a.ok]
    latencies = [a.latency for a in ok]
    figures = {
        "concurrency": concurrency,
        "requests": len(answers),
        "failures": len(answers) - len(ok),
        "statuses": sorted({a.status for a in answers if not a.ok}),
        "rps": len(ok) / elapsed,
        "p50_ms": _ms(latencies, 0.5),
        "p99_ms": _ms(latencies, 0.99),
        "gateway_cpu_ms_per_request": 1000 * cpu / max(len(ok), 1),
    }
    return ok, figures


async def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run the job's phases (``warmup_s``, ``latency_s``, ``ttfc_s``, ``ladder``) and return
    the figures by phase, with the gateway tree's peak RSS at the end."""
    target = Target(job["url"], job["model"], job.get("headers", {}))
    stats = TreeStats(job.get("gateway_pid"))
    load = Load(target)
    out: dict[str, Any] = {}
    try:
        await load.run(1, float(job["warmup_s"]))
        await load.run(1, float(job["warmup_s"]), stream=True)
        _, out["latency"] = await _measured(load, stats, 1, float(job["latency_s"]))
        streams, out["ttfc"] = await _measured(load, stats, 1, float(job["ttfc_s"]), True)
        firsts = [a.first_content for a in streams if a.first_content is not None]
        out["ttfc"]["ttfc_p50_ms"] = _ms(firsts, 0.5)
        out["ttfc"]["ttfc_p99_ms"] = _ms(firsts, 0.99)
        out["ladder"] = []
        for concurrency in job["ladder"]:
            _, step = await _measured(load, stats, int(concurrency), float(job["step_s"]))
            out["ladder"].append(step)
            if not step["p99_ms"] <= float(job["stop_p99_ms"]):  # NaN (no answer) stops too
                break
    finally:
        load.close()
    out["gateway_peak_rss_mb"] = stats.peak_rss_mb()
    return out


def main() -> None:
    """Run the job given as JSON in ``argv[1]``; print its figures on one line."""
    result = run_fast(run_job(json.loads(sys.argv[1])))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
