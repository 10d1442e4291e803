"""``flyllm serve``: an OpenAI- and Anthropic-compatible gateway over the pool (flyllm.server).

``flyllm serve --demo`` needs no config file and no API key: it starts three emulated
providers on loopback (one of them failing now and then, so answers fail over), serves a pool
over them, and prints a ``curl`` line and the environment variables that point the openai and
anthropic SDKs at it.
"""

from __future__ import annotations

import argparse
import json
import shlex
from contextlib import AsyncExitStack
from typing import Any

from flyllm.cli._common import UsageError, add_config, config_path, positive

__all__ = ["DEMO_MODELS", "add", "run"]

DEMO_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
}
"""The demo pool: one emulated instance per provider, all serving the task "chat"; each model
name is also an alias of "chat", so an SDK's usual model name works."""

_DEMO_KEY = "flyllm-demo"  # the open demo gateway takes any key; the SDKs insist on one


def add(commands: Any) -> None:
    """Add the ``serve`` sub-parser."""
    serve = commands.add_parser(
        "serve",
        help="serve the pool as an OpenAI- and Anthropic-compatible HTTP gateway",
        description="Serve the config file's pool over HTTP: OpenAI's /v1/chat/completions "
        "and /v1/embeddings, Anthropic's /v1/messages, /v1/models, /healthz, /readyz and "
        "/metrics. SIGTERM or "
        "Ctrl-C stops accepting and lets requests finish within [gateway] grace_seconds.",
    )
    add_config(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any)")
    serve.add_argument(
        "--workers", type=positive, default=1, metavar="N",
        help="processes on the port (default 1; more than 1 needs --state)",
    )  # fmt: skip
    serve.add_argument(
        "--state", metavar="URL",
        help="shared state store (redis://HOST:6379/0) for instance state and keys' limits "
        "across workers; overrides the config file's",
    )  # fmt: skip
    serve.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="event loop (default auto: uvloop when installed, pip install 'flyllm[uvloop]')",
    )  # fmt: skip
    serve.add_argument(
        "--demo", action="store_true",
        help="no config: serve a demo pool over built-in emulated providers",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm serve`` until stopped; the exit code."""
    from flyllm.server.run import ServeOptions, run_loop, serve

    if args.demo:
        _check_demo(args)
        return run_loop(_demo(args.host, args.port), args.loop)
    options = ServeOptions(
        config=config_path(args.config),
        host=args.host,
        port=args.port,
        workers=args.workers,
        state=args.state,
        loop=args.loop,
    )
    return serve(options)


def _check_demo(args: argparse.Namespace) -> None:
    from flyllm.server.run import is_loopback

    if args.config or args.state or args.workers != 1:
        raise UsageError("--demo takes no --config, --state or --workers: it builds its own pool")
    if not is_loopback(args.host):
        raise UsageError(
            f"--demo serves an open gateway: it binds to loopback only, not {args.host}"
        )


async def _demo(host: str, port: int) -> int:
    from flyllm.emulator import Emulator, Fault
    from flyllm.manager import LlmManager
    from flyllm.server import Gateway, GatewaySettings
    from flyllm.server.run import run_gateway
    from flyllm.types import TaskDefinition

    async with AsyncExitStack() as stack:
        manager = await stack.enter_async_context(LlmManager(max_attempts=3))
        manager.define_task(TaskDefinition("chat", {"max_tokens": 200}))
        for seed, (provider, model) in enumerate(DEMO_MODELS.items(), 1):
            # OpenAI's instance fails one request in four: watch x-flyllm-attempts.
            faults = [Fault("server_error", 0.25)] if provider == "openai" else []
            emulator = Emulator(provider=provider, latency_ms=30, jitter_ms=20, chunk_delay_ms=15,
                                seed=seed, faults=faults)  # fmt: skip
            await stack.enter_async_context(emulator)
            manager.add_provider(provider, f"demo-key-{seed}", model, ["chat"],
                                 base_url=emulator.base_url)  # fmt: skip
        settings = GatewaySettings(aliases=dict.fromkeys(DEMO_MODELS.values(), "chat"))
        gateway = Gateway(manager, settings)
        await run_gateway(gateway, host, port, ready=lambda bound: _print_demo(host, bound))
    return 0


def _print_demo(host: str, port: int) -> None:
    from flyllm.server.run import root_url

    root = root_url(host, port)
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hello, gateway!"}]}
    curl = shlex.join(["curl", "-sS", "-i", f"{root}/v1/chat/completions", "-H",
                       "Content-Type: application/json", "-d", json.dumps(body)])  # fmt: skip
    providers = ", ".join(DEMO_MODELS)
    print(f"flyllm serve --demo: the task 'chat' over emulated {providers} on {root}\n"
          "(openai's instance fails one request in four: see x-flyllm-attempts)\n\n"
          f"Try it:\n  {curl}\n\nPoint the openai and anthropic SDKs at it:\n"
          f"  export OPENAI_BASE_URL={root}/v1\n  export OPENAI_API_KEY={_DEMO_KEY}\n"
          f"  export ANTHROPIC_BASE_URL={root}\n  export ANTHROPIC_API_KEY={_DEMO_KEY}\n\n"
          "Ctrl-C stops it.", flush=True)  # fmt: skip
