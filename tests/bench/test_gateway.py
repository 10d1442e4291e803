"""The gateway benchmark's parts, in process and fast: the upstream's parsing (and its refusals),
the load generator's reading of answers (and of failures), the figures derived from a run, the
targets' verdicts, the process-tree figures, and a gateway that cannot start reported as
unavailable. The whole scenario runs in the smoke run (test_bench_smoke.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bench.gateway import contenders
from bench.gateway.contenders import Launch, Unavailable, start_gateway
from bench.gateway.load import Load, Target
from bench.gateway.proctree import tree_cpu_seconds, tree_peak_rss_mb, tree_pids
from bench.gateway.scenario import derive, gateway_targets
from bench.gateway.upstream import ANSWER, UpstreamProtocol

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """The fixed-answer upstream on a loopback port, in this event loop."""
    loop = asyncio.get_running_loop()
    connections: list[UpstreamProtocol] = []

    def accept() -> UpstreamProtocol:
        connections.append(UpstreamProtocol())
        return connections[-1]

    server = await loop.create_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    for connection in connections:  # no transport left for a later test's garbage collection
        connection.close()
    await asyncio.sleep(0.01)
    await server.wait_closed()


async def exchange(port: int, raw: bytes, read_for: float = 0.3) -> bytes:
    """Write ``raw`` on a new connection; what comes back within ``read_for`` (or until EOF)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    got = bytearray()

    async def read_all() -> None:
        while chunk := await reader.read(65536):
            got.extend(chunk)

    with contextlib.suppress(asyncio.TimeoutError):  # a connection left open: what came
        await asyncio.wait_for(read_all(), read_for)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return bytes(got)


def chat(path: str = "/v1/chat/completions", body: bytes = b'{"model": "m"}') -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


# -- the upstream ------------------------------------------------------------------------------


async def test_upstream_answers_a_completion_and_pipelined_streams(upstream: int) -> None:
    stream = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    got = await exchange(upstream, chat() + chat(body=stream))
    first, _, rest = got.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK") and b"application/json" in first
    assert json.loads(rest[: rest.index(b"HTTP/1.1")])["choices"][0]["message"]["content"] == ANSWER
    second = rest[rest.index(b"HTTP/1.1") :]
    assert b"text/event-stream" in second and b"transfer-encoding: chunked" in second
    events = [line for line in second.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]"
    decoded = [json.loads(e[6:]) for e in events[:-1]]
    text = "".join(c["delta"].get("content", "") for e in decoded for c in e["choices"])
    assert text == ANSWER
    assert decoded[-1]["usage"]["total_tokens"] == 16  # include_usage was asked for
    assert second.endswith(b"\r\n0\r\n\r\n")


async def test_upstream_reads_a_chunked_request_body(upstream: int) -> None:
    body = b'{"model": "m", "stream": true}'
    raw = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    raw += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body[:7]), body[:7])
    raw = raw.replace(b"0\r\n\r\n", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body[7:]), body[7:]))
    got = await exchange(upstream, raw)
    assert b"text/event-stream" in got and b"data: [DONE]" in got


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GET / HTTP/1.1\r\n" + b"x" * (65 * 1024), id="head too large"),
        pytest.param(
            chat(body=b"").replace(b"length: 0", b"length: 99999999"), id="body too large"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", id="bad chunk size"
        ),
    ],
)
async def test_upstream_drops_hostile_requests(upstream: int, raw: bytes) -> None:
    t0 = time.perf_counter()
    got = await exchange(upstream, raw, read_for=5.0)
    assert got == b""  # closed without an answer, at once
    assert time.perf_counter() - t0 < 2.0


async def test_upstream_counts_requests(upstream: int) -> None:
    before = UpstreamProtocol.requests
    await exchange(upstream, chat() + chat())
    stats = await exchange(upstream, b"GET /_stats HTTP/1.1\r\nhost: x\r\n\r\n")
    assert json.loads(stats.partition(b"\r\n\r\n")[2]) == {"requests": before + 2}


# -- the load generator --------------------------------------------------------------------------


async def test_load_reads_answers_and_first_content(upstream: int) -> None:
    load = Load(Target(f"http://127.0.0.1:{upstream}/v1/chat/completions", "bench-model"))
    try:
        answers = await load.run(2, 0.1)
        streams = await load.run(1, 0.1, stream=True)
    finally:
        load.close()
        await asyncio.sleep(0.01)
    assert len(answers) > 10 and all(a.ok and a.status == 200 for a in answers)
    assert streams and all(a.ok and a.first_content is not None for a in streams)
    assert all(0 < a.first_content <= a.latency for a in streams if a.first_content)


