"""Ways to set a manager up other than calling it: config files (``loader``: ``load_config``,
``read_config``, the schema and its coercion), the fluent ``builder`` and the blocking facade
(``sync``: ``SyncLlmManager``).

The loader's names are re-exported here for compatibility (``from flyllm.config import
load_config`` works as it did when this was one module) and for short imports. They load on
first use, not with the package: ``import flyllm`` needs ``SyncLlmManager`` from
``flyllm.config.sync`` and must not pay for the config reader and the builder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flyllm.config.loader import (
        CONFIG_SUFFIXES,
        MAX_DEPTH,
        MAX_VALUES,
        InstanceConfig,
        ManagerConfig,
        load_config,
        read_config,
    )

__all__ = [
    "CONFIG_SUFFIXES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "InstanceConfig",
    "ManagerConfig",
    "load_config",
    "read_config",
]


def __getattr__(name: str) -> Any:
    """The loader's public names, imported when first asked for."""
    if name not in __all__:
        raise AttributeError(f"module 'flyllm.config' has no attribute {name!r}")
    value = getattr(importlib.import_module("flyllm.config.loader"), name)
    globals()[name] = value
    return value
