"""Set-up checks and defaults shared by the manager, config files and discovery: number,
header, base-URL and parameter checks, the SDKs' base-URL environment variables and the state
store named by ``LlmManager(state=...)``.

Checks raise ConfigurationError (numbers, headers, URLs) or TypeError/ValueError (parameters,
wrapped by the caller in the error of its layer); none quotes a header value or a key."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flyllm._display import mask_url
from flyllm.errors import ConfigurationError
from flyllm.params import validate_params, validate_provider_params
from flyllm.providers import SPECS, resolve_provider_type, spec_for
from flyllm.routing.state import MemoryStore, StateStore
from flyllm.types import ProviderType

__all__ = [
    "BASE_URL_ENV",
    "check_addressing",
    "check_base_url",
    "check_headers",
    "check_params",
    "check_provider_params",
    "env_base_url",
    "make_store",
    "non_negative_number",
    "positive_int",
    "positive_number",
]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but tab


BASE_URL_ENV: dict[ProviderType, str] = {
    spec.kind: spec.base_url_env for spec in SPECS if spec.base_url_env
}
"""Environment variables that move a provider's default base URL, as the official SDKs read
them (each provider's ``SPEC.base_url_env``; MISTRAL_BASE_URL is ours; OLLAMA_HOST may be a
bare host or host:port)."""


def check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated parameters (see params.validate_params: every value plain JSON, no NaN or
    infinity, no set, bytes or datetime, no absurd nesting). Raises TypeError or ValueError
    naming the parameter."""
    return validate_params(params)


def check_provider_params(
    provider_params: Mapping[str, Mapping[str, Any]] | None,
) -> dict[str, dict[str, Any]]:
    """Validated provider_params keyed by canonical provider name ("gemini" -> "google")."""
    checked = validate_provider_params(provider_params)
    return {resolve_provider_type(name).value: check_params(p) for name, p in checked.items()}


def check_headers(headers: Any) -> dict[str, str]:
    """Extra HTTP headers as a dict, or ConfigurationError naming the bad header (never its
    value, which is often a key): names must be HTTP tokens, values strings without CR, LF or
    other control characters (they would split or corrupt the request)."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"headers must map names to values, got {type(headers).__name__}")
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            shown = name if isinstance(name, str) and not _CONTROL.search(name) else "?"
            raise ConfigurationError(f"header name {shown!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ConfigurationError(
                f"header {name!r} must have a string value, got {type(value).__name__}"
            )
        if _CONTROL.search(value):
            raise ConfigurationError(
                f"header {name!r} has a control character (CR, LF...) in its value"
            )
    return dict(headers)


def check_addressing(api_key: str, base_url: str, api_version: Any, headers: Any) -> dict[str, str]:
    """An instance's addressing checked (key, base URL, API version, extra headers: anything
    that goes into its requests' lines and headers); returns the headers as a dict."""
    if not api_key.isprintable():  # it would split the request's headers
        raise ConfigurationError("the api_key has a control character (a stray newline?)")
    check_base_url(base_url)
    if api_version is not None and (
        not isinstance(api_version, str) or not api_version.isprintable()
    ):
        raise ConfigurationError(f"api_version must be a string, got {api_version!r}")
    return check_headers(headers)


def check_base_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else ConfigurationError (the URL masked)."""
    parts = urlsplit(url) if isinstance(url, str) and not _CONTROL.search(url) else None
    try:
        _ = parts and parts.port  # urlsplit reads the port only when asked: "h:99999", "h:abc"
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or " " in url:
        shown = mask_url(url) if isinstance(url, str) else repr(url)
        raise ConfigurationError(
            f"base_url {shown!r} is not an http:// or https:// URL with a host"
        )
    return url


def positive_int(name: str, value: Any) -> None:
    """ConfigurationError naming ``name`` unless ``value`` is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


def positive_number(name: str, value: Any, *, allow_none: bool = False) -> None:
    """ConfigurationError naming ``name`` unless ``value`` is a finite number of seconds > 0."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value > 0
        or not math.isfinite(value)
    ):
        raise ConfigurationError(
            f"{name} must be a positive, finite number of seconds, got {value!r}"
        )


def non_negative_number(name: str, value: Any) -> None:
    """ConfigurationError naming ``name`` unless ``value`` is a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= 0
        or not math.isfinite(value)
    ):
        raise ConfigurationError(f"{name} must be a number >= 0 (and finite), got {value!r}")


def env_base_url(ptype: ProviderType) -> str | None:
    """The base URL the provider's SDK environment variable gives, if set."""
    spec = spec_for(ptype)
    value = os.environ.get(spec.base_url_env, "").strip() if spec.base_url_env else ""
    return spec.read_base_url_env(value) if value else None


def make_store(state: str | StateStore | None, clock: Callable[[], float]) -> StateStore:
    """The state store for ``LlmManager(state=...)``."""
    if state is None or state == "memory":
        return MemoryStore(clock)
    if isinstance(state, str):
        if state.startswith(("redis://", "rediss://", "unix://")):
            from flyllm.routing.redis_state import RedisStore

            return RedisStore(state, clock=clock)
        raise ConfigurationError(
            f'unknown state store {state!r}: use "memory", a redis:// URL or a StateStore'
        )
    return state
