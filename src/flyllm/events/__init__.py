"""Kept for compatibility for one release: this module moved to ``flyllm.observe.events``.

Import from ``flyllm.observe.events``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects. (It is a package, not a module
file, so that git follows the old file to its new home when branches merge.)
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
