"""Running ``flyllm batch`` and ``flyllm embed``: a bounded pool of workers over a lazily read
JSONL input, one runner for both kinds of job (a ``JobKind`` says how to read a line and how to
answer a group of them).

The input is read twice, lazily: a first pass checks every line (malformed ones are reported
with their numbers, and with ``strict`` nothing is sent) and counts the work left; the second
feeds ``concurrency`` workers, each of which takes ``kind.take`` items, has the manager answer
them and appends their results to the output as soon as it has them. Memory holds the ids,
not the results. The first Ctrl-C (or SIGTERM) stops taking new lines and lets the requests in
flight finish and be written; a second one cancels them (they are asked again on the next
run). File formats and resume rules are in :mod:`flyllm.cli.batchfile` (and
:mod:`flyllm.cli.embed` for embeddings).

A run holds an advisory lock (``flock``) on the output from before it reads it until its end,
so a second run on the same output is refused (OutputInUseError) before it sends anything:
two would ask, and bill, every request twice. The lock dies with its process, even after
``kill -9``. Where ``fcntl`` is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TextIO, TypeVar

from flyllm.cli.batchfile import (
    BatchInputError,
    BatchItem,
    JsonId,
    OutputState,
    ResultWriter,
    id_key,
    iter_input,
    open_output,
    parse_line,
    response_record,
)
from flyllm.errors import FlyLLMError
from flyllm.manager import LlmManager
from flyllm.observe.progress import Progress, format_duration

__all__ = ["GENERATE", "BatchReport", "JobKind", "OutputInUseError", "run_batch"]

MAX_REPORTED = 50
"""Malformed lines reported one by one; the rest are counted."""


class _Item(Protocol):
    """What the runner needs of an input line's item: its id and line number."""

    @property
    def id(self) -> JsonId: ...
    @property
    def line(self) -> int: ...


ItemT = TypeVar("ItemT", bound=_Item)

Outcome = tuple[dict[str, Any], bool]
"""One output record (with its ``id``) and whether it succeeded."""


@dataclass(frozen=True, slots=True)
class JobKind(Generic[ItemT]):
    """One kind of batch job: ``name`` the command ("batch", "embed": the messages' prefix and
    the progress label), ``parse`` one input line into an item (BatchInputError when it is
    malformed), ``answer`` a group of items with the manager (one outcome per item, in order;
    it must not raise for a request's failure), ``take`` the items a worker takes at once."""

    name: str
    parse: Callable[[str | bytes, int], ItemT]
    answer: Callable[[LlmManager, list[ItemT]], Awaitable[list[Outcome]]]
    take: int = 1


async def _generate(manager: LlmManager, items: list[BatchItem]) -> list[Outcome]:
    out: list[Outcome] = []
    for item in items:
        response = await manager.try_generate(item.request)
        out.append((response_record(response, item.id), response.success))
    return out


GENERATE: JobKind[BatchItem] = JobKind("batch", parse_line, _generate)
"""``flyllm batch``: one generation request per line."""


@dataclass(slots=True)
class BatchReport:
    """What a run did. ``exit_code``: 0 all answered, 1 a request failed or a line was skipped,
    2 malformed input under ``strict``, 128 + signal number when interrupted."""

    succeeded: int = 0
    failed: int = 0
    already_done: int = 0
    malformed: int = 0
    stopped_by: int | None = None
    strict_refused: bool = False
    elapsed: float = 0.0
    command: str = "batch"

    @property
    def exit_code(self) -> int:
        """The process exit code for this outcome."""
        if self.strict_refused:
            return 2
        if self.stopped_by is not None:
            return 128 + self.stopped_by
        return 1 if self.failed or self.malformed else 0

    def summary(self, output: str) -> str:
        """The one line printed at the end of every run."""
        answered = self.succeeded + self.failed
        parts = [f"{self.succeeded} succeeded", f"{self.failed} failed"]
        if self.already_done:
            parts.append(f"{self.already_done} already done")
        if self.malformed:
            parts.append(f"{self.malformed} malformed line{'s' * (self.malformed != 1)} skipped")
        rate = answered / self.elapsed if self.elapsed > 0 else 0.0
        name = self.command
        text = (
            f"flyllm {name}: {', '.join(parts)}; {_duration(self.elapsed)} ({rate:.1f}/s);"
            f" results in {output}"
        )
        if self.strict_refused:
            text = f"flyllm {name}: {self.malformed} malformed line(s); nothing sent (--strict)"
        elif self.stopped_by is not None:
            text += "; interrupted: run the same command again to resume"
        return text


class OutputInUseError(FlyLLMError):
    """Another ``flyllm batch`` (or ``embed``) run holds the output file: this run sends
    nothing."""


