"""``python -m flyllm.emulator``: the same as ``flyllm emulate``."""

from __future__ import annotations

from flyllm.emulator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
