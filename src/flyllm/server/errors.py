"""The gateway's errors: one small set of outcomes, each rendered in the caller's protocol.

Every failure a gateway caller sees is a GatewayError with an HTTP status, a provider-neutral
``kind`` (each dialect maps it to its own error type names) and a message that never holds a
provider key: messages of flyllm's errors are built from status and body text only, and the
attempts of an AllAttemptsFailedError are summarised by kind, provider and status.
"""

from __future__ import annotations

from dataclasses import dataclass

from flyllm.errors import (
    AllAttemptsFailedError,
    ContentFilterError,
    ContextLengthError,
    FlyLLMError,
    InvalidRequestError,
    NoInstanceAvailableError,
    ProviderError,
    ProviderTimeoutError,
)

__all__ = ["GatewayError", "classify"]

_REQUEST_KINDS = ("bad_request", "context_length", "content_filter")


@dataclass(slots=True)
class GatewayError(Exception):
    """What went wrong, as the caller's protocol will say it.

    ``kind`` is one of: invalid_request (400), authentication (401), permission (403),
    not_found (404), too_large (413), rate_limit (429, ``retry_after`` seconds), upstream (502:
    every attempt failed), unavailable (503: no instance can take it now), timeout (504: the
    deadline passed), internal (500). ``param`` names the offending field when known; ``code``
    is a finer machine-readable reason (OpenAI's ``code``, e.g. "model_not_found").
    """

    status: int
    kind: str
    message: str
    retry_after: float | None = None
    param: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.kind}: {self.message}"


def bad_request(message: str, param: str | None = None) -> GatewayError:
    """A 400 for a request the gateway cannot read or accept."""
    return GatewayError(400, "invalid_request", message, param=param)


def classify(exc: BaseException, *, deadline_passed: bool = False) -> GatewayError:
    """The GatewayError for an exception ``LlmManager.generate`` (or a stream, or ``embed``)
    raised. ``deadline_passed`` (the caller's clock says the manager's deadline has gone by)
    makes a give-up a 504: the manager then reports the deadline only as the reason it stopped
    (its last attempt's error, or "no instance" when it was still waiting)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, InvalidRequestError):
        return bad_request(str(exc))
    if deadline_passed and isinstance(exc, NoInstanceAvailableError | AllAttemptsFailedError):
        return GatewayError(504, "timeout", f"the request's deadline passed: {_brief(exc)}")
    if isinstance(exc, NoInstanceAvailableError):
        return GatewayError(503, "unavailable", str(exc))
    if isinstance(exc, AllAttemptsFailedError):
        return _all_failed(exc)
    if isinstance(exc, ProviderError):
        return _one_failed(exc)
    if isinstance(exc, FlyLLMError):
        return GatewayError(500, "internal", f"{type(exc).__name__}: {exc}")
    return GatewayError(500, "internal", "internal error in the gateway")


def _brief(exc: FlyLLMError) -> str:
    if isinstance(exc, AllAttemptsFailedError) and exc.attempts:
        return _summary(exc.attempts)
    return str(exc)


def _one_failed(exc: ProviderError) -> GatewayError:
    """A request's own error (the manager gives up at once): the caller's fault, said as such."""
    kind = exc.kind.value
    if isinstance(exc, (ContextLengthError, ContentFilterError)) or kind in _REQUEST_KINDS:
        code = {"context_length": "context_length_exceeded", "content_filter": "content_filter"}
        return GatewayError(400, "invalid_request", exc.message, code=code.get(kind))
    if isinstance(exc, ProviderTimeoutError):
        return GatewayError(504, "timeout", _summary([exc]))
    return GatewayError(502, "upstream", _summary([exc]))


def _all_failed(exc: AllAttemptsFailedError) -> GatewayError:
    attempts = exc.attempts
    if not attempts:
        return GatewayError(503, "unavailable", str(exc))
    last = attempts[-1]
    if last.kind.value in _REQUEST_KINDS:
        return _one_failed(last)
    if isinstance(last, ProviderTimeoutError):
        return GatewayError(504, "timeout", _summary(attempts))
    # The pool's earliest hint: any one instance ready again is enough for the caller.
    retry = min((a.retry_after for a in attempts if a.retry_after), default=None)
    kinds = {a.kind.value for a in attempts}
    if kinds == {"rate_limit"}:  # the pool is rate-limited: the caller should slow down
        return GatewayError(429, "rate_limit", _summary(attempts), retry_after=retry or 1.0)
    if kinds <= {"rate_limit", "overloaded", "quota"}:
        return GatewayError(503, "unavailable", _summary(attempts), retry_after=retry)
    return GatewayError(502, "upstream", _summary(attempts), retry_after=retry)


def _summary(attempts: tuple[ProviderError, ...] | list[ProviderError]) -> str:
    """``every attempt failed: 1. openai HTTP 500 server ...`` without instance details beyond
    the provider name and status (the caller does not need our pool's layout)."""
    parts = []
    for i, a in enumerate(attempts, 1):
        status = f" HTTP {a.status}" if a.status is not None else ""
        parts.append(f"{i}. {a.provider or 'provider'}{status} {a.kind.value}: {a.message[:200]}")
    return f"{len(attempts)} attempt(s) failed: " + "; ".join(parts)
