"""Kept for compatibility for one release: this module moved to ``flyllm.routing.state``.

Import from ``flyllm.routing.state``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects. (It is a package, not a module
file, so that git follows the old file to its new home when branches merge.)
"""

from flyllm.routing.state import (
    Booking,
    MemoryStore,
    StateStore,
    shared_key,
)

__all__ = [
    "Booking",
    "MemoryStore",
    "StateStore",
    "shared_key",
]
