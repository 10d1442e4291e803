"""The ``flyllm`` command: ask, batch, embed, usage, config check, models, demo, emulate,
serve and keys.

Results go to stdout; progress, messages and logs to stderr. Exit codes: 0 success, 1 a request
failed (or another run-time error), 2 a usage or configuration error, 128 + N when stopped by
signal N (130 for Ctrl-C). The config file comes from ``--config``, else ``$FLYLLM_CONFIG``,
else ``./flyllm.toml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from flyllm.cli import ask, batch, config, demo, embed, emulate, keys, models, serve, usage
from flyllm.cli._common import UsageError, err
from flyllm.errors import ConfigurationError, FlyLLMError

__all__ = ["main"]

COMMANDS: dict[str, ModuleType] = {
    "ask": ask,
    "batch": batch,
    "embed": embed,
    "usage": usage,
    "config": config,
    "models": models,
    "demo": demo,
    "emulate": emulate,
    "serve": serve,
    "keys": keys,
}
"""Each command's module, in the order ``--help`` lists them: ``add(commands)`` adds its
sub-parser, ``run(args)`` runs it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flyllm",
        description="One API over many LLM providers, load-balanced with failover.",
        epilog="Exit codes: 0 ok, 1 a request failed, 2 usage or config error, 130 Ctrl-C.",
    )
    parser.add_argument("--version", action="version", version="flyllm 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logger = logging.getLogger("flyllm")
    saved = (logger.level, list(logger.handlers))  # ask and batch set up logging: undo it after
    try:
        return _dispatch(parser, args)
    except (UsageError, ConfigurationError) as exc:
        err(f"flyllm: {exc}")
        return 2
    except FlyLLMError as exc:  # a run-time failure, already typed and worded
        err(f"flyllm: {exc}")
        return 1
    except KeyboardInterrupt:
        print("flyllm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (| head): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        err(f"flyllm: {exc}")
        return 1
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    module = COMMANDS.get(args.command or "")
    if module is None:
        parser.print_help(sys.stderr)
        return 2
    run: Callable[[argparse.Namespace], int] = module.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
