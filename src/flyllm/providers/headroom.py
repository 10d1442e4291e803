"""Rate-limit headroom from response headers, so flyllm slows down before the provider says 429.

Two header families carry it: OpenAI's (and most OpenAI-compatible servers')
``x-ratelimit-remaining-{requests,tokens}`` with Go-style ``x-ratelimit-reset-*`` durations,
and Anthropic's ``anthropic-ratelimit-{requests,tokens}-{remaining,reset}`` with RFC 3339
timestamps. Gemini sends none; Mistral's are undocumented and not relied on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flyllm.providers._common import MAX_RETRY_HINT, Clock, go_duration, rfc3339_delay

__all__ = ["spent_for"]

_FAMILIES: tuple[tuple[str, str, str, str, Callable[[str, Clock], float | None]], ...] = (
    (
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        lambda value, _clock: go_duration(value),
    ),
    (
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
        "anthropic-ratelimit-tokens-remaining",
        "anthropic-ratelimit-tokens-reset",
        rfc3339_delay,
    ),
)


def _below(value: str | None, needed: int) -> bool:
    if value is None:
        return False
    try:
        return int(value.strip()) < needed
    except ValueError:
        return False


def spent_for(headers: Mapping[str, str], tokens: int, clock: Clock) -> float | None:
    """Seconds until the provider's window has room again when its headers say it is spent (no
    request left, or fewer tokens than a request like this one); None when there is room or
    the headers say nothing. Cheap when there is room: the resets are parsed only when needed."""
    for remaining_req, reset_req, remaining_tok, reset_tok, parse in _FAMILIES:
        requests = headers.get(remaining_req)
        tokens_left = headers.get(remaining_tok)
        if requests is None and tokens_left is None:
            continue
        waits = []
        if _below(requests, 1) and (reset := headers.get(reset_req)):
            waits.append(parse(reset, clock))
        if _below(tokens_left, tokens) and (reset := headers.get(reset_tok)):
            waits.append(parse(reset, clock))
        known = [w for w in waits if w is not None]
        return min(max(known), MAX_RETRY_HINT) if known else None
    return None
