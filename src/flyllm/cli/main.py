"""The ``flyllm`` command: ask, batch, usage, config check, models, demo and emulate.

Results go to stdout; progress, messages and logs to stderr. Exit codes: 0 success, 1 a request
failed (or another run-time error), 2 a usage or configuration error, 128 + N when stopped by
signal N (130 for Ctrl-C). The config file comes from ``--config``, else ``$FLYLLM_CONFIG``,
else ``./flyllm.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from flyllm._display import json_text, mask_url, mask_urls, terminal_text
from flyllm.discovery import ModelInfo
from flyllm.errors import ConfigurationError, FlyLLMError, InvalidRequestError
from flyllm.manager import LlmManager
from flyllm.observe.events import Event
from flyllm.observe.log import use_logging
from flyllm.types import GenerationRequest, LlmResponse, Usage

__all__ = ["main"]

CONFIG_ENV = "FLYLLM_CONFIG"
DEFAULT_CONFIG = "flyllm.toml"
_FORMATTER = argparse.RawDescriptionHelpFormatter


_BATCH_HELP = """\
Answer one request per input line, in parallel, appending one result per line to the
output as each finishes (so not in input order).

input line:   {"id": ..., "prompt": "..." | "messages": [{"role": ..., "content": ...}],
               "task": ..., "params": {...}, "system": ...}
              (a missing id is the line number; ids are strings or integers, unique)
output line:  {"id": ..., "success": ..., "content": ..., "error": ..., "error_kind": ...,
               "provider": ..., "model": ..., "instance_id": ..., "usage": {...},
               "finish_reason": ..., "latency": ..., "attempts": ...}

Resume: the output is append-only and the last line of an id wins. Running the same
command again skips the ids whose last line succeeded and asks the others again.
Every finished result is on disk whatever stops the run (Ctrl-C, a crash, kill -9).
Malformed input lines are reported with their line numbers and skipped (exit 1).
One run at a time per output: a second run on an output in use is refused (exit 1)."""


class UsageError(Exception):
    """A command line that cannot run as given (exit code 2)."""


# -- the parser --------------------------------------------------------------------------------


def _param(text: str) -> tuple[str, Any]:
    """``k=v`` with v read as JSON when it is JSON (0.2, true, ["x"]), as text otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (.toml, .yaml); default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flyllm",
        description="One API over many LLM providers, load-balanced with failover.",
        epilog="Exit codes: 0 ok, 1 a request failed, 2 usage or config error, 130 Ctrl-C.",
    )
    parser.add_argument("--version", action="version", version="flyllm 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_ask(commands)
    _add_batch(commands)
    _add_usage(commands)
    _add_config_check(commands)
    _add_models(commands)
    demo = commands.add_parser(
        "demo",
        help="run the demo against the built-in emulator (no API keys needed)",
        description="Start emulated OpenAI, Anthropic, Google and Mistral endpoints on loopback, "
        "run a mixed batch over five instances with injected faults, print the usage table.",
    )
    demo.add_argument("--requests", type=int, default=15, help="batch size (default 15)")
    emulate = commands.add_parser(
        "emulate",
        help="serve an emulated provider API on loopback",
        description="Serve one provider's wire format on loopback for tests and benchmarks.",
    )
    from flyllm.emulator import cli as emulator_cli

    emulator_cli.add_arguments(emulate)
    return parser


def _add_ask(commands: Any) -> None:
    ask = commands.add_parser(
        "ask",
        help="send one prompt and print the answer",
        formatter_class=_FORMATTER,
        description="Send one prompt through the instances of the config file and print the "
        "answer on stdout.",
        epilog='examples:\n  flyllm ask "Summarize: ..." --task summary\n'
        '  echo "Why is the sky blue?" | flyllm ask - --stream --param temperature=0.2\n'
        '  flyllm ask "Hi" --json | jq .usage',
    )
    ask.add_argument("prompt", nargs="?", default="-", help='the prompt; "-" (default) reads stdin')
    ask.add_argument("--task", help="the task to route by (its instances and parameters)")
    ask.add_argument("--system", metavar="TEXT", help="a system prompt")
    ask.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="a request parameter, e.g. max_tokens=200 (VALUE read as JSON if it is; repeatable)",
    )
    how = ask.add_mutually_exclusive_group()
    how.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    how.add_argument("--json", action="store_true", help="print the whole response as JSON")
    _add_config(ask)


