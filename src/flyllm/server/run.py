"""Running the gateway: one process or N workers on one port, signals, graceful shutdown.

``serve(options)`` reads the config file, checks what must hold before anything listens (an
open gateway binds to loopback only; N workers need a shared state store), then either serves
in this process or supervises N worker processes that each build their own LlmManager from the
config file and bind the same port with SO_REUSEPORT (the kernel spreads connections). Instance
state and the keys' limits are shared through the state store (``--state redis://...``).

Stopping: SIGTERM or SIGINT stops accepting at once; requests in flight, streamed or not, may
finish within ``grace_seconds``; past it, each is ended with an error in its own protocol (a
503, or an error event in a started stream) and the process exits 0. A second signal ends the
grace at once. With workers, the supervisor passes the signal on as SIGTERM (workers ignore
SIGINT, so a Ctrl-C at a terminal reaches each worker once) and exits 0 when all have.

A worker that dies (killed, out of memory, a crash): the supervisor stops the others the same
graceful way and exits 1, naming the worker. It does not restart it: a dying worker is a fault
to see, and a process supervisor (systemd ``Restart=on-failure``, Kubernetes) restarts the
whole gateway cleanly, where a restart loop here would hide a crash that repeats.

Header timeout: aiohttp's server has no timer for a request's head, but its keep-alive timer
closes a connection that has no complete request ``keepalive_timeout`` after it opened or
after its last answer, however many bytes of a head trickled in. Setting it to
``header_timeout`` therefore cuts a slowloris client, and bounds idle keep-alive connections by
the same figure (as Go's http.Server does when no idle timeout is set). aiohttp starts that
timer when a connection opens only from 3.14.4 on; with an older aiohttp a connection's first
request head is not timed, and ``flyllm serve`` says so when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import ipaddress
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from flyllm.config.loader import ManagerConfig, read_config
from flyllm.errors import ConfigurationError
from flyllm.manager import LlmManager
from flyllm.server.app import Gateway
from flyllm.server.ledger import ledger_for
from flyllm.server.settings import GatewaySettings, read_gateway_table

__all__ = [
    "LOOPS",
    "ServeOptions",
    "head_timeout_warning",
    "is_loopback",
    "root_url",
    "run_gateway",
    "run_loop",
    "serve",
]

LOOPS = ("auto", "asyncio", "uvloop")
"""``--loop``: uvloop when installed (auto), or the one named."""

_POLL_S = 0.05  # how often a drain looks whether the last connection has gone
_ABORT_WAIT_S = 2.0  # past the grace: time for cancelled requests to write their error
_START_TIMEOUT_S = 60.0  # workers must be listening by then
_EXIT_MARGIN_S = 10.0  # beyond a worker's grace before the supervisor kills it
_TIMED_FIRST_HEAD = (3, 14, 4)  # the aiohttp that times a connection's first request head


@dataclass(slots=True, frozen=True, kw_only=True)
class ServeOptions:
    """``flyllm serve``'s command line: ``state`` (a redis:// URL) overrides the config file's;
    ``loop`` is one of LOOPS."""

    config: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    state: str | None = None
    loop: str = "auto"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or "localhost" (an open gateway may bind there
    only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def root_url(host: str, port: int) -> str:
    """``http://host:port`` (an IPv6 address in brackets): the gateway's root URL."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(options: ServeOptions) -> int:
    """Serve until SIGINT or SIGTERM; the exit code (0 stopped, 1 a worker died or could not
    start). Raises ConfigurationError (exit code 2) before listening when the set-up is
    unsafe or wrong."""
    config, settings = _checked(options)
    if options.workers == 1:
        return run_loop(_serve_one(config, settings, options, reuse_port=False), options.loop)
    return _Supervisor(options, settings).run()


def _checked(options: ServeOptions) -> tuple[ManagerConfig, GatewaySettings]:
    config = read_config(options.config)
    settings = read_gateway_table(config.gateway, config.path, [t.name for t in config.tasks])
    if not settings.keys and not is_loopback(options.host):
        raise ConfigurationError(
            f"refusing to serve on {options.host} without virtual keys: anyone who can reach "
            "it could spend the pool's keys. Add [[gateway.keys]] (see `flyllm keys create`) "
            "or bind to 127.0.0.1"
        )
    if options.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {options.workers}")
    state = options.state or config.options.get("state")
    if options.workers > 1 and (state is None or state == "memory"):
        raise ConfigurationError(
            f"--workers {options.workers} needs a shared state store: pass --state "
            "redis://HOST:6379/0 (or set state in the config file). With the in-process memory "
            "store each worker would keep its own counts, and every key's limits and budget "
            f"would silently multiply by {options.workers}"
        )
    if options.loop not in LOOPS:
        raise ConfigurationError(f"--loop must be one of {', '.join(LOOPS)}, got {options.loop!r}")
    if options.state:
        config = dataclasses.replace(config, options={**config.options, "state": options.state})
    return config, settings


