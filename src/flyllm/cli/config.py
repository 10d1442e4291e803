"""``flyllm config check``: validate a config file and list its instances and tasks."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from flyllm._display import json_text, mask_urls, terminal_text
from flyllm.cli._common import CONFIG_ENV, DEFAULT_CONFIG, config_path

__all__ = ["add", "run"]


def add(commands: Any) -> None:
    """Add the ``config`` sub-parser and its ``check`` action."""
    config = commands.add_parser(
        "config",
        help="check a config file",
        description="Config file commands.",
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a config file and list its instances and tasks",
        description="Read and validate a config file (every ${VAR} must be set) and list the "
        "instances (id, name, provider, model, tasks) and tasks it defines. Keys are never "
        "printed. Exit code 2 and the file, key path and line of the problem when invalid.",
    )
    check.add_argument(
        "file",
        nargs="?",
        help=f"the config file; default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm config check``; the exit code."""
    from flyllm.config.loader import read_config

    config = read_config(config_path(args.file))
    manager = config.build()
    info = {
        "file": config.path,
        "options": {k: _plain(v) for k, v in config.options.items()},
        "tasks": [
            {f.name: _plain(getattr(t, f.name)) for f in dataclasses.fields(t)}
            for t in manager.tasks.values()
        ],
        "instances": [
            {
                "id": i.id,
                "name": i.name,
                "provider": i.provider,
                "model": i.model,
                "tasks": sorted(i.tasks),
                "enabled": i.enabled,
                "weight": i.weight,
                "base_url": i.base_url,
            }
            for i in manager.instances()
        ],
    }
    if args.json:
        print(json_text(info, indent=2))
    else:
        print(terminal_text(_config_text(info)))
    return 0


def _config_text(info: dict[str, Any]) -> str:
    lines = [f"{info['file']}: OK"]
    options = " ".join(f"{k}={json.dumps(v)}" for k, v in info["options"].items())
    lines.append(f"manager: {options or '(defaults)'}")
    lines.append(f"tasks ({len(info['tasks'])}):")
    for task in info["tasks"]:
        extra = {k: v for k, v in task.items() if k != "name" and v}
        lines.append(f"  {task['name']:<20} {json.dumps(extra) if extra else ''}".rstrip())
    lines.append(f"instances ({len(info['instances'])}):")
    for inst in info["instances"]:
        state = "" if inst["enabled"] else "  [disabled]"
        lines.append(
            f"  #{inst['id']:<3} {inst['name']:<32} {inst['provider']:<18} {inst['model']:<28} "
            f"tasks: {', '.join(inst['tasks']) or '-'}{state}"
        )
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A JSON-able form of a config value (a dataclass as its shown fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return mask_urls(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    return mask_urls(repr(value))
