"""Text that is safe to show: on a terminal (no escape sequences or control characters from a
server), in JSON on stdout, and with the secrets of URLs masked. The CLI, the usage tables and
the progress bar print through these."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "json_text",
    "mask_headers",
    "mask_url",
    "mask_urls",
    "table_cell",
    "terminal_text",
    "url_secrets",
]

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clearing the screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS, PM, APC, SOS strings
    r"|\x1b[ -/]*[0-~]"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the one-byte CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    """``text`` safe to print on a terminal: escape sequences and control characters removed
    (newlines and tabs kept; CRLF becomes LF). Text from a server (answers, model names, error
    messages) must never move the cursor, clear the screen or retitle the window."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\r\n", "\n")))


def table_cell(text: str) -> str:
    """``text`` for one cell of a printed table: terminal_text on one line."""
    return " ".join(terminal_text(text).split())


_C1_AND_DEL = re.compile(r"[\x7f-\x9f]")


def json_text(data: Any, indent: int | None = None) -> str:
    """JSON for stdout: readable Unicode, but DEL and the C1 controls (which json.dumps leaves
    raw and some terminals obey) escaped as \\u00XX; the data reads back the same."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return _C1_AND_DEL.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()]+")
_URL_LIMIT = 300


def mask_url(url: str) -> str:
    """One URL as it may be shown (reprs, logs, error messages, CLI output): its whole user-info
    (a password, or a token used as a user name) as ``***@``, every query value as ``***`` (the
    names stay: ``?key=***``), the fragment dropped, control characters as ``?``, and cut to a
    few hundred characters. The one place flyllm masks a URL."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:  # a password may hold "/", "?" or "#", which end urlsplit's netloc
        url = f"{scheme}://***@{rest.rpartition('@')[2]}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable URL>"
    if parts.netloc:
        _, at, host = parts.netloc.rpartition("@")
        shown = f"{parts.scheme}://{'***@' if at else ''}{host}{parts.path}"
    else:  # no "//": "user:pass@host" parses as scheme "user" and path "pass@host"
        shown = f"{parts.scheme}:{parts.path}" if parts.scheme else parts.path
        if "@" in shown:
            shown = "***@" + shown.rpartition("@")[2]
    query = "&".join(
        f"{pair.partition('=')[0]}=***" if "=" in pair else "***"
        for pair in parts.query.split("&")
        if pair
    )
    shown = _CONTROLS.sub("?", f"{shown}?{query}" if query else shown)
    return shown if len(shown) <= _URL_LIMIT else shown[:_URL_LIMIT] + "..."


def mask_urls(text: str) -> str:
    """``text`` (a message that may quote URLs: a state URL, a base URL, an exception's words)
    with every ``scheme://...`` in it masked by :func:`mask_url`."""
    return _URL_IN_TEXT.sub(lambda found: mask_url(found.group()), text)


def url_secrets(url: object) -> list[str]:
    """The secrets a URL carries, decoded: its user-info (user and password) and its query
    values. A gateway's key often rides there (``https://user:KEY@gw/v1``, ``...?key=KEY``), and
    servers and libraries echo URLs, so whoever shows their words redacts these."""
    if not isinstance(url, str):
        return []
    _, sep, rest = url.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else ""  # to the last "@": a password may hold "/"
    found = [unquote(part) for part in userinfo.split(":", 1) if part]
    query = url.partition("?")[2].partition("#")[0]
    found += [unquote(pair.partition("=")[2]) for pair in query.split("&") if "=" in pair]
    return found


def mask_headers(headers: Mapping[str, object]) -> dict[str, str]:
    """Headers as they may be shown (reprs): the names, every value ``***`` (any may carry a
    key: Authorization, a gateway's key, a cookie)."""
    return {str(name): "***" for name in headers}
