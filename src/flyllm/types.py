"""The values that cross flyllm's public API: requests, responses, usage, tasks.

Plain typed dataclasses with slots; nothing here does I/O or knows a provider.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ErrorKind",
    "FinishReason",
    "GenerationRequest",
    "LlmResponse",
    "Message",
    "ProviderType",
    "Role",
    "StreamChunk",
    "TaskDefinition",
    "Usage",
]

Role = Literal["system", "user", "assistant"]
"""The roles a conversation may use; each provider gets them in its own shape."""

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]
"""A provider's stop reason, normalised; the raw value is kept beside it."""


class ProviderType(str, enum.Enum):
    """The wire formats flyllm speaks. The value is the name used in logs, usage and configs."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    MISTRAL = "mistral"
    OPENAI_COMPATIBLE = "openai_compatible"
    AZURE = "azure"
    OLLAMA = "ollama"
    COHERE = "cohere"
    GROQ = "groq"
    TOGETHER = "together"
    PERPLEXITY = "perplexity"
    DEEPSEEK = "deepseek"
    OPENROUTER = "openrouter"
    FIREWORKS = "fireworks"
    LMSTUDIO = "lmstudio"
    VLLM = "vllm"

    def __str__(self) -> str:
        return self.value


class ErrorKind(str, enum.Enum):
    """Why an attempt or a request failed; the manager decides retry or failover from this alone."""

    RATE_LIMIT = "rate_limit"
    QUOTA = "quota"
    OVERLOADED = "overloaded"
    SERVER = "server"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    MALFORMED_RESPONSE = "malformed_response"
    STREAM_INTERRUPTED = "stream_interrupted"
    INVALID_REQUEST = "invalid_request"
    NO_INSTANCE = "no_instance"

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True, frozen=True)
class Message:
    """One turn of a conversation: ``role`` is "system", "user" or "assistant"."""

    role: Role
    content: str


@dataclass(slots=True, frozen=True)
class TaskDefinition:
    """A named kind of work (e.g. "summary") with default parameters for every request of it.

    ``provider_params`` maps a provider name ("anthropic", "google", ...) to options sent only to
    instances of that provider, after the general ``parameters``. ``fallback`` names tasks to
    use, in order, when every instance of this one has failed or is cooling down, or the prompt
    is too long for them (a bigger-context group); content-filter refusals fall back only with
    ``fallback_on_content_filter``.
    """

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    provider_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fallback: Sequence[str] = field(default=(), kw_only=True)
    fallback_on_content_filter: bool = field(default=False, kw_only=True)


@dataclass(slots=True, frozen=True)
class GenerationRequest:
    """One generation: a ``prompt`` or a conversation of ``messages``, optionally for a ``task``.

    ``params`` override the task's and the instance's defaults; ``system`` is a system prompt put
    where each provider wants it; ``max_attempts`` overrides the manager's bound for this request.
    ``deadline`` (seconds) bounds the whole request across attempts and waits;
    ``connect_timeout`` and ``read_timeout`` override the instance's and manager's per attempt.
    """

    prompt: str | None = None
    task: str | None = None
    params: Mapping[str, Any] | None = None
    messages: Sequence[Message] | None = field(default=None, kw_only=True)
    system: str | None = field(default=None, kw_only=True)
    max_attempts: int | None = field(default=None, kw_only=True)
    provider_params: Mapping[str, Mapping[str, Any]] | None = field(default=None, kw_only=True)
    deadline: float | None = field(default=None, kw_only=True)
    connect_timeout: float | None = field(default=None, kw_only=True)
    read_timeout: float | None = field(default=None, kw_only=True)


@dataclass(slots=True, frozen=True)
class Usage:
    """Tokens as the provider reported them.

    ``prompt_tokens`` includes everything billed as input (Anthropic's cache creation and cache
    reads too, which are also kept apart in ``cached_tokens``); ``completion_tokens`` includes
    reasoning or thought tokens, as they are billed.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(slots=True, frozen=True)
class LlmResponse:
    """The answer to one request, successful or not (batch methods never raise for one request).

    ``provider`` is the ProviderType's value ("openai", ...); ``model`` is the instance's
    model, the routing identity (usage tables and batch outputs show it), and
    ``served_model`` the model the provider's answer named, when it named one (a dated
    snapshot such as "gpt-4o-mini-2024-07-18"; at most 200 characters). ``finish_reason`` is
    normalised (stop, length, content_filter, tool_calls, other) and ``raw_finish_reason`` keeps the
    provider's own; ``latency`` is in seconds; ``attempts`` counts the attempts made.
    On failure ``error`` is readable text, ``error_kind`` the ErrorKind's value and
    ``exception`` the typed error itself.
    """

    content: str
    success: bool
    provider: str | None = None
    model: str | None = None
    instance_id: int | None = None
    usage: Usage = field(default_factory=Usage)
    finish_reason: FinishReason | None = None
    raw_finish_reason: str | None = None
    latency: float = 0.0
    attempts: int = 0
    error: str | None = None
    error_kind: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    served_model: str | None = None


@dataclass(slots=True, frozen=True)
class StreamChunk:
    """One piece of a streamed answer: ``text`` is the delta; the last chunk has
    ``finish_reason`` and ``usage``."""

    text: str
    instance_id: int
    provider: str
    model: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
