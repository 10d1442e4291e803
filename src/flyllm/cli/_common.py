"""What the command modules share: the config file option and its lookup, argument types, the
usage error, and one-line messages and log lines on stderr."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from flyllm._display import mask_urls, terminal_text
from flyllm.manager import LlmManager
from flyllm.observe.log import use_logging

CONFIG_ENV = "FLYLLM_CONFIG"
DEFAULT_CONFIG = "flyllm.toml"
FORMATTER = argparse.RawDescriptionHelpFormatter


class UsageError(Exception):
    """A command line that cannot run as given (exit code 2)."""


def param(text: str) -> tuple[str, Any]:
    """``k=v`` with v read as JSON when it is JSON (0.2, true, ["x"]), as text otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def positive(text: str) -> int:
    """A positive integer argument."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_config(parser: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` option of the commands that run a manager."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (.toml, .yaml); default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}",
    )


def config_path(given: str | None) -> str:
    """The config file: ``given``, else ``$FLYLLM_CONFIG``, else ``./flyllm.toml``."""
    path = given or os.environ.get(CONFIG_ENV)
    if path:
        return path
    if os.path.exists(DEFAULT_CONFIG):
        return DEFAULT_CONFIG
    raise UsageError(
        f"no config file: pass --config FILE, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG} "
        "(see examples/flyllm.toml)"
    )


def load(given: str | None) -> LlmManager:
    """The manager the config file describes."""
    from flyllm.config.loader import load_config

    return load_config(config_path(given))


def start_logging(level: str) -> None:
    """Log flyllm's messages of ``level`` and above on stderr, control characters stripped
    (``main`` restores the logger afterwards)."""
    try:
        logger = use_logging(level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for handler in logger.handlers:
        handler.addFilter(_TerminalLog())


def err(text: str) -> None:
    """Print one message line on stderr: URL secrets masked, no control characters (it may
    quote a server), no line breaks."""
    print(terminal_text(mask_urls(text)).replace("\n", " "), file=sys.stderr)


class _TerminalLog(logging.Filter):
    """Strips control characters from log lines printed on stderr (they may quote a server)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = terminal_text(record.getMessage()), None
        return True
