"""Rate-limit headroom from response headers, so flyllm slows down before the provider says 429.

Each provider's :class:`~flyllm.providers.base.ProviderSpec` names the family of headers its
answers carry (``rate_limits``: OpenAI's ``x-ratelimit-*`` with Go-style durations, which most
OpenAI-compatible servers send too, and Anthropic's ``anthropic-ratelimit-*`` with RFC 3339
timestamps; Gemini sends none, Mistral's are undocumented and not relied on). This module only
reads them: whichever known family an answer carries, in the registry's order.
"""

from __future__ import annotations

from collections.abc import Mapping

from flyllm.providers import SPECS
from flyllm.providers._common import MAX_RETRY_HINT, Clock
from flyllm.providers.base import RateLimitHeaders

__all__ = ["spent_for"]

_FAMILIES: tuple[RateLimitHeaders, ...] = tuple(
    dict.fromkeys(spec.rate_limits for spec in SPECS if spec.rate_limits is not None)
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
    for family in _FAMILIES:
        requests = headers.get(family.remaining_requests)
        tokens_left = headers.get(family.remaining_tokens)
        if requests is None and tokens_left is None:
            continue
        waits = []
        if _below(requests, 1) and (reset := headers.get(family.reset_requests)):
            waits.append(family.reset_delay(reset, clock))
        if _below(tokens_left, tokens) and (reset := headers.get(family.reset_tokens)):
            waits.append(family.reset_delay(reset, clock))
        if not waits:  # the common case: room left
            return None
        known = [w for w in waits if w is not None]
        return min(max(known), MAX_RETRY_HINT) if known else None
    return None
