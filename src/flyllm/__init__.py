"""flyllm: one async API over many LLM providers, load-balanced across instances.

Each instance is a provider + model + API key + the tasks it serves. The manager routes every
request to a fitting instance by a strategy, fails over when a provider errs or rate-limits,
runs batches in parallel and tracks tokens. See the README for a tour.
"""

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
)
from flyllm.log import use_logging
from flyllm.manager import LlmManager
from flyllm.resilience import BreakerPolicy, RetryPolicy
from flyllm.strategies import Strategy
from flyllm.sync import SyncLlmManager
from flyllm.types import (
    ErrorKind,
    GenerationRequest,
    LlmResponse,
    Message,
    ProviderType,
    StreamChunk,
    TaskDefinition,
    Usage,
)
from flyllm.usage import InstanceUsage

__version__ = "0.1.0"

__all__ = [
    "AllAttemptsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "BreakerPolicy",
    "ConfigurationError",
    "ContentFilterError",
    "ContextLengthError",
    "ErrorKind",
    "FlyLLMError",
    "GenerationRequest",
    "InstanceUsage",
    "InvalidRequestError",
    "LlmManager",
    "LlmResponse",
    "MalformedResponseError",
    "Message",
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
    "Strategy",
    "StreamChunk",
    "StreamInterruptedError",
    "SyncLlmManager",
    "TaskDefinition",
    "Usage",
    "__version__",
    "use_logging",
]
