"""The gateways under test: how each is configured for the one upstream, started, found ready,
and stopped.

    none     no gateway: the load generator talks to the upstream itself (the baseline every
             "added" figure is measured against, and the proof that the load generator and the
             upstream are never the bottleneck).
    plain    a plain aiohttp reverse proxy with no routing (:mod:`bench.gateway.plain_proxy`):
             the floor for a Python gateway.
    flyllm   ``python -m flyllm serve --config FILE --host 127.0.0.1 --port PORT``, one task
             ``chat`` served by one ``openai_compatible`` instance on the upstream, no keys.
    litellm  LiteLLM's proxy (``litellm --config FILE``), one model ``chat`` on the upstream, no
             master key (it is told it may start without one), one worker.
    portkey  Portkey's open-source gateway (npm ``@portkey-ai/gateway``, installed by
             ``make bench`` under ``bench/gateway/portkey``) on node, headless, the upstream named
             per request by ``x-portkey-provider: openai`` and ``x-portkey-custom-host``; with
             ``preload.cjs`` (streams answer 500 without it, its issues #1389 and #1550).

Each gateway runs as the leader of a new session (its whole process tree is measured), pinned
to the gateway core(s), its output in a log file. A gateway that cannot start is *unavailable*:
:class:`Unavailable` says why, and the run goes on without it.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.core import child_env

__all__ = ["GATEWAYS", "PORTKEY_DIR", "Gateway", "Unavailable", "start_gateway"]

GATEWAYS = ("none", "plain", "flyllm", "litellm", "portkey")
"""The gateway contenders, in the order the table shows them."""

PORTKEY_DIR = Path(__file__).parent / "portkey"
UPSTREAM_KEY = "bench-key"  # the fixed upstream ignores it; never a real key
READY_TIMEOUT_S = 120.0
"""How long a gateway may take to answer its first request (LiteLLM's proxy takes ~10 s idle)."""


class Unavailable(Exception):
    """A gateway could not be started or did not answer; the message says why."""


@dataclass(slots=True)
class Gateway:
    """A running gateway (or ``none``): where to send requests and what they carry."""

    name: str
    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    version: str | None = None
    notes: str = ""


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one gateway: its command, environment additions, request shape."""

    command: list[str]
    model: str
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    notes: str = ""


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _plain(upstream: str, port: int, workdir: Path) -> Launch:
    command = [sys.executable, "-m", "bench.gateway.plain_proxy"]
    command += ["--upstream", upstream.removesuffix("/v1"), "--port", str(port)]
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return Launch(command, "bench-model", version=_version("aiohttp"), notes=f"on {loop}")


FLYLLM_CONFIG = """\
[tasks.chat]

[[instances]]
provider = "openai_compatible"
model = "bench-model"
base_url = "{upstream}"
api_key = "{key}"
tasks = ["chat"]
"""


def _flyllm(upstream: str, port: int, workdir: Path) -> Launch:
    config = workdir / "flyllm.toml"
    config.write_text(FLYLLM_CONFIG.format(upstream=upstream, key=UPSTREAM_KEY))
    command = [sys.executable, "-m", "flyllm", "serve", "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return Launch(command, "chat", version=_version("flyllm"))


LITELLM_CONFIG = """\
model_list:
  - model_name: chat
    litellm_params:
      model: openai/bench-model
      api_base: {upstream}
      api_key: {key}
general_settings:
  # no master key, as the other gateways have no keys: the proxy refuses that unless told
  dangerously_permit_weak_or_unset_master_key: true
"""

_LITELLM_MAIN = (
    "import sys; from litellm_cli.main import proxy_server; sys.argv[0] = 'litellm'; proxy_server()"
)


def _litellm(upstream: str, port: int, workdir: Path) -> Launch:
    version = _version("litellm")
    if version is None or _version("fastapi") is None:
        raise Unavailable("LiteLLM's proxy is not installed (make bench installs the bench extra)")
    config = workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream=upstream, key=UPSTREAM_KEY))
    command = [sys.executable, "-c", _LITELLM_MAIN, "--config", str(config)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    return Launch(command, "chat", version=version)


def _portkey(upstream: str, port: int, workdir: Path) -> Launch:
    node = shutil.which("node")
    server = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if node is None:
        raise Unavailable("node is not installed")
    if not server.exists():
        raise Unavailable(f"Portkey is not installed (make bench runs npm ci in {PORTKEY_DIR})")
    package = json.loads(server.parent.parent.joinpath("package.json").read_text())
    command = [node, "--require", str(PORTKEY_DIR / "preload.cjs"), str(server)]
    command += [f"--port={port}", "--headless"]
    headers = {
        "authorization": f"Bearer {UPSTREAM_KEY}",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream,
    }
    notes = "with preload.cjs: streams re-wrapped (Portkey issues #1389, #1550); it holds "
    notes += "the first stream chunk ~25 ms on purpose, which stays in its TTFC"
    return Launch(
        command, "bench-model", {"NODE_ENV": "production"}, headers, package["version"], notes
    )


LAUNCHES: dict[str, Callable[[str, int, Path], Launch]] = {
    "plain": _plain,
    "flyllm": _flyllm,
    "litellm": _litellm,
    "portkey": _portkey,
}


def _tail(log: Path, lines: int = 1) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no output"
    kept = [x.strip() for x in text.splitlines() if x.strip()]
    return " | ".join(kept[-lines:])[:300] if kept else "no output"


def _answers(port: int, model: str, headers: dict[str, str]) -> tuple[int, str]:
    """One non-streamed request through the gateway: its status and the start of its body."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello."}]})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST",
            "/v1/chat/completions",
            body,
            {"content-type": "application/json", **headers},
        )
        resp = conn.getresponse()
        return resp.status, resp.read(300).decode(errors="replace")
    finally:
        conn.close()


def _wait_ready(proc: subprocess.Popen[bytes], launch: Launch, port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"exited with status {proc.returncode}: {_tail(log)}")
        try:
            status, text = _answers(port, launch.model, launch.headers)
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"HTTP {status}: {text[:200]}"
        time.sleep(0.2)
    raise Unavailable(f"no answer 200 within {READY_TIMEOUT_S:.0f} s ({last})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the gateway's session (its whole tree), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def pin(cores: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning the child (and so its whole tree) to ``cores``."""
    if not cores or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cores)


@contextmanager
def start_gateway(
    name: str, upstream: str, workdir: Path, cores: set[int] | None
) -> Iterator[Gateway]:
    """Start gateway ``name`` in front of ``upstream`` (a base URL ending in ``/v1``), pinned
    to ``cores``; yield it once it answers; stop its whole tree at the end. Raises
    :class:`Unavailable` when it cannot start or answer."""
    if name == "none":
        yield Gateway("none", upstream + "/chat/completions", "bench-model")
        return
    port = free_port()
    launch = LAUNCHES[name](upstream, port, workdir)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            launch.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**child_env(), **launch.env},
            cwd=workdir,
            start_new_session=True,
            preexec_fn=pin(cores),  # only sched_setaffinity, before exec
        )
    try:
        _wait_ready(proc, launch, port, log)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        yield Gateway(
            name, url, launch.model, launch.headers, proc.pid, launch.version, launch.notes
        )
    finally:
        _stop(proc)