def run_loop(main: Coroutine[Any, Any, int], loop: str = "auto") -> int:
    """Run ``main`` on uvloop when ``loop`` is "uvloop", or "auto" and uvloop is installed
    (``pip install 'flyllm[uvloop]'``), else on asyncio's own loop."""
    uvloop = None
    if loop != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise ConfigurationError(
                    "--loop uvloop: uvloop is not installed: pip install 'flyllm[uvloop]'"
                ) from None
    if uvloop is None:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def _loop_name() -> str:
    """The running event loop's implementation, for the start-up line."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


async def _serve_one(
    config: ManagerConfig,
    settings: GatewaySettings,
    options: ServeOptions,
    *,
    reuse_port: bool,
    ready: Callable[[int], None] | None = None,
) -> int:
    manager = config.build()
    try:
        gateway = _gateway(manager, settings, config.options.get("state"))
        if ready is None:
            ready = _announce(options.host, settings)
        await run_gateway(gateway, options.host, options.port, reuse_port=reuse_port, ready=ready)
    finally:
        await manager.aclose()
    return 0


def _gateway(manager: LlmManager, settings: GatewaySettings, state: str | None) -> Gateway:
    """The gateway one process serves. The keys' ledger (``ledger_for(state)``: limits and
    budgets booked in the state store, shared by every worker) is built and handed over here."""
    return Gateway(manager, settings, ledger_for(state))


def _announce(host: str, settings: GatewaySettings) -> Callable[[int], None]:
    def ready(port: int) -> None:
        if not settings.keys:
            print("flyllm serve: no [[gateway.keys]]: open to loopback only", file=sys.stderr)
        print(f"flyllm serve: listening on {root_url(host, port)} ({_loop_name()})",
              file=sys.stderr, flush=True)  # fmt: skip

    return ready


async def run_gateway(
    gateway: Gateway,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``gateway`` on ``host:port`` in the running loop until SIGINT or SIGTERM (or
    ``stop`` is set, when given: then no signal handler is installed), then shut down
    gracefully (see the module docstring). ``ready`` gets the bound port once listening."""
    settings = gateway.settings
    warning = head_timeout_warning(aiohttp.__version__)
    if warning:
        print(f"flyllm serve: {warning}", file=sys.stderr)
    runner = web.AppRunner(
        gateway.application(),
        handler_cancellation=True,  # a client that leaves cancels its upstream request
        keepalive_timeout=settings.header_timeout,  # the header timeout: module docstring
        shutdown_timeout=_ABORT_WAIT_S,
        access_log=None,
        logger=_http_log,  # requests aiohttp cannot parse, logged without their bytes
    )
    await runner.setup()
    signals = _Signals(stop)  # before anyone can know the port: a signal then drains too
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
        await site.start()
        if ready is not None:
            ready(int(runner.addresses[0][1]))
        await signals.first.wait()
        await _drain(runner, gateway, settings.grace_seconds, signals.second)
    finally:
        signals.remove()
        await runner.cleanup()


class _UnparsedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback whose text quotes the offending
    line, an ``Authorization`` header and its key included: such a record becomes one line
    naming the error's class, without the request's bytes (nor a traceback per bad request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "%s from %s: a request that is not valid HTTP, answered 400"
            args = record.args if isinstance(record.args, tuple) else ()
            record.args = (type(exc).__name__, args[0] if args else "?")
            record.exc_info = record.exc_text = None
        return True


_http_log = logging.getLogger("flyllm.server.http")
_http_log.addFilter(_UnparsedRequests())


def head_timeout_warning(version: str) -> str | None:
    """What ``header_timeout`` cannot do with aiohttp ``version``, or None."""
    try:
        parts = tuple(int(p) for p in version.split(".")[:3])
    except ValueError:
        return None  # a development build: assume it is recent
    if parts >= _TIMED_FIRST_HEAD:
        return None
    return (
        f"aiohttp {version} does not time a connection's first request head, so header_timeout "
        "protects from slow clients only after their first request: install aiohttp>=3.14.4"
    )


class _Signals:
    """The first and second SIGINT/SIGTERM as events (or ``stop`` alone, for tests)."""

    def __init__(self, stop: asyncio.Event | None) -> None:
        self.second = asyncio.Event()
        self._installed = stop is None
        self.first = stop if stop is not None else asyncio.Event()
        if self._installed:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._got)

    def _got(self) -> None:
        (self.second if self.first.is_set() else self.first).set()

    def remove(self) -> None:
        if self._installed:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def _drain(runner: web.AppRunner, gateway: Gateway, grace: float, cut: asyncio.Event) -> None:
    """Stop accepting, let requests finish within ``grace`` (or until ``cut``), then end the
    rest with an error and give them a moment to say so."""
    for site in runner.sites:
        await site.stop()
    server = runner.server
    if server is None:
        return
    server.pre_shutdown()  # idle keep-alive connections close now, busy ones after their answer
    await _until_gone(server, grace, cut)
    if not server.connections:
        return
    ended = gateway.cancel_in_flight()
    print(f"flyllm serve: grace over: ended {ended} unfinished request(s) with an error",
          file=sys.stderr, flush=True)  # fmt: skip
    await _until_gone(server, _ABORT_WAIT_S, asyncio.Event())