@contextlib.contextmanager
def _output_lock(path: str, command: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on the output (created if missing) for the block."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: nothing stops a second run
        yield
        return
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputInUseError(
                f"{path}: another flyllm {command} run is writing this output; wait for it to end "
                "or stop it, or write to another file"
            ) from None
        yield
    finally:
        os.close(fd)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else format_duration(seconds)


@dataclass(slots=True)
class _Scan:
    """The first pass over the input."""

    todo: int = 0
    already_done: int = 0
    bad_lines: set[int] = field(default_factory=set)
    errors: list[BatchInputError] = field(default_factory=list)


def _scan(
    path: str, parse: Callable[[bytes, int], _Item], state: OutputState, retry_failed: bool
) -> _Scan:
    scan = _Scan()
    first_line: dict[str, int] = {}
    for number, text in iter_input(path):
        try:
            item = parse(text, number)
            key = id_key(item.id)
            if key in first_line:
                raise BatchInputError(number, f"duplicate id (first on line {first_line[key]})")
        except BatchInputError as exc:
            scan.bad_lines.add(number)
            if len(scan.errors) < MAX_REPORTED:
                scan.errors.append(exc)
            continue
        first_line[key] = number
        if _is_done(key, state, retry_failed):
            scan.already_done += 1
        else:
            scan.todo += 1
    return scan


def _is_done(key: str, state: OutputState, retry_failed: bool) -> bool:
    return key in state.succeeded or (not retry_failed and key in state.failed)


def _pending(
    path: str,
    parse: Callable[[bytes, int], ItemT],
    scan: _Scan,
    state: OutputState,
    retry_failed: bool,
) -> Iterator[ItemT]:
    for number, text in iter_input(path):
        if number in scan.bad_lines:
            continue
        try:
            item = parse(text, number)
        except BatchInputError:
            continue  # the file changed since the first pass; it was not counted
        if not _is_done(id_key(item.id), state, retry_failed):
            yield item


class _ProgressLog(logging.Handler):
    """Log lines printed above the progress bar instead of through it."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress
        self.setFormatter(logging.Formatter("flyllm: %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.message(self.format(record))


async def run_batch(
    manager: LlmManager,
    input_path: str,
    output_path: str,
    *,
    concurrency: int,
    err: TextIO,
    strict: bool = False,
    retry_failed: bool = True,
    progress: bool | None = None,
    kind: JobKind[Any] = GENERATE,
) -> BatchReport:
    """Answer every pending line of ``input_path`` into ``output_path`` (``kind``: generation
    requests, or texts to embed); messages, the progress bar (``progress`` None: when ``err``
    is a terminal) and the summary go to ``err``. Returns the report; never raises for one
    request's failure. Raises OutputInUseError, having sent nothing, when another run holds
    the output."""
    with _output_lock(output_path, kind.name):
        return await _run(
            manager, input_path, output_path, concurrency, err, strict, retry_failed, progress,
            kind,
        )  # fmt: skip


async def _run(
    manager: LlmManager,
    input_path: str,
    output_path: str,
    concurrency: int,
    err: TextIO,
    strict: bool,
    retry_failed: bool,
    progress: bool | None,
    kind: JobKind[Any],
) -> BatchReport:
    start = time.monotonic()
    report = BatchReport(command=kind.name)
    state = open_output(output_path)
    if state.repaired:
        err.write(f"flyllm {kind.name}: {output_path}: {state.repaired}\n")
    if state.unreadable_lines:
        err.write(
            f"flyllm {kind.name}: {output_path}: {len(state.unreadable_lines)} unreadable "
            f"line(s) ignored (first: line {state.unreadable_lines[0]})\n"
        )
    scan = _scan(input_path, kind.parse, state, retry_failed)
    report.already_done, report.malformed = scan.already_done, len(scan.bad_lines)
    for exc in scan.errors:
        err.write(f"{input_path}:{exc.line}: {exc.message}\n")
    if report.malformed > len(scan.errors):
        err.write(f"{input_path}: ... and {report.malformed - len(scan.errors)} more\n")
    if strict and report.malformed:
        report.strict_refused = True
    else:
        items = _pending(input_path, kind.parse, scan, state, retry_failed)
        workers = min(concurrency, -(-scan.todo // kind.take))
        with Progress(scan.todo, file=err, enabled=progress, label=kind.name) as bar:
            await _work(manager, kind, items, output_path, workers, bar, report)
    report.elapsed = time.monotonic() - start
    err.write(report.summary(output_path) + "\n")
    err.flush()
    return report


async def _work(
    manager: LlmManager,
    kind: JobKind[ItemT],
    items: Iterator[ItemT],
    output_path: str,
    concurrency: int,
    bar: Progress,
    report: BatchReport,
) -> None:
    """Run the workers until the input is used up or a signal stops them."""
    stop = asyncio.Event()
    workers: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            for w in workers:
                w.cancel()
            return
        report.stopped_by = signum
        stop.set()
        bar.message(
            f"flyllm {kind.name}: stopping: finishing the requests in flight (again to cancel)"
        )

    async def worker() -> None:
        while not stop.is_set():
            group = list(itertools.islice(items, kind.take))
            if not group:
                return
            for record, success in await kind.answer(manager, group):
                writer.write(record)
                if success:
                    report.succeeded += 1
                else:
                    report.failed += 1
                bar.update(success)

    logger = logging.getLogger("flyllm")
    saved_handlers, logger.handlers = logger.handlers, [_ProgressLog(bar)]
    loop = asyncio.get_running_loop()
    installed = _install_signals(loop, on_signal)
    try:
        with ResultWriter(output_path) as writer:
            workers.extend(asyncio.create_task(worker()) for _ in range(concurrency))
            if workers:
                await asyncio.wait(workers)
            for w in workers:
                failure = None if w.cancelled() else w.exception()
                if failure is not None:
                    raise failure
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        logger.handlers = saved_handlers


def _install_signals(loop: asyncio.AbstractEventLoop, handler: Callable[[int], None]) -> list[int]:
    """SIGINT and SIGTERM call ``handler(signum)`` where the loop supports it (not Windows)."""
    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, handler, int(sig))
            installed.append(sig)
    return installed