def _add_batch(commands: Any) -> None:
    batch = commands.add_parser(
        "batch",
        help="answer a JSONL file of requests into a JSONL file of results (resumable)",
        formatter_class=_FORMATTER,
        description=_BATCH_HELP,
        epilog="examples:\n  flyllm batch prompts.jsonl -o results.jsonl --concurrency 32\n"
        "  flyllm usage results.jsonl",
    )
    batch.add_argument("input", help="the JSONL input file")
    batch.add_argument(
        "-o", "--output", required=True, help="the JSONL output file (appended to, for resume)"
    )
    batch.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help="requests in flight at once (default: the config's max_concurrency, 64)",
    )
    batch.add_argument(
        "--strict",
        action="store_true",
        help="send nothing if any input line is malformed (exit 2); default: report and skip",
    )
    batch.add_argument(
        "--skip-failed",
        action="store_true",
        help="on resume, do not ask again the ids whose last result failed",
    )
    _add_config(batch)


def _add_usage(commands: Any) -> None:
    usage = commands.add_parser(
        "usage",
        help="print the token usage of a batch output file",
        description="Sum the final result of each id in a `flyllm batch` output per provider "
        "and model: requests, failures, prompt, completion and total tokens, and the cost at "
        "the bundled prices (unknown where a model has none).",
    )
    usage.add_argument("output", nargs="?", help="a JSONL output file of `flyllm batch`")
    usage.add_argument(
        "--state",
        metavar="URL",
        help="read the usage totals of a shared state store (redis://...) instead",
    )
    usage.add_argument("--namespace", default="flyllm", help="the store's namespace (flyllm)")
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_config_check(commands: Any) -> None:
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


def _add_models(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list the models a provider offers to a key",
        formatter_class=_FORMATTER,
        description="Ask a provider's models endpoint which models it offers to a key and\n"
        "print one id (the name to use as model=) per line. Gemini, Cohere, Mistral and\n"
        "Azure list only the models that can chat; Azure lists the resource's models,\n"
        "not its deployments. The key is never printed.",
        epilog="examples:\n  flyllm models openai\n  flyllm models gemini --json | jq '.[].id'\n"
        "  flyllm models azure --base-url https://my-resource.openai.azure.com\n"
        "  flyllm models ollama --base-url http://localhost:11434",
    )
    models.add_argument("provider", help="a provider name or alias (openai, anthropic, gemini...)")
    models.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key; default: the provider's usual variable (OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY, GOOGLE_API_KEY or GEMINI_API_KEY, CO_API_KEY, ...)",
    )
    models.add_argument("--base-url", metavar="URL", help="the provider's base URL, as in configs")
    models.add_argument("--api-version", metavar="V", help="the API version (Gemini, Azure...)")
    models.add_argument("--json", action="store_true", help="print a JSON array of model records")


# -- commands ----------------------------------------------------------------------------------


def _config_path(given: str | None) -> str:
    path = given or os.environ.get(CONFIG_ENV)
    if path:
        return path
    if os.path.exists(DEFAULT_CONFIG):
        return DEFAULT_CONFIG
    raise UsageError(
        f"no config file: pass --config FILE, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG} "
        "(see examples/flyllm.toml)"
    )


def _load(given: str | None) -> LlmManager:
    from flyllm.config.loader import load_config

    return load_config(_config_path(given))


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


WAIT_NOTICE_S = 1.0
"""``flyllm ask`` says on stderr when a request waits longer than this, so it never looks hung."""


def _announce_waits(manager: LlmManager) -> None:
    def on_event(event: Event) -> None:
        if event.kind == "wait" and (event.wait or 0.0) > WAIT_NOTICE_S:
            _err(_wait_line(manager, event))

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
        prompt=args.prompt, task=args.task, params=dict(args.param) or None, system=args.system
    )
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
    _err(f"flyllm: {response.error_kind}: {response.error}")
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
        _err(f"flyllm: {kind}: {exc}")
        return 2 if isinstance(exc, InvalidRequestError) else 1
    out.write("\n")
    return 0


def _check_batch_files(args: argparse.Namespace) -> None:
    if not os.path.isfile(args.input):
        raise UsageError(f"{args.input}: no such input file")
    if os.path.exists(args.output) and os.path.samefile(args.input, args.output):
        raise UsageError("the output file must not be the input file")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise UsageError(f"{args.output}: no such directory {folder}")


async def _batch(manager: LlmManager, args: argparse.Namespace) -> int:
    from flyllm.cli.batchrun import run_batch

    async with manager:
        report = await run_batch(
            manager,
            args.input,
            args.output,
            concurrency=args.concurrency or manager.max_concurrency,
            err=sys.stderr,
            strict=args.strict,
            retry_failed=not args.skip_failed,
        )
    return report.exit_code


