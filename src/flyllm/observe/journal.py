"""An opt-in request journal: one JSON line per attempt, appended without blocking the loop.

    from flyllm.observe.journal import Journal
    journal = Journal("requests.jsonl", include_content=False)
    manager.add_hook(journal)
    ...
    journal.close()          # flushes; also a context manager

Each line: time, request id, attempt, instance (id, name, provider, model), task, parameters,
outcome (success or error kind), HTTP status, usage, latency; with ``include_content=True``
also the conversation and the answer. Keys are never written: events carry none. Lines are
handed to a writer thread through a queue, so a slow disk never stalls the event loop; each
line is written whole with one write call.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from dataclasses import asdict
from typing import Any

from flyllm.observe.events import Event

__all__ = ["Journal"]

_STOP = object()


class Journal:
    """A hook appending one JSON line per attempt to ``path``."""

    def __init__(self, path: str | os.PathLike[str], *, include_content: bool = False) -> None:
        self.path = os.fspath(path)
        self.include_content = include_content
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="flyllm-journal", daemon=True)
        self._thread.start()
        self._closed = False

    def __call__(self, event: Event) -> None:
        if event.kind != "attempt_end" or self._closed:
            return
        record: dict[str, Any] = {
            "time": event.time,
            "request_id": event.request_id,
            "attempt": event.attempt,
            "instance_id": event.instance_id,
            "instance": event.instance_name,
            "provider": event.provider,
            "model": event.model,
            "task": event.task,
            "stream": event.stream,
            "params": dict(event.params or {}),
            "outcome": "success" if event.success else (event.error_kind or event.reason),
            "status": event.status,
            "usage": asdict(event.usage) if event.usage is not None else None,
            "latency": event.latency,
        }
        if self.include_content and event.content is not None:
            record["content"] = event.content
        self._queue.put(record)

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            line = json.dumps(item, ensure_ascii=False, default=str) + "\n"
            os.write(self._fd, line.encode())

    def close(self) -> None:
        """Write what is queued and close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
