"""The ``flyllm`` command: one module per command (``ask``, ``batch``, ``usage``, ``config``,
``models``, ``demo``, ``emulate``), the entry point in ``main``; ``batchfile`` and ``batchrun``
hold the batch file formats and the resumable runner.

Each command module has ``add(commands)``, which adds its sub-parser, and ``run(args)``, which
runs it and returns the exit code. The CLI uses only the library's public API and the emulator.
"""

from __future__ import annotations

from flyllm.cli.main import main

__all__ = ["main"]
