"""The progress bar: drawn only on a terminal, throttled, with rate, ETA and failures."""

from __future__ import annotations

import io

import pytest

from flyllm.observe.progress import Progress, format_duration


class FakeStream(io.StringIO):
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty
        self.flushes = 0

    def isatty(self) -> bool:
        return self.tty

    def flush(self) -> None:
        self.flushes += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _frames(stream: FakeStream) -> list[str]:
    return [f.rstrip() for f in stream.getvalue().split("\r") if f.strip()]


def test_prints_nothing_when_not_a_terminal() -> None:
    stream = FakeStream(tty=False)
    with Progress(10, file=stream) as progress:
        for i in range(10):
            progress.update(success=i != 3)
    assert stream.getvalue() == ""
    assert (progress.done, progress.failures) == (10, 1)
    assert progress.summary().startswith("10 done, 1 failed in 0:0")


def test_draws_on_a_terminal_and_ends_the_line() -> None:
    stream = FakeStream(tty=True)
    clock = FakeClock()
    progress = Progress(4, file=stream, clock=clock)
    for _ in range(4):
        clock.now += 1.0
        progress.update()
    progress.close()
    frames = _frames(stream)
    assert frames[0].startswith("[######..................] 1/4  25%  1.0/s  ETA 0:03")
    assert frames[-1].startswith("[########################] 4/4  100%  1.0/s")
    assert "ETA" not in frames[-1]
    assert stream.getvalue().endswith("\n")
    progress.close()
    assert stream.getvalue().count("\n") == 1


def test_redraws_are_throttled() -> None:
    stream = FakeStream(tty=True)
    clock = FakeClock()
    progress = Progress(1000, file=stream, clock=clock, max_fps=10)
    for _ in range(500):  # all within the same instant: one draw
        progress.update()
    assert len(_frames(stream)) == 1
    clock.now += 0.05
    progress.update()
    assert len(_frames(stream)) == 1
    clock.now += 0.06
    progress.update()
    assert len(_frames(stream)) == 2
    for _ in range(498):  # the last item always draws
        progress.update()
    assert len(_frames(stream)) == 3
    assert _frames(stream)[-1].startswith("[########################] 1000/1000")


def test_rate_eta_and_failures_text() -> None:
    clock = FakeClock()
    progress = Progress(100, file=FakeStream(tty=False), clock=clock, label="batch")
    for i in range(50):
        progress.update(success=i % 10 != 0)
    clock.now += 10.0
    assert progress.rate == pytest.approx(5.0)
    text = progress.render()
    assert text.startswith("batch  [############............] 50/100  50%  5.0/s  ETA 0:10")
    assert text.endswith("failed 5")
    assert progress.summary() == "batch: 50 done, 5 failed in 0:10 (5.0/s)"


def test_unknown_total() -> None:
    clock = FakeClock()
    progress = Progress(None, file=FakeStream(tty=False), clock=clock)
    progress.update()
    progress.update()
    clock.now += 1.0
    assert progress.render() == "2 done  2.0/s"


def test_more_items_than_announced_stay_sane() -> None:
    progress = Progress(2, file=FakeStream(tty=False), clock=FakeClock())
    for _ in range(3):
        progress.update()
    assert "3/2  100%" in progress.render()
    assert "ETA" not in progress.render()


def test_enabled_overrides_isatty() -> None:
    forced_on = FakeStream(tty=False)
    with Progress(2, file=forced_on, enabled=True) as progress:
        progress.update()
    assert "1/2" in forced_on.getvalue()
    forced_off = FakeStream(tty=True)
    with Progress(2, file=forced_off, enabled=False) as progress:
        progress.update()
    assert forced_off.getvalue() == ""


def test_a_stream_without_isatty_is_not_a_terminal() -> None:
    class Bare:
        def write(self, text: str) -> int:
            raise AssertionError("nothing should be written")

        def flush(self) -> None:
            pass

    progress = Progress(1, file=Bare(), clock=FakeClock())  # type: ignore[arg-type]
    progress.update()
    progress.close()
    assert not progress.enabled


def test_message_goes_above_the_bar() -> None:
    stream = FakeStream(tty=True)
    progress = Progress(10, file=stream, clock=FakeClock())
    progress.update()
    progress.message("line 7: invalid JSON")
    out = stream.getvalue()
    bar_end = out.index("1/10") + len("1/10")
    assert "\r" + " " * len(progress.render()) + "\r" in out[bar_end:]  # the bar was wiped
    assert "line 7: invalid JSON\n\r[" in out  # the message, then the bar again
    plain = FakeStream(tty=False)
    Progress(10, file=plain).message("hello")
    assert plain.getvalue() == "hello\n"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00"), (0.2, "0:01"), (59.5, "1:00"), (61, "1:01"), (3600, "1:00:00"), (-3, "0:00")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
