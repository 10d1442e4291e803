"""``flyllm emulate``: serve one or more emulated provider instances until Ctrl-C or SIGTERM.

The lead's ``flyllm`` command mounts :func:`add_arguments` and :func:`run` as its ``emulate``
subcommand; :func:`main` (also ``python -m flyllm.emulator``) is the stand-alone entry point.
Each started instance prints one line ``flyllm emulator: provider=P base_url=URL control=URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from flyllm.emulator.dialects import ALIASES, PROVIDERS
from flyllm.emulator.faults import FAULT_HELP, FAULT_KINDS, Fault, parse_fault_spec

__all__ = ["add_arguments", "main", "run"]


def _fault_kinds_help() -> str:
    return "; ".join(f"{kind}: {FAULT_HELP[kind]}" for kind in FAULT_KINDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``emulate`` options to ``parser``."""
    parser.add_argument(
        "--provider", required=True, choices=[*PROVIDERS, *ALIASES], help="the wire format to speak"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8001, help="first port (0: ephemeral; default 8001)"
    )
    parser.add_argument(
        "--count", type=int, default=1, help="instances on consecutive ports (default 1)"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="a key the instances accept (repeatable); without it any non-empty key is accepted",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help="a known model (repeatable; default: any)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added latency / time to first chunk"
    )
    parser.add_argument(
        "--jitter-ms", type=float, default=0.0, help="random extra latency, 0..JITTER"
    )
    parser.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="delay between stream chunks"
    )
    parser.add_argument(
        "--reply-tokens", type=int, default=None, help="fixed reply length in words"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the reply text and fault draws; instance i uses SEED+i",
    )
    parser.add_argument(
        "--fault",
        action="append",
        dest="faults",
        default=[],
        metavar="KIND[=PROBABILITY]",
        help="inject a fault (repeatable; probability 1 when omitted). Kinds: "
        + _fault_kinds_help(),
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        help="seconds announced by rate_limit faults (default 1)",
    )


def _faults(args: argparse.Namespace) -> list[Fault]:
    return [parse_fault_spec(spec, args.retry_after) for spec in args.faults]


async def _serve(args: argparse.Namespace, faults: list[Fault]) -> int:
    from flyllm.emulator.server import Emulator

    emulators: list[Emulator] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        for i in range(args.count):
            emu = Emulator(
                args.provider,
                api_keys=args.api_keys,
                models=args.models,
                latency_ms=args.latency_ms,
                jitter_ms=args.jitter_ms,
                chunk_delay_ms=args.chunk_delay_ms,
                reply_tokens=args.reply_tokens,
                seed=args.seed + i,
                faults=faults,
                host=args.host,
                port=args.port + i if args.port else 0,
            )
            await emu.start()
            emulators.append(emu)
            print(
                f"flyllm emulator: provider={emu.provider} base_url={emu.base_url}",
                f"control={emu.url}/_emulator/",
                flush=True,
            )
        await stop.wait()
    except OSError as exc:
        print(
            f"flyllm emulate: cannot listen on {args.host}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    finally:
        for emu in emulators:
            await emu.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve the instances described by parsed ``args`` until interrupted; the exit status."""
    try:
        faults = _faults(args)
    except ValueError as exc:
        print(f"flyllm emulate: {exc}", file=sys.stderr)
        return 2
    if args.count < 1:
        print("flyllm emulate: --count must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, faults))
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: parse ``argv`` (default ``sys.argv[1:]``) and :func:`run`."""
    parser = argparse.ArgumentParser(
        prog="flyllm emulate",
        description="Serve emulated LLM provider APIs on loopback for tests, demos and benchmarks.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
