"""``flyllm serve``: an OpenAI- and Anthropic-compatible gateway over the pool (flyllm.server)."""

from __future__ import annotations

import argparse
from typing import Any

from flyllm.cli._common import add_config, config_path

__all__ = ["add", "run"]


def add(commands: Any) -> None:
    """Add the ``serve`` sub-parser."""
    serve = commands.add_parser(
        "serve",
        help="serve the pool as an OpenAI- and Anthropic-compatible HTTP gateway",
        description="Serve the config file's pool over HTTP: OpenAI's /v1/chat/completions, "
        "Anthropic's /v1/messages, /v1/models, /healthz, /readyz and /metrics.",
    )
    add_config(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="processes on the port (default 1)")
    serve.add_argument("--state", help="shared state URL (redis://...) for limits across workers")


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm serve`` until stopped; the exit code."""
    from flyllm.server.run import ServeOptions, serve

    options = ServeOptions(
        config=config_path(args.config),
        host=args.host,
        port=args.port,
        workers=args.workers,
        state=args.state,
    )
    return serve(options)
