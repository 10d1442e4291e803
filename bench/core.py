"""The harness: emulators and contenders in their own processes, and the figures they report.

Every contender is measured side by side in one run, on the same work. The emulator runs in
its own process (so its CPU is not counted); each (scenario, contender) pair runs in a fresh
child process (``python -m bench.run_one``) so its CPU time and peak RSS are its own. The
client's CPU is the child's own user+sys time (``time.process_time``) over the measured work,
after a warm-up, including the background work the contender left running when the work
returned (:func:`settle`). Ratios, not absolute times, are the figures to read: the machine is
noisy, and all contenders share its noise.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "ROOT",
    "BatchResult",
    "ChildError",
    "ImportCost",
    "StreamResult",
    "child_env",
    "current_rss_mb",
    "emulator_process",
    "emulator_processes",
    "import_costs",
    "peak_rss_mb",
    "percentile",
    "run_child",
    "run_fast",
    "run_pool",
    "settle",
]

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: children run from here so that ``bench`` is importable."""

RESULT_PREFIX = "BENCH-RESULT "
"""The marker of the one line of a child's stdout that carries its JSON figures."""

QUIET_ENV = {
    # LiteLLM: use the bundled cost map and catalogs, never fetch them (no network, no hang).
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOG": "ERROR",
}

_URL = re.compile(r"base_url=(\S+)")


def child_env() -> dict[str, str]:
    """The environment of every child process: ``bench`` importable, LiteLLM offline, and no
    proxy (the emulators are on loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(QUIET_ENV)
    return env


EmulatorSpec = tuple[str, int, Sequence[str]]
"""(provider, instance count, extra ``flyllm emulate`` flags) of one emulator process."""


def _emulator_command(spec: EmulatorSpec) -> list[str]:
    provider, count, flags = spec
    command = [sys.executable, "-m", "flyllm.emulator", "--provider", provider, "--port", "0"]
    return [*command, "--count", str(count), *flags]


def _read_urls(proc: subprocess.Popen[str], count: int) -> list[str]:
    urls: list[str] = []
    assert proc.stdout is not None
    while len(urls) < count:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator exited before printing its URLs: {proc.args!r}")
        urls += _URL.findall(line)
    return urls


@contextmanager
def emulator_processes(*specs: EmulatorSpec) -> Iterator[list[list[str]]]:
    """Start one ``flyllm emulate`` process per spec, all at once; yields each one's base URLs.
    The processes are stopped (SIGTERM, then SIGKILL after 10 s) when the block ends."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for spec in specs:
            command = _emulator_command(spec)
            procs.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env())
            )
        yield [_read_urls(proc, spec[1]) for proc, spec in zip(procs, specs, strict=True)]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def emulator_process(provider: str = "openai", count: int = 4, *flags: str) -> Iterator[list[str]]:
    """Start ``flyllm emulate`` in its own process; yields the instances' base URLs.

    ``flags`` are extra command-line options (``--fault server_error=0.15``, ``--reply-tokens
    200``...), applied to all ``count`` instances of this process."""
    with emulator_processes((provider, count, flags)) as (urls,):
        yield urls


class ChildError(RuntimeError):
    """A measuring child process failed; the message ends with its stderr."""


def run_child(
    job: Mapping[str, Any],
    timeout: float = 900.0,
    module: str = "bench.run_one",
    preexec_fn: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run one job in a fresh ``python -m MODULE`` process (``bench.run_one`` unless told; with
    ``preexec_fn`` run in the child before it starts, as a CPU pinning) and return its figures."""
    command = [sys.executable, "-m", module, json.dumps(job)]
    try:
        out = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=timeout,
            check=False,
            preexec_fn=preexec_fn,  # only a CPU pinning, before exec
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildError(f"{job.get('kind')}/{job.get('contender')}: timed out") from exc
    for line in reversed(out.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = "\n".join(out.stderr.strip().splitlines()[-15:])
    raise ChildError(
        f"{job.get('kind')}/{job.get('contender')} exited {out.returncode} without figures:\n{tail}"
    )


# -- figures ---------------------------------------------------------------------------------


@dataclass(slots=True)
class BatchResult:
    """What a contender reports for a batch of non-streamed requests."""

    latencies: list[float] = field(default_factory=list)
    successes: int = 0
    failures: int = 0


@dataclass(slots=True)
class StreamResult:
    """What a contender reports for a batch of streams: time to first content chunk per
    successful stream, and the content chunks received in all."""

    ttfc: list[float] = field(default_factory=list)
    chunks: int = 0
    successes: int = 0
    failures: int = 0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB (``/proc/self/statm``; elsewhere psutil
    when installed, else the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (the bench extra has it), else on asyncio's
    loop: for the gateway benchmark's load generator and upstream, whose speed is headroom."""
    if importlib.util.find_spec("uvloop") is not None:
        # imported by name: uvloop is in the bench extra only, not where mypy runs in CI
        result: T = importlib.import_module("uvloop").run(main)
        return result
    return asyncio.run(main)


async def run_pool(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(0)``..``job(count - 1)`` with at most ``concurrency`` at once: that many
    workers pull the next index as they finish (a semaphore's bound, without a task per job)."""
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            await job(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


async def settle(limit: float = 2.0) -> None:
    """Let the background tasks a contender left behind (logging callbacks...) finish, within
    ``limit`` seconds, so that their CPU is counted with the work that caused it."""
    deadline = time.perf_counter() + limit
    me = asyncio.current_task()
    while time.perf_counter() < deadline:
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not others:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


# -- start-up --------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportCost:
    """Import time (fastest of fresh interpreters) and resident memory after the import."""

    module: str
    seconds: float
    rss_mb: float


_IMPORT_CODE = """
import time
t = time.perf_counter()
import {module}
dt = time.perf_counter() - t
import os, resource
try:
    with open("/proc/self/statm", "rb") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
except OSError:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(dt, rss)
"""

SLOW_IMPORT_S = 1.0
"""A module whose import takes longer than this is timed at most ``SLOW_REPEAT`` times."""
SLOW_REPEAT = 3


def _import_once(module: str) -> ImportCost | None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_CODE.format(module=module)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        check=False,
    )
    if out.returncode != 0:
        return None
    seconds, rss = (float(x) for x in out.stdout.split()[-2:])
    return ImportCost(module, seconds, rss)


def import_costs(modules: Sequence[str], repeat: int = 15) -> dict[str, ImportCost]:
    """Import time and RSS of each module, each import in a fresh interpreter. Runs are
    interleaved and the fastest kept, since noise only ever adds time (a slow module, like
    litellm, is run fewer times); ``"sys"`` (already loaded) gives the interpreter's own
    baseline. A module that fails to import is left out."""
    best: dict[str, ImportCost] = {}
    runs = dict.fromkeys(modules, 0)
    for _ in range(repeat):
        for module in modules:
            known, done = best.get(module), runs[module]
            slow = known is not None and known.seconds > SLOW_IMPORT_S
            if done and (known is None or (slow and done >= SLOW_REPEAT)):
                continue
            runs[module] += 1
            cost = _import_once(module)
            if cost is not None and (known is None or cost.seconds < known.seconds):
                best[module] = cost
    return best
