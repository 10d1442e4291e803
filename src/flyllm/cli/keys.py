"""``flyllm keys``: make virtual keys for ``flyllm serve``.

``flyllm keys create NAME [--tasks a,b] [--rpm N] ...`` prints a new key on stdout, alone on
its line (so ``KEY=$(flyllm keys create team-a)`` captures just the key; it is shown this once
and never written anywhere), and the ``[[gateway.keys]]`` table to paste on stderr (it holds
only the key's SHA-256; ``2>> flyllm.toml`` appends it). ``flyllm keys hash`` reads a key on
stdin (without echo at a terminal) and prints its SHA-256, to rotate or re-enter a key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from typing import Any

from flyllm.cli._common import UsageError, positive

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["add", "run"]

_MAX_KEY = 4096


def add(commands: Any) -> None:
    """Add the ``keys`` sub-parser with ``create`` and ``hash``."""
    keys = commands.add_parser(
        "keys",
        help="make virtual keys for flyllm serve",
        description="Make virtual keys for flyllm serve: the key for the caller, the hash for "
        "the config file's [[gateway.keys]].",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="print a new key (stdout, once) and its [[gateway.keys]] table (stderr)",
        description="Print a new key on stdout (shown once: hand it to the caller) and the "
        "[[gateway.keys]] table to paste into the config file on stderr (hash only).",
    )
    create.add_argument("name", help="the key's name (metrics and logs show it)")
    create.add_argument("--tasks", help="comma-separated tasks it may use (default: all)")
    create.add_argument("--rpm", type=positive, help="requests per minute")
    create.add_argument("--tpm", type=positive, help="tokens per minute")
    create.add_argument("--max-concurrent", type=positive, help="requests running at once")
    create.add_argument("--budget-usd", type=float, help="spend allowed per budget period")
    create.add_argument("--budget-period", choices=("day", "month"), help="UTC (default month)")
    create.add_argument("--expires", help="RFC 3339 time after which it is refused")
    actions.add_parser(
        "hash",
        help="read a key on stdin and print its SHA-256",
        description="Read a key on stdin (no echo at a terminal) and print its SHA-256, the "
        "value of sha256 in [[gateway.keys]].",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm keys ACTION``; the exit code."""
    if args.keys_command == "create":
        return _create(args)
    if args.keys_command == "hash":
        return _hash()
    raise UsageError("expected an action: flyllm keys create NAME, or flyllm keys hash")


def _create(args: argparse.Namespace) -> int:
    from flyllm.server.keys import hash_key, new_key

    key = new_key()
    table = _table(args, hash_key(key))
    _check(table)
    print(key, flush=True)
    print(f"# the key above is shown once; paste this into the config file:\n{table}",
          file=sys.stderr)  # fmt: skip
    return 0


def _table(args: argparse.Namespace, digest: str) -> str:
    lines = ["[[gateway.keys]]", f"name = {_string(args.name)}", f'sha256 = "{digest}"']
    if args.tasks:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        lines.append(f"tasks = [{', '.join(_string(t) for t in tasks)}]")
    for field, value in (("rpm", args.rpm), ("tpm", args.tpm),
                         ("max_concurrent", args.max_concurrent)):  # fmt: skip
        if value is not None:
            lines.append(f"{field} = {value}")
    if args.budget_usd is not None:
        lines.append(f"budget_usd = {args.budget_usd!r}")
    if args.budget_period is not None:
        lines.append(f'budget_period = "{args.budget_period}"')
    if args.expires is not None:
        lines.append(f"expires = {_string(args.expires)}")
    return "\n".join(lines)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a TOML basic string: JSON's escapes


def _check(table: str) -> None:
    """The table read back as the gateway will read it: the same errors, before any key."""
    from flyllm.errors import ConfigurationError
    from flyllm.server.settings import read_gateway_table

    try:
        body = tomllib.loads(table)
    except ValueError as exc:
        raise UsageError(f"keys create: cannot write these values as TOML ({exc})") from None
    try:
        settings = read_gateway_table(body["gateway"], "keys create")
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    key = next(iter(settings.keys))
    if key.expires is not None and key.expires <= dt.datetime.now(dt.timezone.utc):
        raise UsageError("keys create: --expires is in the past")


def _hash() -> int:
    from flyllm.server.keys import hash_key

    tty = sys.stdin.isatty()
    presented = (getpass.getpass("key: ") if tty else sys.stdin.read(_MAX_KEY + 1)).strip()
    if not presented or len(presented) > _MAX_KEY or any(c.isspace() for c in presented):
        raise UsageError("keys hash: expected one key on stdin")
    print(hash_key(presented))
    return 0
