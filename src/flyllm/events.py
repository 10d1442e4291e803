"""Kept for compatibility for one release: this module moved to ``flyllm.observe.events``.

Import from ``flyllm.observe.events``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects.
"""

from flyllm.observe.events import (
    Event,
    EventKind,
    Hook,
)

__all__ = [
    "Event",
    "EventKind",
    "Hook",
]
