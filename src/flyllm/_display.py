"""Text that is safe to show: on a terminal (no escape sequences or control characters from a
server), in JSON on stdout, and with the secrets of URLs masked. The CLI, the usage tables and
the progress bar print through these."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["json_text", "mask_url", "table_cell", "terminal_text"]

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


_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^\s/?#@'\"]*@)?([^\s?#'\"]*)(\?[^\s#'\"]*)?")


def mask_url(text: str) -> str:
    """``text`` with the secrets of every URL in it masked: a password (``redis://:***@h``), a
    user-info without one (a token: ``https://***@h``) and every query value (``?key=***``).
    For whatever prints a URL or a message that may quote one (a state URL, a base URL)."""
    return _URL.sub(_mask_match, text)


def _mask_match(found: re.Match[str]) -> str:
    scheme, userinfo, rest, query = found.groups()
    if userinfo:
        user, colon, _ = userinfo[:-1].partition(":")
        userinfo = f"{user}:***@" if colon else "***@"
    if query:
        pairs = (part.partition("=") for part in query[1:].split("&"))
        query = "?" + "&".join(f"{name}=***" if sep else "***" for name, sep, _ in pairs)
    return f"{scheme}{userinfo or ''}{rest}{query or ''}"