@pytest.fixture
async def canned() -> AsyncIterator[Callable[[bytes, bool], Awaitable[int]]]:
    """Starts a server that answers every request with the given bytes (then closes the
    connection, if told); its port. Every server and connection is closed at the end."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(answer: bytes, close: bool) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            try:
                while await reader.read(65536):
                    writer.write(answer)
                    if close:
                        return
            finally:
                writer.close()

        servers.append(await asyncio.start_server(handle, "127.0.0.1", 0))
        port: int = servers[-1].sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.01)
    for server in servers:
        await server.wait_closed()


OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


@pytest.mark.parametrize(
    ("answer", "close", "status"),
    [
        pytest.param(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}",
            False,
            500,
            id="500",
        ),
        pytest.param(
            OK_HEAD + b"content-length: 2\r\n\r\n{}", False, 200, id="200 without content"
        ),
        pytest.param(OK_HEAD + b"content-length: 99\r\n\r\n{}", True, 200, id="cut short"),
        pytest.param(
            OK_HEAD + b"transfer-encoding: chunked\r\n\r\n5\r\ndata:\r\n0\r\n\r\n",
            False,
            200,
            id="stream without content",
        ),
    ],
)
async def test_load_counts_failed_answers(
    canned: Callable[[bytes, bool], Awaitable[int]], answer: bytes, close: bool, status: int
) -> None:
    port = await canned(answer, close)
    load = Load(Target(f"http://127.0.0.1:{port}/v1/chat/completions", "m"))
    try:
        answers = await load.run(1, 0.05)
    finally:
        load.close()
        await asyncio.sleep(0.01)
    assert answers and not any(a.ok for a in answers)
    assert {a.status for a in answers} == {status}


# -- derived figures and verdicts ----------------------------------------------------------------


def measured(
    p50: float, p99: float, ttfc: float, steps: list[tuple[int, float, float, int]]
) -> Any:
    """A gateway's load figures: latency and TTFC phases, and ladder steps (c, rps, p99, failed)."""
    return {
        "latency": {"p50_ms": p50, "p99_ms": p99, "failures": 0, "gateway_cpu_ms_per_request": 0.2},
        "ttfc": {"ttfc_p50_ms": ttfc, "ttfc_p99_ms": ttfc, "failures": 0},
        "ladder": [
            {
                "concurrency": c,
                "rps": rps,
                "p99_ms": p,
                "failures": failed,
                "gateway_cpu_ms_per_request": 1000 / rps,
            }
            for c, rps, p, failed in steps
        ],
        "gateway_peak_rss_mb": 50.0,
    }


RUN = {
    "none": measured(0.05, 0.08, 0.05, [(1, 15000, 0.1, 0), (8, 25000, 1.0, 0)]),
    "plain": measured(0.30, 0.60, 0.35, [(1, 3000, 1.0, 0), (8, 6000, 3.0, 0)]),
    "flyllm": measured(0.40, 0.90, 0.45, [(1, 2800, 1.0, 0), (8, 5000, 4.0, 0), (64, 9000, 80, 0)]),
    "portkey": measured(1.7, 2.5, 27.0, [(1, 600, 2.0, 0), (32, 1000, 40.0, 0)]),
    "litellm": measured(6.5, 9.0, 8.0, [(1, 150, 8.0, 0), (4, 160, 30.0, 3)]),
}


def test_derive_added_latency_best_step_and_ratios() -> None:
    d = derive(RUN, bound_ms=50.0)
    assert d["plain"]["added_p50_ms"] == pytest.approx(0.25)
    assert d["plain"]["added_p99_ms"] == pytest.approx(0.52)
    assert d["portkey"]["ttfc_added_p50_ms"] == pytest.approx(26.95)
    # flyllm's c=64 step passed the bound; LiteLLM's c=4 step failed requests: neither counts
    assert (d["flyllm"]["rps_at_bound"], d["flyllm"]["concurrency_at_bound"]) == (5000, 8)
    assert (d["litellm"]["rps_at_bound"], d["litellm"]["concurrency_at_bound"]) == (150, 1)
    assert d["flyllm"]["cpu_ms_per_request"] == pytest.approx(0.2)  # at the step kept
    assert d["flyllm"]["rps_at_bound/portkey"] == pytest.approx(5.0)
    assert d["flyllm"]["cpu_ms_per_request/plain"] == pytest.approx(6000 / 5000)
    assert "rps_at_bound/plain" not in d["plain"]
    assert d["none"]["added_p99_ms"] == 0


