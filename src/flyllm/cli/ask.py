"""``flyllm ask``: send one prompt through the config's instances and print the answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from typing import Any

from flyllm._display import json_text, terminal_text
from flyllm.cli._common import FORMATTER, UsageError, add_config, err, load, param, start_logging
from flyllm.errors import FlyLLMError, InvalidRequestError
from flyllm.manager import LlmManager
from flyllm.observe.events import Event
from flyllm.types import GenerationRequest, JsonSchema, LlmResponse

__all__ = ["MAX_SCHEMA_BYTES", "WAIT_NOTICE_S", "add", "run", "schema_file"]

MAX_SCHEMA_BYTES = 1024 * 1024
"""The largest --json-schema file read (a schema is a few kilobytes)."""

WAIT_NOTICE_S = 1.0
"""``flyllm ask`` says on stderr when a request waits longer than this, so it never looks hung."""


def add(commands: Any) -> None:
    """Add the ``ask`` sub-parser."""
    ask = commands.add_parser(
        "ask",
        help="send one prompt and print the answer",
        formatter_class=FORMATTER,
        description="Send one prompt through the instances of the config file and print the "
        "answer on stdout.",
        epilog='examples:\n  flyllm ask "Summarize: ..." --task summary\n'
        '  echo "Why is the sky blue?" | flyllm ask - --stream --param temperature=0.2\n'
        '  flyllm ask "Hi" --json | jq .usage\n'
        '  flyllm ask "Extract: ..." --json-schema invoice.json --json | jq .parsed',
    )
    ask.add_argument("prompt", nargs="?", default="-", help='the prompt; "-" (default) reads stdin')
    ask.add_argument("--task", help="the task to route by (its instances and parameters)")
    ask.add_argument("--system", metavar="TEXT", help="a system prompt")
    ask.add_argument(
        "--param",
        action="append",
        type=param,
        default=[],
        metavar="KEY=VALUE",
        help="a request parameter, e.g. max_tokens=200 (VALUE read as JSON if it is; repeatable)",
    )
    ask.add_argument(
        "--json-schema",
        metavar="FILE",
        help='ask for JSON following the schema in FILE: a JSON Schema object, or {"name": '
        '..., "schema": {...}, "strict": true}; the answer is validated (with --json, "parsed" '
        "holds it decoded)",
    )
    how = ask.add_mutually_exclusive_group()
    how.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    how.add_argument("--json", action="store_true", help="print the whole response as JSON")
    add_config(ask)


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm ask``; the exit code."""
    start_logging("warning")
    args.prompt = _read_prompt(args.prompt)
    args.response_format = schema_file(args.json_schema) if args.json_schema else None
    return asyncio.run(_ask(load(args.config), args))


def _read_prompt(prompt: str) -> str:
    if prompt != "-":
        return prompt
    if sys.stdin.isatty():
        raise UsageError('no prompt: give it as an argument, or pipe it in with "-"')
    raw = getattr(sys.stdin, "buffer", None)  # a replaced stdin (io.StringIO) has none
    try:
        text = sys.stdin.read() if raw is None else raw.read().decode("utf-8")
        return text.rstrip("\n")
    except UnicodeDecodeError:
        raise UsageError("the prompt on stdin is not UTF-8 text") from None


def schema_file(path: str) -> JsonSchema:
    """The JsonSchema in a file: ``{"name": ..., "schema": {...}}`` (as a batch line's
    ``response_format``), or a bare JSON Schema named after the file. UsageError when the
    file cannot be read or holds neither."""
    from flyllm.cli.batchfile import response_format

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SCHEMA_BYTES + 1)
        if len(data) > MAX_SCHEMA_BYTES:
            raise UsageError(f"--json-schema {path}: larger than {MAX_SCHEMA_BYTES} bytes")
        value = json.loads(data)
    except OSError as exc:
        raise UsageError(f"--json-schema {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"--json-schema {path}: not a JSON file ({str(exc)[:100]})") from None
    if isinstance(value, dict) and "schema" in value and "name" in value:
        try:
            fmt = response_format(value)
        except ValueError as exc:
            raise UsageError(f"--json-schema {path}: {exc}") from None
        assert isinstance(fmt, JsonSchema)
        return fmt
    if not isinstance(value, dict):
        raise UsageError(f"--json-schema {path}: expected a JSON Schema object")
    stem = os.path.splitext(os.path.basename(path))[0]
    return JsonSchema(re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64] or "response", value)


def _announce_waits(manager: LlmManager) -> None:
    def on_event(event: Event) -> None:
        if event.kind == "wait" and (event.wait or 0.0) > WAIT_NOTICE_S:
            err(_wait_line(manager, event))

    manager.add_hook(on_event)


def _wait_line(manager: LlmManager, event: Event) -> str:
    """What a wait is for: the event's own words when it has them, else its length, reason,
    end and the instances that are not ready (from their health)."""
    message = getattr(event, "message", None)
    if isinstance(message, str) and message:
        return f"flyllm: {message}"
    wait = event.wait or 0.0
    until = time.strftime("%H:%M:%S", time.localtime(event.time + wait))
    bound = "up to " if event.reason == "capacity" else ""  # until a running request ends
    busy = []
    for h in manager.instance_health():
        if h.state != "closed":
            left = f", {h.cooldown_left:.1f} s left" if h.cooldown_left else ""
            busy.append(f"{h.name} ({h.state}{', ' + h.reason if h.reason else ''}{left})")
    who = "; ".join(busy) or "every instance is at its limits"
    return f"flyllm: waiting {bound}{wait:.1f} s ({event.reason}) until {until}: {who}"


async def _ask(manager: LlmManager, args: argparse.Namespace) -> int:
    if args.task is not None and args.task not in manager.tasks:
        known = ", ".join(manager.tasks) or "none"
        raise UsageError(f"unknown task {args.task!r}; the config defines: {known}")
    _announce_waits(manager)
    request = GenerationRequest(
        prompt=args.prompt, task=args.task, params=dict(args.param) or None, system=args.system,
        response_format=args.response_format,
    )  # fmt: skip
    async with manager:
        if args.stream:
            return await _ask_stream(manager, request)
        response = await manager.try_generate(request)
    if args.json:
        from flyllm.cli.batchfile import response_record

        print(json_text(response_record(response)))
    elif response.success:
        print(terminal_text(response.content))
    return _outcome(response)


def _outcome(response: LlmResponse) -> int:
    if response.success:
        return 0
    err(f"flyllm: {response.error_kind}: {response.error}")
    return 2 if isinstance(response.exception, InvalidRequestError) else 1


async def _ask_stream(manager: LlmManager, request: GenerationRequest) -> int:
    out = sys.stdout
    wrote = False
    try:
        async with manager.stream(request) as stream:
            async for chunk in stream:
                if chunk.text:
                    out.write(terminal_text(chunk.text))
                    out.flush()
                    wrote = True
    except FlyLLMError as exc:
        if wrote:
            out.write("\n")
        kind = exc.kind.value if exc.kind else type(exc).__name__
        err(f"flyllm: {kind}: {exc}")
        return 2 if isinstance(exc, InvalidRequestError) else 1
    out.write("\n")
    return 0
