"""Kept for compatibility for one release: this module moved to ``flyllm.routing.strategies``.

Import from ``flyllm.routing.strategies``, or from ``flyllm`` where the name is
exported there; this module only re-exports the same objects. (It is a package, not a module
file, so that git follows the old file to its new home when branches merge.)
"""

from flyllm.routing.strategies import (
    DEFAULT_ESTIMATE,
    STRATEGIES,
    Candidate,
    CandidateStats,
    Estimate,
    LeastBusy,
    LeastRecentlyUsed,
    LowestCost,
    LowestLatency,
    RandomChoice,
    RoundRobin,
    Strategy,
    WeightedRandom,
    make_strategy,
)

__all__ = [
    "DEFAULT_ESTIMATE",
    "STRATEGIES",
    "Candidate",
    "CandidateStats",
    "Estimate",
    "LeastBusy",
    "LeastRecentlyUsed",
    "LowestCost",
    "LowestLatency",
    "RandomChoice",
    "RoundRobin",
    "Strategy",
    "WeightedRandom",
    "make_strategy",
]
