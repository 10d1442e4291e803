"""The helpers shared by the providers: retry hints, durations, excerpts, redaction, clamping."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flyllm.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaError,
    RateLimitError,
    ServerError,
)
from flyllm.providers._common import (
    MAX_RETRY_HINT,
    add_extra,
    clamp,
    error_class_for_status,
    excerpt,
    go_duration,
    header_retry_after,
    join_url,
    proto_duration,
    redact,
    reset_delay,
    rfc3339_delay,
    should_retry,
    stop_sequences,
)
from flyllm.providers.headroom import spent_for

NOW = 1_755_780_000.0  # 2025-08-21T12:40:00Z


def clock() -> float:
    return NOW


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1s", 1.0),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("1.5h", 5400.0),
        ("250us", 0.00025),
        ("100ns", 1e-7),
        ("2µs", 2e-6),
        ("", None),
        ("6", None),
        ("6m0", None),
        ("abc", None),
        ("1s trailing", None),
        ("-1s", None),
    ],
)
def test_go_duration(text: str, seconds: float | None) -> None:
    result = go_duration(text)
    assert result == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("34.4s", 34.4), ("0s", 0.0), ("13s", 13.0), ("34.4", None), (34, None), ("xs", None)],
)
def test_proto_duration(value: object, seconds: float | None) -> None:
    assert proto_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2025-08-21T12:40:59Z", 59.0),
        ("2025-08-21T12:40:30.25Z", 30.25),
        ("2025-08-21t12:41:00z", 60.0),
        ("2025-08-21T14:40:10+02:00", 10.0),
        ("2025-08-21T07:40:10-05:00", 10.0),
        ("2025-08-21T12:00:00Z", 0.0),
        ("2025-13-40T12:00:00Z", None),
        ("yesterday", None),
    ],
)
def test_rfc3339_delay(value: str, seconds: float | None) -> None:
    result = rfc3339_delay(value, clock)
    assert result == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "nope", "retry-after": "2"}, 2.0),
        ({"retry-after": "1.25"}, 1.25),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "Thu, 21 Aug 2025 12:41:00 GMT"}, 60.0),
        ({"retry-after": "Thu, 21 Aug 2025 12:41:00 +0100"}, 0.0),
        ({"retry-after": "Thu, 21 Aug 2025 12:41:00"}, 60.0),
        ({"retry-after": "Thursday"}, None),
    ],
)
def test_header_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    result = header_retry_after(headers, clock)
    assert result == (pytest.approx(seconds) if seconds is not None else None)


def test_reset_delay_prefers_exhausted_windows() -> None:
    assert reset_delay([("0", 5.0), ("10", 1.0), ("0", 9.0)]) == 9.0
    assert reset_delay([("3", 5.0), (None, 2.0)]) == 2.0
    assert reset_delay([("0", None)]) is None
    assert reset_delay([]) is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, QuotaError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (408, ProviderTimeoutError),
        (409, ServerError),
        (410, BadRequestError),
        (413, BadRequestError),
        (422, BadRequestError),
        (429, RateLimitError),
        (499, ProviderConnectionError),
        (500, ServerError),
        (502, ServerError),
        (503, OverloadedError),
        (504, ProviderTimeoutError),
        (529, OverloadedError),
        (599, ServerError),
    ],
)
def test_error_class_for_status(status: int, cls: type[ProviderError]) -> None:
    assert error_class_for_status(status) is cls


def test_should_retry_header() -> None:
    assert should_retry({"x-should-retry": "true"}) is True
    assert should_retry({"x-should-retry": " False "}) is False
    assert should_retry({"x-should-retry": "1"}) is None
    assert should_retry({}) is None


def test_excerpt_strips_html_and_cuts() -> None:
    page = (
        b"<html><head><style>body{color:red}</style></head>"
        b"<body><h1>502</h1> Bad\n\n gateway</body></html>"
    )
    assert excerpt(page) == "502 Bad gateway"
    long = excerpt("word " * 100)
    assert 190 <= len(long) <= 200 and long.endswith("word…")  # cut between words, never in one
    assert excerpt(b"   ") == "(empty body)"
    assert excerpt(b"\xff\xfe bad utf8") == "\ufffd\ufffd bad utf8"


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-abcdefghijklmnop",
        "sk-ant-" + "api03-abcdefghijklmnopqrstuvwxyz",  # split: no key-shaped literal in git
        "AIza" + "SyD-EXAMPLEKEYexamplekey0123456789",
        "sk-proj-********************************WXYZ",
    ],
)
def test_redact_key_shapes(secret: str) -> None:
    text = redact(f"Incorrect API key provided: {secret}. Try again.")
    assert secret not in text
    assert text == "Incorrect API key provided: [redacted]. Try again."


def test_redact_bearer_and_leaves_ordinary_text() -> None:
    assert redact("header Bearer abc123def was refused") == "header [redacted] was refused"
    assert redact("prompt is too long: 208310 tokens > 200000 maximum") == (
        "prompt is too long: 208310 tokens > 200000 maximum"
    )
    assert redact("") == ""


def test_clamp_and_notes() -> None:
    notes: list[str] = []
    assert clamp("temperature", 0.5, 0, 1, "x", notes) == 0.5
    assert clamp("temperature", 3, 0, 2, "x", notes) == 2.0
    assert notes == ["temperature 3 clamped to 2.0 for x"]


def test_stop_sequences_accepts_a_string() -> None:
    notes: list[str] = []
    assert stop_sequences("END", 4, "x", notes) == ["END"]
    assert notes == []


def test_add_extra_merges_mappings_and_replaces_others() -> None:
    body: dict[str, object] = {"generationConfig": {"topK": 1}, "n": 1}
    add_extra(body, "generationConfig", {"seed": 3})
    add_extra(body, "n", 2)
    add_extra(body, "new", {"a": 1})
    assert body == {"generationConfig": {"topK": 1, "seed": 3}, "n": 2, "new": {"a": 1}}


def test_join_url() -> None:
    assert join_url("https://h/v1", "/x") == "https://h/v1/x"
    assert join_url("https://h/v1/", "/x") == "https://h/v1/x"


@pytest.mark.parametrize(
    "page", [b"<style>x" * 100_000, b"<script" * 200_000, b"<" * 1_000_000, b"<p " * 300_000]
)
def test_excerpt_of_a_hostile_page_takes_linear_time(page: bytes) -> None:
    started = time.perf_counter()
    text = excerpt(page)
    assert time.perf_counter() - started < 0.1
    assert len(text) <= 200


def test_excerpt_drops_scripts_and_styles_even_unclosed() -> None:
    page = b"<p>ok</p><script>var a='<b>';</script><STYLE>b{}</style > after <i>x</i><script>x"
    assert excerpt(page) == "ok after x"


@pytest.mark.parametrize(
    "hint",
    [
        lambda: header_retry_after({"retry-after": "1e300"}, lambda: 0.0),
        lambda: header_retry_after({"retry-after-ms": "9" * 300}, lambda: 0.0),
        lambda: header_retry_after({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, lambda: 0.0),
        lambda: proto_duration("1e300s"),
        lambda: go_duration("9" * 400 + "h"),
        lambda: reset_delay([("0", rfc3339_delay("9999-12-31T23:59:59Z", lambda: 0.0))]),
        lambda: spent_for({"x-ratelimit-remaining-requests": "0",
                           "x-ratelimit-reset-requests": "9" * 400 + "h"}, 1, lambda: 0.0),
        lambda: spent_for({"anthropic-ratelimit-requests-remaining": "0",
                           "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z"},
                          1, lambda: 0.0),
    ],
)  # fmt: skip
def test_absurd_retry_hints_are_capped_at_a_week(hint: Any) -> None:
    assert hint() == MAX_RETRY_HINT == 7 * 86_400.0
