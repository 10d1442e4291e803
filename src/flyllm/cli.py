"""The ``flyllm`` command: ``flyllm demo`` and ``flyllm emulate``.

Results go to stdout, progress and logs to stderr; exit codes: 0 success, 1 failure, 2 usage.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from flyllm.emulator import cli as emulator_cli

    parser = argparse.ArgumentParser(
        prog="flyllm",
        description="One API over many LLM providers, load-balanced with failover.",
    )
    parser.add_argument("--version", action="version", version="flyllm 0.1.0")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    emulator_cli.add_arguments(emulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from flyllm.demo import run_demo

        return run_demo(n_requests=args.requests)
    if args.command == "emulate":
        from flyllm.emulator import cli as emulator_cli

        return emulator_cli.run(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
