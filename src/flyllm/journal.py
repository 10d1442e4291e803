"""Kept for compatibility for one release: this module moved to ``flyllm.observe.journal``.

Import from ``flyllm.observe.journal``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects.
"""

from flyllm.observe.journal import (
    Journal,
)

__all__ = [
    "Journal",
]