def test_derive_without_a_baseline_or_a_step_within_the_bound() -> None:
    d = derive({"plain": RUN["plain"], "flyllm": {"unavailable": "x"}}, bound_ms=0.5)
    assert d["plain"]["added_p50_ms"] is None  # no "none" to subtract
    assert d["plain"]["rps_at_bound"] is None and d["plain"]["cpu_ms_per_request"] is None
    assert "flyllm" not in d


def verdicts_by_name(run: dict[str, Any]) -> dict[str, bool | None]:
    return {v.name: v.met for v in gateway_targets(derive(run, 50.0))}


def test_targets_pass_and_miss() -> None:
    met = verdicts_by_name(RUN)
    assert len(met) == 5
    assert met["gateway: flyllm added p99 at c=1, ms"] is True  # 0.82 ms
    assert met["gateway: flyllm added p99 at c=1 - Portkey's, ms"] is True
    assert met["gateway: flyllm / plain CPU per request"] is True  # 1.2x
    assert met["gateway: flyllm / portkey throughput per core"] is True  # 5x
    assert met["gateway: flyllm / litellm throughput per core"] is True  # 33x
    slow = {**RUN, "flyllm": measured(2.0, 3.0, 2.0, [(1, 400, 3.0, 0), (8, 900, 9.0, 0)])}
    assert not any(verdicts_by_name(slow).values())


def test_targets_are_not_applicable_without_flyllm_or_the_other_gateway() -> None:
    without_flyllm = {k: v for k, v in RUN.items() if k != "flyllm"}
    assert set(verdicts_by_name(without_flyllm).values()) == {None}
    alone = verdicts_by_name({"none": RUN["none"], "flyllm": RUN["flyllm"]})
    assert alone["gateway: flyllm added p99 at c=1, ms"] is True
    assert [name for name, met in alone.items() if met is None] == [
        "gateway: flyllm added p99 at c=1 - Portkey's, ms",
        "gateway: flyllm / plain CPU per request",
        "gateway: flyllm / portkey throughput per core",
        "gateway: flyllm / litellm throughput per core",
    ]


# -- process trees and start-up --------------------------------------------------------------------

CHILD = "x = bytearray(30 << 20); import time; time.sleep(30)"
TREE = "import subprocess, sys, time; "
TREE += f"subprocess.Popen([sys.executable, '-c', {CHILD!r}]); time.sleep(30)"


def test_process_tree_is_the_session_with_its_cpu_and_memory() -> None:
    leader = subprocess.Popen([sys.executable, "-c", TREE], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(tree_pids(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the child's 30 MB are touched
        assert len(tree_pids(leader.pid)) == 2
        assert tree_cpu_seconds(leader.pid) > 0
        assert tree_peak_rss_mb(leader.pid) > 30
    finally:
        import os
        import signal

        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def fake(command: list[str]) -> Callable[[str, int, Path], Launch]:
    return lambda upstream, port, workdir: Launch(command, "m")


def run_start(name: str, upstream: str, tmp: Path) -> None:
    with start_gateway(name, upstream, tmp, None):
        raise AssertionError("started")


def test_a_gateway_that_exits_is_unavailable_with_its_last_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = [sys.executable, "-c", "import sys; print('starting'); sys.exit('no serve command')"]
    monkeypatch.setitem(contenders.LAUNCHES, "flyllm", fake(command))
    with pytest.raises(Unavailable, match=r"^exited with status 1: no serve command$"):
        run_start("flyllm", "http://127.0.0.1:9/v1", tmp_path)


def test_a_gateway_that_never_answers_is_unavailable_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    command = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    monkeypatch.setitem(contenders.LAUNCHES, "plain", fake(command))
    monkeypatch.setattr(contenders, "READY_TIMEOUT_S", 0.5)
    with pytest.raises(Unavailable, match=r"no answer 200 within 0 s \(ConnectionRefusedError"):
        run_start("plain", "http://127.0.0.1:9/v1", tmp_path)
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_missing_installs_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contenders, "PORTKEY_DIR", tmp_path)
    with pytest.raises(Unavailable, match=r"Portkey is not installed.*npm ci"):
        run_start("portkey", "http://127.0.0.1:9/v1", tmp_path)
    monkeypatch.setattr(contenders, "_version", lambda package: None)
    with pytest.raises(Unavailable, match="LiteLLM's proxy is not installed"):
        run_start("litellm", "http://127.0.0.1:9/v1", tmp_path)
