"""The gateway's settings: the config file's ``[gateway]`` table, checked.

    [gateway]
    aliases = { "gpt-4o-mini" = "chat" }   # a model name a client sends -> a task of the pool
    max_body_bytes = 16777216              # larger request bodies are refused (413)
    header_timeout = 10                    # seconds to receive a request's headers
    body_timeout = 60                      # seconds to receive its body once they are in (408)
    send_timeout = 60                      # seconds a stream's client may read nothing
    grace_seconds = 30                     # SIGTERM: how long in-flight requests may finish

    [[gateway.keys]]                       # virtual keys; none: loopback only, no auth
    name = "team-a"
    sha256 = "<hex>"                       # from `flyllm keys create team-a`
    tasks = ["chat"]                       # optional, like every key below
    rpm = 600
    tpm = 200000
    max_concurrent = 16
    budget_usd = 50
    budget_period = "month"                # or "day" (UTC calendar periods)
    expires = 2027-01-01T00:00:00Z         # TOML datetime or RFC 3339 text

Errors are ConfigurationErrors naming the file and the key path; they never echo a hash.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flyllm.errors import ConfigurationError
from flyllm.server.keys import KeyRing, VirtualKey

__all__ = ["DEFAULT_MAX_BODY_BYTES", "GatewaySettings", "read_gateway_table"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""Request bodies above this are refused with 413: room for a few base64 images, bounded."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_KEY_FIELDS = (
    "name", "sha256", "tasks", "rpm", "tpm", "max_concurrent", "budget_usd", "budget_period",
    "expires",
)  # fmt: skip
_TABLE_FIELDS = (
    "aliases", "keys", "max_body_bytes", "header_timeout", "body_timeout", "send_timeout",
    "grace_seconds",
)  # fmt: skip


@dataclass(slots=True, frozen=True, kw_only=True)
class GatewaySettings:
    """What ``flyllm serve`` needs beyond the manager: keys, aliases and server limits."""

    keys: KeyRing = field(default_factory=KeyRing)
    aliases: Mapping[str, str] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    grace_seconds: float = 30.0

    def task_for(self, model: str) -> str:
        """The task a client's ``model`` names: an alias's task, else the name itself."""
        return self.aliases.get(model, model)


def read_gateway_table(table: Any, where: str, task_names: Sequence[str] = ()) -> GatewaySettings:
    """``[gateway]`` as GatewaySettings; ``where`` (the file name) prefixes every error, and
    aliases and key tasks must name one of ``task_names`` when it is given."""
    if table is None:
        return GatewaySettings()
    at = _At(where, ("gateway",))
    body = at.table(table)
    at.known(body, _TABLE_FIELDS)
    aliases = at.sub("aliases").str_map(body.get("aliases", {}))
    for alias, task in aliases.items():
        at.sub("aliases", alias).task(task, task_names)
    keys = body.get("keys", [])
    if not isinstance(keys, list):
        raise at.sub("keys").error("expected a list of tables ([[gateway.keys]])")
    ring = [_read_key(at.sub("keys", i), item, task_names) for i, item in enumerate(keys)]
    _unique(at, ring)
    return GatewaySettings(
        keys=KeyRing(ring),
        aliases=aliases,
        max_body_bytes=at.sub("max_body_bytes").positive_int(
            body.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        ),
        header_timeout=at.sub("header_timeout").positive(body.get("header_timeout", 10.0)),
        body_timeout=at.sub("body_timeout").positive(body.get("body_timeout", 60.0)),
        send_timeout=at.sub("send_timeout").positive(body.get("send_timeout", 60.0)),
        grace_seconds=at.sub("grace_seconds").positive(body.get("grace_seconds", 30.0)),
    )


def _read_key(at: _At, item: Any, task_names: Sequence[str]) -> VirtualKey:
    body = at.table(item)
    at.known(body, _KEY_FIELDS)
    for required in ("name", "sha256"):
        if required not in body:
            raise at.sub(required).error("required")
    name = body["name"]
    if not isinstance(name, str) or not name.strip():
        raise at.sub("name").error("expected a non-empty string")
    sha = body["sha256"]
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise at.sub("sha256").error(
            "expected the key's SHA-256 as 64 lowercase hex digits (`flyllm keys create NAME` "
            "prints it); never the key itself"
        )
    tasks = body.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise at.sub("tasks").error("expected a list of task names")
    for i, task in enumerate(tasks):
        at.sub("tasks", i).task(task, task_names)
    period = body.get("budget_period", "month")
    if period not in ("day", "month"):
        raise at.sub("budget_period").error('expected "day" or "month"')
    return VirtualKey(
        name=name,
        sha256=sha,
        tasks=frozenset(tasks),
        rpm=at.sub("rpm").optional_int(body.get("rpm")),
        tpm=at.sub("tpm").optional_int(body.get("tpm")),
        max_concurrent=at.sub("max_concurrent").optional_int(body.get("max_concurrent")),
        budget_usd=(
            None
            if body.get("budget_usd") is None
            else at.sub("budget_usd").positive(body["budget_usd"])
        ),
        budget_period=period,
        expires=at.sub("expires").time(body.get("expires")),
    )


def _unique(at: _At, keys: list[VirtualKey]) -> None:
    names: set[str] = set()
    hashes: set[str] = set()
    for i, key in enumerate(keys):
        if key.name in names:
            raise at.sub("keys", i, "name").error(f"duplicate key name {key.name!r}")
        if key.sha256 in hashes:
            raise at.sub("keys", i, "sha256").error("the same key hash appears twice")
        names.add(key.name)
        hashes.add(key.sha256)


@dataclass(slots=True, frozen=True)
class _At:
    """Where in the file a value is, for error messages."""

    file: str
    path: tuple[str | int, ...]

    def sub(self, *more: str | int) -> _At:
        return _At(self.file, (*self.path, *more))

    def error(self, message: str) -> ConfigurationError:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return ConfigurationError(f"{self.file}: {text}: {message}")

    def table(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error("expected a table")
        return value

    def known(self, body: Mapping[str, Any], allowed: Sequence[str]) -> None:
        for key in body:
            if key not in allowed:
                raise self.sub(str(key)).error(f"unknown key; valid keys: {', '.join(allowed)}")

    def str_map(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error("expected a table of model name = task name")
        return dict(value)

    def task(self, task: str, task_names: Sequence[str]) -> None:
        if task_names and task not in task_names:
            raise self.error(f"unknown task {task!r}; defined tasks: {', '.join(task_names)}")

    def positive_int(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error("expected a positive integer")
        return value

    def optional_int(self, value: Any) -> int | None:
        return None if value is None else self.positive_int(value)

    def positive(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise self.error("expected a positive number")
        if value == float("inf"):
            raise self.error("expected a finite number")
        return float(value)

    def time(self, value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.error("expected an RFC 3339 time such as 2027-01-01T00:00:00Z") from None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise self.error("expected an RFC 3339 time with its offset (Z or +hh:mm)")
        return value
