"""flyllm's exception tree. Errors are classified once, in the provider layer; the manager decides
retry, failover or give-up from the class (its ``kind``) alone.

    FlyLLMError
    ├── ConfigurationError          bad set-up: unknown provider, missing key, bad config
    ├── InvalidRequestError         bad request caught before anything is sent
    ├── NoInstanceAvailableError    unknown task, or no enabled instance can take the request
    ├── ProviderError               one attempt failed (.kind, .status, .provider, .instance_id,
    │   │                           .retryable, .retry_after, .request_id)
    │   ├── RateLimitError          429 rate limit                      retryable
    │   ├── QuotaError              quota or billing exhausted          fail over
    │   ├── OverloadedError         529 / 503 overloaded                retryable
    │   ├── ServerError             5xx                                 retryable
    │   ├── ProviderTimeoutError    no answer in time                   retryable
    │   ├── ProviderConnectionError connect failed, reset               retryable
    │   ├── AuthenticationError     bad key                             fail over
    │   ├── PermissionDeniedError   key not allowed                     fail over
    │   ├── NotFoundError           unknown model (misconfigured)       fail over
    │   │   └── RedirectError       3xx: never followed (wrong base_url) fail over
    │   ├── BadRequestError         the request itself is wrong         give up
    │   ├── ContextLengthError      prompt too long for the model       give up
    │   ├── ContentFilterError      refused or blocked                  give up
    │   ├── UnsupportedFeatureError the instance cannot do what the     fail over (learned:
    │   │                           request needs (.feature)            skipped from now on)
    │   ├── StructuredOutputError   the answer is not the JSON asked    fail over
    │   │                           for (.raw_text, .errors)
    │   ├── MalformedResponseError  an answer we cannot read            retryable
    │   └── StreamInterruptedError  a stream ended before its end       retryable before output
    ├── AllAttemptsFailedError      every allowed attempt failed (.attempts)
    └── ToolLoopError               run_tools reached max_steps (.messages, .response)

Messages never contain API keys: providers build them from status and body text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flyllm.types import ErrorKind, LlmResponse, Message

__all__ = [
    "AllAttemptsFailedError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ContentFilterError",
    "ContextLengthError",
    "FlyLLMError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NoInstanceAvailableError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "QuotaError",
    "RateLimitError",
    "RedirectError",
    "ServerError",
    "StreamInterruptedError",
    "StructuredOutputError",
    "ToolLoopError",
    "UnsupportedFeatureError",
]


class FlyLLMError(Exception):
    """Base of every error flyllm raises."""

    kind: ErrorKind | None = None


class ConfigurationError(FlyLLMError):
    """The set-up is wrong: unknown provider name, duplicate task, invalid config. Says where."""


class InvalidRequestError(FlyLLMError):
    """The request is wrong before anything is sent: no prompt, a parameter of the wrong type."""

    kind = ErrorKind.INVALID_REQUEST


class NoInstanceAvailableError(FlyLLMError):
    """No enabled instance can take the request: unknown task, none serves it, or all are out."""

    kind = ErrorKind.NO_INSTANCE


class ProviderError(FlyLLMError):
    """One attempt against one instance failed.

    ``status`` is the HTTP status (None when no response came), ``provider`` the provider name,
    ``instance_id`` the instance (set by the manager), ``retryable`` whether trying again (here or
    elsewhere) can help, ``retry_after`` the server's hint in seconds, ``request_id`` the
    provider's request id for support tickets.
    """

    kind: ErrorKind = ErrorKind.SERVER
    default_retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        instance_id: int | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        partial_content: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.provider = provider
        self.instance_id = instance_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.request_id = request_id
        self.partial_content = partial_content

    def __str__(self) -> str:
        where = []
        if self.instance_id is not None:
            where.append(f"instance {self.instance_id}")
        if self.provider:
            where.append(self.provider)
        if self.status is not None:
            where.append(f"HTTP {self.status}")
        prefix = f"[{', '.join(where)}] " if where else ""
        return f"{prefix}{self.kind.value}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind.value!r}, status={self.status!r}, "
            f"provider={self.provider!r}, instance_id={self.instance_id!r}, "
            f"message={self.message!r})"
        )


class RateLimitError(ProviderError):
    """The provider's rate limit was hit (429); ``retry_after`` carries its hint."""

    kind = ErrorKind.RATE_LIMIT


