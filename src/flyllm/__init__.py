"""flyllm: one async API over many LLM providers, load-balanced across instances.

Each instance is a provider + model + API key + the tasks it serves. The manager routes every
request to a fitting instance by a strategy, fails over when a provider errs or rate-limits,
runs batches in parallel and tracks tokens. See the README for a tour.

This module only re-exports. ``LlmManagerBuilder`` is imported on first use,
so that ``import flyllm`` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from flyllm.config.sync import SyncLlmManager, SyncStream
from flyllm.errors import (
    AllAttemptsFailedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
    FlyLLMError,
    InvalidRequestError,
    MalformedResponseError,
    NoInstanceAvailableError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    RateLimitError,
    RedirectError,
    ServerError,
    StreamInterruptedError,
    StructuredOutputError,
    ToolLoopError,
    UnsupportedFeatureError,
)
from flyllm.manager import LlmManager
from flyllm.observe.events import Event, EventKind, Hook
from flyllm.observe.log import use_logging
from flyllm.pricing import ModelPrice
from flyllm.providers.base import ModelInfo
from flyllm.routing.instance import InstanceHealth, InstanceInfo, LlmInstance
from flyllm.routing.resilience import BreakerPolicy, RetryPolicy
from flyllm.routing.state import Booking, StateStore
from flyllm.routing.strategies import Candidate, CandidateStats, Strategy
from flyllm.streaming import LlmStream
from flyllm.types import (
    EmbeddingRequest,
    EmbeddingResult,
    ErrorKind,
    GenerationRequest,
    Image,
    JsonSchema,
    LlmResponse,
    Message,
    ProviderType,
    StreamChunk,
    TaskDefinition,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from flyllm.usage import InstanceUsage

if TYPE_CHECKING:
    from flyllm.config.builder import LlmManagerBuilder

__version__ = "0.1.0"

_LAZY = {"LlmManagerBuilder": "flyllm.config.builder"}


def __getattr__(name: str) -> Any:
    """The exports whose modules load only when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flyllm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AllAttemptsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "Booking",
    "BreakerPolicy",
    "Candidate",
    "CandidateStats",
    "ConfigurationError",
    "ContentFilterError",
    "ContextLengthError",
    "EmbeddingRequest",
    "EmbeddingResult",
    "ErrorKind",
    "Event",
    "EventKind",
    "FlyLLMError",
    "GenerationRequest",
    "Hook",
    "Image",
    "InstanceHealth",
    "InstanceInfo",
    "InstanceUsage",
    "InvalidRequestError",
    "JsonSchema",
    "LlmInstance",
    "LlmManager",
    "LlmManagerBuilder",
    "LlmResponse",
    "LlmStream",
    "MalformedResponseError",
    "Message",
    "ModelInfo",
    "ModelPrice",
    "NoInstanceAvailableError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "ProviderType",
    "QuotaError",
    "RateLimitError",
    "RedirectError",
    "RetryPolicy",
    "ServerError",
    "StateStore",
    "Strategy",
    "StreamChunk",
    "StreamInterruptedError",
    "StructuredOutputError",
    "SyncLlmManager",
    "SyncStream",
    "TaskDefinition",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolLoopError",
    "UnsupportedFeatureError",
    "Usage",
    "__version__",
    "use_logging",
]
