"""Kept for compatibility for one release: this module moved to ``flyllm.observe.metrics``.

Import from ``flyllm.observe.metrics``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects. (It is a package, not a module
file, so that git follows the old file to its new home when branches merge.)
"""

from flyllm.observe.metrics import (
    PrometheusMetrics,
)

__all__ = [
    "PrometheusMetrics",
]