async def _until_gone(server: web.Server, seconds: float, cut: asyncio.Event) -> None:
    """Wait until the server has no connection left, ``seconds`` pass or ``cut`` is set."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while server.connections and not cut.is_set():
        left = deadline - loop.time()
        if left <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):  # then look at the connections again
            await asyncio.wait_for(cut.wait(), min(left, _POLL_S))


# -- workers --------------------------------------------------------------------------------


class _Supervisor:
    """N worker processes on one port; passes signals on, stops all when one dies."""

    def __init__(self, options: ServeOptions, settings: GatewaySettings) -> None:
        self.options = options
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")  # no forked event loop or pool
        self.signals = 0

    def run(self) -> int:
        reserved = _reserve_port(self.options.host, self.options.port)
        port = reserved.getsockname()[1]
        options = dataclasses.replace(self.options, port=port)
        messages = self.context.SimpleQueue()
        procs = [
            self.context.Process(
                target=_worker_main, args=(_as_args(options), i, messages), name=f"worker-{i}"
            )
            for i in range(1, options.workers + 1)
        ]
        previous = {sig: signal.signal(sig, self._got) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            # Workers are born ignoring SIGINT (an ignored signal stays ignored across exec),
            # so a Ctrl-C while they start up cannot kill one with a KeyboardInterrupt.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for proc in procs:
                proc.start()
            signal.signal(signal.SIGINT, self._got)
            code = self._started(procs, messages, port)
            if code == 0:
                reserved.close()
                code = self._watch(procs)
            return code
        finally:
            reserved.close()
            self._stop(procs)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _got(self, signum: int, frame: Any) -> None:
        self.signals += 1

    def _started(self, procs: list[Any], messages: Any, port: int) -> int:
        deadline = time.monotonic() + _START_TIMEOUT_S
        pending = len(procs)
        while pending and not self.signals:
            if not messages.empty():
                index, error = messages.get()
                if error:
                    print(f"flyllm serve: worker {index}: {error}", file=sys.stderr, flush=True)
                    return 1
                pending -= 1
                continue
            dead = [p for p in procs if p.exitcode is not None]
            if dead:
                print(f"flyllm serve: {_died(dead[0])} while starting", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print("flyllm serve: the workers did not start within 60 s", file=sys.stderr)
                return 1
            wait([p.sentinel for p in procs], timeout=_POLL_S)
        if self.signals:
            return 0
        if not self.settings.keys:
            print("flyllm serve: no [[gateway.keys]]: open to loopback only", file=sys.stderr)
        url, pids = root_url(self.options.host, port), ", ".join(str(p.pid) for p in procs)
        print(f"flyllm serve: listening on {url} with {len(procs)} workers (pids {pids})",
              file=sys.stderr, flush=True)  # fmt: skip
        return 0

    def _watch(self, procs: list[Any]) -> int:
        while not self.signals:
            wait([p.sentinel for p in procs], timeout=0.2)
            dead = [p for p in procs if p.exitcode is not None]
            if dead and not self.signals:
                print(f"flyllm serve: {_died(dead[0])}: stopping the others", file=sys.stderr,
                      flush=True)  # fmt: skip
                return 1
        return 0

    def _stop(self, procs: list[Any]) -> None:
        """SIGTERM each live worker (once more on a second signal, which ends their grace),
        wait through their grace, then kill what is left."""
        started = [p for p in procs if p.pid is not None]
        deadline = time.monotonic() + self.settings.grace_seconds + _ABORT_WAIT_S + _EXIT_MARGIN_S
        sent = 0
        while live := [p for p in started if p.exitcode is None]:
            if sent < (2 if self.signals > 1 else 1):
                for proc in live:
                    os.kill(proc.pid, signal.SIGTERM)
                sent += 1
            if time.monotonic() > deadline:
                for proc in live:
                    proc.kill()
            wait([p.sentinel for p in live], timeout=_POLL_S)
        for proc in started:
            proc.join()


def _died(proc: Any) -> str:
    code = proc.exitcode
    how = f"signal {-code}" if code < 0 else f"exit code {code}"
    return f"{proc.name} (pid {proc.pid}) died ({how})"


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening SO_REUSEPORT socket: turns port 0 into a real port every worker
    can join (the kernel gives connections only to listening sockets)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _as_args(options: ServeOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _worker_main(args: dict[str, Any], index: int, messages: Any) -> None:
    """One worker process: its own manager from the config file, the shared port."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # already; the supervisor passes it on as SIGTERM
    options = ServeOptions(**args)
    try:
        config, settings = _checked(dataclasses.replace(options, workers=1))
        main = _serve_one(
            config, settings, options, reuse_port=True,
            ready=lambda port: messages.put((index, "")),
        )  # fmt: skip
        code = run_loop(main, options.loop)
    except Exception as exc:  # reported to the supervisor, which prints it and stops
        messages.put((index, f"{type(exc).__name__}: {exc}"))
        code = 1
    sys.exit(code)
