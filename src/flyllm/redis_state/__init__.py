"""Kept for compatibility for one release: this module moved to ``flyllm.routing.redis_state``.

Import from ``flyllm.routing.redis_state``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects. (It is a package, not a module
file, so that git follows the old file to its new home when branches merge.)
"""

from flyllm.routing.redis_state import (
    RedisStore,
    StateStoreError,
)

__all__ = [
    "RedisStore",
    "StateStoreError",
]
