"""``flyllm emulate``: serve one provider's wire format on loopback (``flyllm.emulator``)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add", "run"]


def add(commands: Any) -> None:
    """Add the ``emulate`` sub-parser (its options are the emulator's own)."""
    emulate = commands.add_parser(
        "emulate",
        help="serve an emulated provider API on loopback",
        description="Serve one provider's wire format on loopback for tests and benchmarks.",
    )
    from flyllm.emulator import cli as emulator_cli

    emulator_cli.add_arguments(emulate)


def run(args: argparse.Namespace) -> int:
    """Run ``flyllm emulate`` until stopped; the exit code."""
    from flyllm.emulator import cli as emulator_cli

    return emulator_cli.run(args)
