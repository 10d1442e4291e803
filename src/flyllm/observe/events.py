"""Events for hooks: each attempt's start and end, waits, and each request's end.

``manager.add_hook(callback)`` calls ``callback(event)`` synchronously on the event loop for
every event; metrics (flyllm.observe.metrics), the request journal (flyllm.observe.journal)
and users' own tracing plug in here. A hook that raises is logged once and otherwise ignored:
observing must never break a request. With no hook registered no event is even built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flyllm.types import Message, Usage, _quick_init

__all__ = ["Event", "EventKind", "Hook"]

EventKind = Literal["attempt_start", "attempt_end", "wait", "request_end"]


@_quick_init  # three a request when any hook listens: see flyllm.types._quick_init
@dataclass(slots=True, frozen=True, kw_only=True)
class Event:
    """What happened. Every event has ``kind``, ``request_id`` (a per-manager counter tying a
    request's events together), ``time`` (epoch seconds), ``task`` and ``stream``.

    - attempt_start / attempt_end: ``attempt`` (1, 2, ...), the instance (``instance_id``,
      ``instance_name``, ``provider``, ``model``) and the merged ``params`` sent; at the end
      also ``success``, ``error_kind``, ``status``, ``latency``, ``usage``, ``content`` (the
      answer, on success) and ``health`` (the instance's circuit state afterwards).
    - wait: ``wait`` seconds and ``reason`` ("cooldown", "backoff" or "capacity"); when the
      request has waited or will wait more than a second, ``message`` is a line for a person
      (which instances, why, until when), the one logged at INFO.
    - request_end: ``success``, ``error_kind``, ``latency`` and ``attempt`` (attempts made);
      ``reason`` is "cancelled" when the caller left (a cancelled task, a stream closed or
      dropped before its end).

    ``messages`` (the conversation) is on attempt_start. No event carries an API key. Fields
    are keyword-only: ``Event(kind="wait", request_id=1, time=time.time(), wait=2.0)``.
    """

    kind: EventKind
    request_id: int
    time: float
    task: str | None = None
    stream: bool = False
    attempt: int = 0
    instance_id: int | None = None
    instance_name: str | None = None
    provider: str | None = None
    model: str | None = None
    params: Mapping[str, Any] | None = None
    messages: tuple[Message, ...] | None = None
    success: bool | None = None
    error_kind: str | None = None
    status: int | None = None
    latency: float | None = None
    usage: Usage | None = None
    content: str | None = None
    health: str | None = None
    wait: float | None = None
    reason: str | None = None
    message: str | None = None


Hook = Callable[[Event], None]
"""A callback receiving every Event."""