class QuotaError(ProviderError):
    """The key's quota or billing is exhausted; this instance will not work soon."""

    kind = ErrorKind.QUOTA


class OverloadedError(ProviderError):
    """The provider is overloaded (Anthropic 529, Gemini 503 UNAVAILABLE)."""

    kind = ErrorKind.OVERLOADED


class ServerError(ProviderError):
    """The provider failed (5xx)."""

    kind = ErrorKind.SERVER


class ProviderTimeoutError(ProviderError):
    """No answer within the timeout."""

    kind = ErrorKind.TIMEOUT


class ProviderConnectionError(ProviderError):
    """The connection failed or was reset before an answer."""

    kind = ErrorKind.CONNECTION


class AuthenticationError(ProviderError):
    """The key was refused; another instance's key may work."""

    kind = ErrorKind.AUTHENTICATION


class PermissionDeniedError(ProviderError):
    """The key may not use this model or region; another instance may."""

    kind = ErrorKind.PERMISSION


class NotFoundError(ProviderError):
    """The model (or route) does not exist: a misconfigured instance."""

    kind = ErrorKind.NOT_FOUND


class RedirectError(NotFoundError):
    """The server answered a redirect (3xx). flyllm never follows one: it would carry the API
    key and the prompt to another host. ``location`` is the target's origin (scheme, host and
    port only; None when there was no readable Location). Like an unknown model it means a
    misconfigured instance (usually ``base_url``), so its kind is NOT_FOUND: the request fails
    over and the instance sits out the long cooldown."""

    def __init__(self, message: str, *, location: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.location = location


class BadRequestError(ProviderError):
    """The provider rejected the request itself; trying elsewhere cannot help."""

    kind = ErrorKind.BAD_REQUEST
    default_retryable = False


class ContextLengthError(ProviderError):
    """The prompt is longer than the model's context window."""

    kind = ErrorKind.CONTEXT_LENGTH
    default_retryable = False


class ContentFilterError(ProviderError):
    """The provider refused or blocked the content; the message carries its text."""

    kind = ErrorKind.CONTENT_FILTER
    default_retryable = False


class UnsupportedFeatureError(ProviderError):
    """The instance cannot do what the request needs (``feature``: a Capability such as
    "tools"), said by the provider before sending (Cohere cannot force a named tool) or learned
    from its answer ("this model does not support tools"). Says nothing about the instance's
    health: the request fails over, and the instance is skipped for such requests from then on.
    """

    kind = ErrorKind.UNSUPPORTED

    def __init__(self, message: str, *, feature: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.feature = feature


class StructuredOutputError(ProviderError):
    """The answer to a request with a ``response_format`` is not JSON, or not JSON that
    follows the schema: ``raw_text`` is the answer as it came (clipped in the message, whole
    here) and ``errors`` what the validation found. A failed attempt like any other: the
    request fails over (another instance, or another try, may do better) within
    ``max_attempts``."""

    kind = ErrorKind.STRUCTURED_OUTPUT

    def __init__(
        self, message: str, *, raw_text: str, errors: Sequence[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.errors = tuple(errors)


class MalformedResponseError(ProviderError):
    """The provider answered something we cannot read."""

    kind = ErrorKind.MALFORMED_RESPONSE


class StreamInterruptedError(ProviderError):
    """A stream ended before its terminator; ``partial_content`` holds what had arrived."""

    kind = ErrorKind.STREAM_INTERRUPTED


class AllAttemptsFailedError(FlyLLMError):
    """Every allowed attempt failed; ``attempts`` lists each attempt's ProviderError in order."""

    def __init__(self, attempts: Sequence[ProviderError], note: str = "") -> None:
        self.attempts = tuple(attempts)
        self.kind = self.attempts[-1].kind if self.attempts else ErrorKind.NO_INSTANCE
        lines = [f"all {len(self.attempts)} attempt(s) failed{'; ' + note if note else ''}:"]
        lines += [f"  {i}. {err}" for i, err in enumerate(self.attempts, 1)]
        super().__init__("\n".join(lines))


class ToolLoopError(FlyLLMError):
    """``run_tools`` reached ``max_steps`` while the model still asked for tool calls.
    ``messages`` is the transcript so far (ready to continue with more steps) and ``response``
    the last answer, whose usage is summed over all steps."""

    def __init__(self, message: str, messages: Sequence[Message], response: LlmResponse) -> None:
        super().__init__(message)
        self.messages = tuple(messages)
        self.response = response
