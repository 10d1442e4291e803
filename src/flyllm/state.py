"""Kept for compatibility for one release: this module moved to ``flyllm.routing.state``.

Import from ``flyllm.routing.state``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects.
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