def _usage(args: argparse.Namespace) -> int:
    from flyllm.cli.batchfile import bundled_cost, format_usage_rows, summarize_usage

    if args.state:
        return _usage_from_state(args)
    if args.output is None:
        raise UsageError("give a batch output file, or --state URL")
    if not os.path.isfile(args.output):
        raise UsageError(f"{args.output}: no such file")
    rows, unreadable = summarize_usage(args.output)
    if unreadable:
        print(f"flyllm usage: {unreadable} unreadable line(s) ignored", file=sys.stderr)
    if not args.json:
        print(format_usage_rows(rows, cost=bundled_cost))
        return 0
    data = []
    for row in rows:
        data.append(dataclasses.asdict(row))
        data[-1]["cost_usd"] = bundled_cost(row.provider, row.model, row.usage)
    counts = ("requests", "failures", "prompt_tokens", "completion_tokens", "total_tokens",
              "cached_tokens")  # fmt: skip
    total: dict[str, Any] = {k: sum(row[k] for row in data) for k in counts}
    costs = [row["cost_usd"] for row in data]
    total["cost_usd"] = sum(c for c in costs if c is not None)
    total["cost_complete"] = None not in costs
    print(json_text({"rows": data, "total": total}))
    return 0


def _usage_from_state(args: argparse.Namespace) -> int:
    """The usage totals a shared state store kept, across processes and restarts."""
    from flyllm.pricing import lookup_price
    from flyllm.routing.redis_state import RedisStore
    from flyllm.usage import InstanceUsage, format_usage_table

    async def read() -> list[dict[str, Any]]:
        store = RedisStore(args.state, namespace=args.namespace)
        try:
            return await store.all_totals()
        finally:
            await store.aclose()

    rows = asyncio.run(read())
    for row in rows:
        row["base_url"] = mask_url(row["base_url"])
        price = lookup_price(row["provider"], row["model"])
        usage = Usage(row["prompt_tokens"], row["completion_tokens"], row["total_tokens"],
                      row["cached_tokens"])  # fmt: skip
        row["cost_usd"] = price.cost(usage) if price is not None else None
    if args.json:
        print(json_text({"rows": rows}))
        return 0
    fields = ("name", "provider", "model", "prompt_tokens", "completion_tokens",
              "total_tokens", "requests", "failures", "cached_tokens")  # fmt: skip
    table = [InstanceUsage(id=i, **{f: r[f] for f in fields}) for i, r in enumerate(rows)]
    print(format_usage_table(table, [r["cost_usd"] for r in rows]))
    return 0


def _models(args: argparse.Namespace) -> int:
    from flyllm.providers import requires_key, resolve_provider_type, spec_for

    ptype = resolve_provider_type(args.provider)
    names = spec_for(ptype).key_env  # the variables the official SDKs read
    key = args.api_key
    if key is None:
        key = next((os.environ[n] for n in names if os.environ.get(n)), "")
    if not key and requires_key(ptype):
        raise UsageError(
            f"no API key for {ptype.value}: pass --api-key or set {' or '.join(names)}"
        )

    async def fetch() -> list[ModelInfo]:
        async with LlmManager() as manager:
            return await manager.list_models(
                ptype, key, args.base_url, api_version=args.api_version
            )

    try:
        models = asyncio.run(fetch())
    except ConfigurationError:
        raise
    except FlyLLMError as exc:
        kind = exc.kind.value if exc.kind else type(exc).__name__
        _err(f"flyllm models: {kind}: {exc}")
        return 1
    if args.json:
        print(json_text([model.to_dict() for model in models], indent=2))
    else:
        for model in models:
            print(terminal_text(model.id))
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from flyllm.config.loader import read_config

    config = read_config(_config_path(args.file))
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


def _err(text: str) -> None:
    """Print one message line on stderr: URL secrets masked, no control characters (it may
    quote a server), no line breaks."""
    print(terminal_text(mask_urls(text)).replace("\n", " "), file=sys.stderr)


class _TerminalLog(logging.Filter):
    """Strips control characters from log lines printed on stderr (they may quote a server)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = terminal_text(record.getMessage()), None
        return True


# -- entry point -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logger = logging.getLogger("flyllm")
    saved = (logger.level, list(logger.handlers))  # ask and batch set up logging: undo it after
    try:
        return _dispatch(parser, args)
    except (UsageError, ConfigurationError) as exc:
        _err(f"flyllm: {exc}")
        return 2
    except FlyLLMError as exc:  # a run-time failure, already typed and worded
        _err(f"flyllm: {exc}")
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
        _err(f"flyllm: {exc}")
        return 1
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "demo":
        from flyllm.cli.demo import run_demo

        return run_demo(n_requests=args.requests)
    if args.command == "emulate":
        from flyllm.emulator import cli as emulator_cli

        return emulator_cli.run(args)
    if args.command in ("ask", "batch"):
        try:
            logger = use_logging("warning" if args.command == "ask" else "error")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for handler in logger.handlers:
            handler.addFilter(_TerminalLog())
        if args.command == "ask":
            args.prompt = _read_prompt(args.prompt)
        else:
            _check_batch_files(args)
        manager = _load(args.config)
        run = _ask if args.command == "ask" else _batch
        return asyncio.run(run(manager, args))
    if args.command == "usage":
        return _usage(args)
    if args.command == "config":
        return _config_check(args)
    if args.command == "models":
        return _models(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
