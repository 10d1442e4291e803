"""Kept for compatibility for one release: this module moved to ``flyllm.observe.metrics``.

Import from ``flyllm.observe.metrics``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects.
"""

from flyllm.observe.metrics import (
    PrometheusMetrics,
)

__all__ = [
    "PrometheusMetrics",
]
