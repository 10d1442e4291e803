"""A small progress bar for long batches, drawn on stderr.

    with Progress(total=len(requests)) as progress:
        for response in ...:
            progress.update(response.success)
    print(progress.summary(), file=sys.stderr)

It shows count/total, percent, rate, ETA and failures::

    [#########...............] 380/1000  38%  41.2/s  ETA 0:15  failed 3

It draws only when the stream is a terminal (``isatty()``; ``enabled`` forces it on or off) and
at most ``max_fps`` times a second, so ``update()`` costs one clock read per request. When the
stream is not a terminal it prints nothing at all: callers that want a last word in every case
print ``summary()`` themselves (the ``flyllm batch`` command does).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from flyllm._display import terminal_text

__all__ = ["Progress", "format_duration"]

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour) for a number of seconds, rounded up."""
    total = max(0, int(seconds + 0.999))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of ``total`` items (None: unknown) drawn on ``file`` (default sys.stderr).

    ``update(success)`` counts one finished item; ``message(text)`` prints a line above the
    bar; ``close()`` (or leaving the ``with`` block) draws the final state and ends the line.
    ``enabled`` None means "when ``file.isatty()``"; ``max_fps`` bounds redraws per second;
    ``clock`` is injectable for tests. ``done``, ``failures``, ``elapsed``, ``rate`` and
    ``summary()`` are there for the caller's own report.
    """

    def __init__(
        self,
        total: int | None,
        file: TextIO | None = None,
        enabled: bool | None = None,
        *,
        label: str = "",
        max_fps: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.file = sys.stderr if file is None else file
        self.enabled = _isatty(self.file) if enabled is None else enabled
        self.label = label
        self.done = 0
        self.failures = 0
        self._interval = 1.0 / max_fps if max_fps > 0 else 0.0
        self._clock = clock
        self._start = clock()
        self._end: float | None = None
        self._next_draw = self._start
        self._width = 0
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the start (frozen at close)."""
        return (self._clock() if self._end is None else self._end) - self._start

    @property
    def rate(self) -> float:
        """Items per second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, success: bool = True) -> None:
        """Count one finished item (a failure when ``success`` is False); redraw if due."""
        self.done += 1
        if not success:
            self.failures += 1
        if self.enabled and not self._closed:
            now = self._clock()
            if now >= self._next_draw or self.done == self.total:
                self._next_draw = now + self._interval
                self._draw(self.render())

    def message(self, text: str) -> None:
        """Print ``text`` on its own line without breaking the bar (it is redrawn below),
        without control characters (log lines may quote a server)."""
        if self.enabled and self._width:
            self.file.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.file.write(terminal_text(text.rstrip("\n")) + "\n")
        if self.enabled and not self._closed:
            self._draw(self.render())
        self.file.flush()

    def render(self) -> str:
        """The bar's text now, without the leading carriage return."""
        rate = self.rate
        parts = [self.label] if self.label else []
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            parts.append(f"[{bar}] {self.done}/{self.total}")
            parts.append(f"{min(100, 100 * self.done // self.total)}%")
        else:
            parts.append(f"{self.done} done")
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        if self.failures:
            parts.append(f"failed {self.failures}")
        return "  ".join(parts)

    def summary(self) -> str:
        """One line for the end: counts, failures, time and rate."""
        failed = f", {self.failures} failed" if self.failures else ""
        lead = f"{self.label}: " if self.label else ""
        return (
            f"{lead}{self.done} done{failed} in {format_duration(self.elapsed)} ({self.rate:.1f}/s)"
        )

    def close(self) -> None:
        """Draw the final state and end the line (when enabled); safe to call twice."""
        if self._closed:
            return
        self._end = self._clock()
        if self.enabled:
            self._draw(self.render())
            self.file.write("\n")
            self.file.flush()
        self._closed = True

    def _draw(self, text: str) -> None:
        pad = " " * max(0, self._width - len(text))
        self.file.write("\r" + text + pad)
        self.file.flush()
        self._width = len(text)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _isatty(file: TextIO) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError, OSError):
        return False
