"""Reading model lists: the small value readers every provider's models listing shares.

Each provider module owns its listing (:class:`~flyllm.providers.base.ModelListing`: the URL of
a page and the reading of one); these helpers read the values inside a page and say what is
wrong with one that cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from flyllm.errors import MalformedResponseError
from flyllm.providers._common import excerpt, join_url, rfc3339_delay
from flyllm.providers.base import Endpoint

__all__ = [
    "PAGE_SIZE",
    "epoch",
    "first",
    "items_of",
    "malformed",
    "name_of",
    "paged_url",
    "path_url",
    "text",
    "whole",
]

PAGE_SIZE = 1000
"""The page size asked of the paginating APIs (the largest each accepts)."""


def malformed(provider: str, what: str) -> MalformedResponseError:
    """The error for a model list that has ``what`` wrong with it."""
    return MalformedResponseError(
        f"{provider} model list has {what}", status=200, provider=provider
    )


def whole(value: Any) -> int | None:
    """A whole number from JSON (Cohere sends context lengths as floats), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def text(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def first(item: Mapping[str, Any], keys: tuple[str, ...], read: Callable[[Any], Any]) -> Any:
    """The first of ``keys`` whose value ``read`` accepts (not None)."""
    for key in keys:
        value = read(item.get(key))
        if value is not None:
            return value
    return None


def epoch(value: Any) -> int | None:
    """Epoch seconds of an RFC 3339 timestamp; None when absent, unreadable or the epoch itself
    (Anthropic's "release date unknown")."""
    if not isinstance(value, str):
        return None
    seconds = rfc3339_delay(value, lambda: 0.0)
    return int(seconds) if seconds else None


def items_of(data: Any, key: str, provider: str, *, required: bool = True) -> list[dict[str, Any]]:
    """The list of entries under ``key``; MalformedResponseError unless it is a list of
    objects (a missing key is an empty list where the provider omits empty lists)."""
    items = data.get(key) if isinstance(data, dict) else None
    if items is None and not required and isinstance(data, dict):
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise malformed(provider, f"no list of objects in {key!r}")
    return items


def name_of(item: Mapping[str, Any], keys: tuple[str, ...], provider: str) -> str:
    """The entry's name under the first of ``keys`` that has one; MalformedResponseError
    for an entry without any."""
    name = first(item, keys, text)
    if name is None:
        raise malformed(provider, f"an entry without {' or '.join(keys)}: {excerpt(str(item))}")
    return str(name)


def path_url(path: str) -> Callable[[Endpoint, str | None], str]:
    """The URL of a list that has one page: ``path`` after the base URL."""
    return lambda endpoint, _cursor: join_url(endpoint.base_url, path)


def paged_url(
    endpoint: Endpoint,
    path: str,
    cursor: str | None,
    keys: tuple[str, str],
    extra: Mapping[str, str] | None = None,
) -> str:
    """The URL of one page of a paginated list: ``path`` after the base URL, the largest page
    size under ``keys[0]``, the ``extra`` query, and the cursor (none on the first page) under
    ``keys[1]``."""
    query: dict[str, Any] = {keys[0]: PAGE_SIZE, **(extra or {})}
    if cursor is not None:
        query[keys[1]] = cursor
    return join_url(endpoint.base_url, f"{path}?{urlencode(query)}")
