"""The ``flyllm`` command (its entry point is ``main``); ``batchfile`` and ``batchrun`` hold the
batch file formats and the resumable runner, ``demo`` the demo."""

from __future__ import annotations

from flyllm.cli.main import main

__all__ = ["main"]
