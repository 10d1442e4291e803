"""Running the gateway: build the pool from a config file and serve it until stopped."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys
from dataclasses import dataclass

from aiohttp import web

from flyllm.config.loader import read_config
from flyllm.errors import ConfigurationError
from flyllm.server.app import Gateway
from flyllm.server.ledger import ledger_for
from flyllm.server.settings import read_gateway_table

__all__ = ["ServeOptions", "is_loopback", "serve"]


@dataclass(slots=True, frozen=True, kw_only=True)
class ServeOptions:
    """``flyllm serve``'s command line."""

    config: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    state: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or "localhost" (an open gateway may bind there
    only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(options: ServeOptions) -> int:
    """Serve until SIGINT or SIGTERM; the exit code."""
    return asyncio.run(_serve(options))


async def _serve(options: ServeOptions) -> int:
    config = read_config(options.config)
    settings = read_gateway_table(config.gateway, config.path, [t.name for t in config.tasks])
    if not settings.keys and not is_loopback(options.host):
        raise ConfigurationError(
            f"refusing to serve on {options.host} without virtual keys: anyone who can reach "
            "it could spend the pool's keys. Add [[gateway.keys]] (see `flyllm keys create`) "
            "or bind to 127.0.0.1"
        )
    manager = config.build()
    gateway = Gateway(manager, settings, ledger_for(options.state))
    runner = web.AppRunner(gateway.application(), handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        if not settings.keys:
            print("flyllm serve: no [[gateway.keys]]: open to loopback only", file=sys.stderr)
        print(f"flyllm serve: listening on http://{options.host}:{options.port}", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await manager.aclose()
    return 0
