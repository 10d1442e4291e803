"""SseDecoder: the WHATWG event-stream rules, read by read, including the awkward splits."""

from __future__ import annotations

import time

import pytest

from flyllm._wire import NdjsonDecoder, SseDecoder
from flyllm.providers.base import NON_SSE_LINE, SseEvent
from tests.fixtures import chunks, decode, fixture_bytes, one_byte, random_reads

TWO_EVENTS = [SseEvent('{"a":1}'), SseEvent("second", "named")]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_end_style(newline: str) -> None:
    text = f'data: {{"a":1}}{newline}{newline}event: named{newline}data: second{newline}{newline}'
    data = text.encode()
    assert decode([data]) == TWO_EVENTS
    assert decode(one_byte(data)) == TWO_EVENTS


def test_mixed_line_ends_in_one_stream() -> None:
    data = b'data: {"a":1}\r\n\nevent: named\rdata: second\n\r'
    assert decode([data]) == TWO_EVENTS


def test_crlf_split_across_reads_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    # the LF completing the CRLF must not count as the blank line that ends the event
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"data: y\r") == []
    # LF pairs with the CR before it; the next CR is the blank line
    assert decoder.feed(b"\n\r") == [SseEvent("x\ny")]
    # and this LF pairs with that CR: no extra blank line, nothing pending
    assert decoder.feed(b"\n") == []
    assert decoder.close() == []


def test_cr_then_cr_across_reads_is_two_line_ends() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\r") == [SseEvent("x")]


def test_event_split_at_every_byte_boundary() -> None:
    data = b'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
    expected = [SseEvent('{"type":"message_start"}', "message_start")]
    for cut in range(len(data) + 1):
        assert decode([data[:cut], data[cut:]]) == expected, cut


def test_multi_line_data_joined_with_newline() -> None:
    assert decode([b"data: first\ndata:second\ndata:  third\ndata\n\n"]) == [
        SseEvent("first\nsecond\n third\n")
    ]


def test_only_one_space_after_the_colon_is_stripped() -> None:
    assert decode([b"data:  two spaces\n\nevent:  e\ndata:x\n\n"]) == [
        SseEvent(" two spaces"),
        SseEvent("x", " e"),
    ]


def test_comments_and_known_ignored_fields_are_skipped() -> None:
    data = b": keep-alive\nid: 42\nretry: 1000\ndata: payload\n:another comment\n\n"
    assert decode([data]) == [SseEvent("payload")]


def test_blank_lines_without_data_dispatch_nothing_and_reset_the_name() -> None:
    data = b"\n\nevent: orphan\n\ndata: plain\n\n"
    assert decode([data]) == [SseEvent("plain")]


def test_empty_event_name_means_no_name() -> None:
    assert decode([b"event:\ndata: x\n\n"]) == [SseEvent("x")]


def test_utf8_split_inside_a_character() -> None:
    data = "data: café 😊 naïve\n\n".encode()
    emoji_at = data.index("😊".encode())
    for cut in range(emoji_at, emoji_at + 4):
        assert decode([data[:cut], data[cut:]]) == [SseEvent("café 😊 naïve")], cut
    assert decode(one_byte(data)) == [SseEvent("café 😊 naïve")]


def test_close_flushes_a_pending_event_and_a_last_line_without_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: complete\n\ndata: one\ndata: tw") == [SseEvent("complete")]
    assert decoder.close() == [SseEvent("one\ntw")]
    assert decoder.close() == []


def test_close_without_pending_data_yields_nothing() -> None:
    decoder = SseDecoder()
    decoder.feed(b"event: lonely\n")
    assert decoder.close() == []


def test_decoder_is_reusable_after_close() -> None:
    decoder = SseDecoder()
    decoder.feed(b"data: a\r")
    decoder.close()
    assert decoder.feed(b"\ndata: b\n\n") == [SseEvent("b")]


def test_byte_order_mark_at_start_is_dropped() -> None:
    assert decode([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [SseEvent("x")]


def test_non_sse_lines_are_reported_for_bare_json() -> None:
    data = b'data: ok\n\n{\n  "error": {\n    "code": 503\n  }\n}\n'
    assert decode([data]) == [
        SseEvent("ok"),
        SseEvent("{", NON_SSE_LINE),
        SseEvent('  "error": {', NON_SSE_LINE),
        SseEvent('    "code": 503', NON_SSE_LINE),
        SseEvent("  }", NON_SSE_LINE),
        SseEvent("}", NON_SSE_LINE),
    ]


def test_gemini_crlf_stream_yields_both_events_at_any_split() -> None:
    data = fixture_bytes("google", "stream_basic.txt")
    assert b"\r\n\r\n" in data
    whole = decode([data])
    assert len(whole) == 2
    assert all(e.event is None and e.data.startswith('{"candidates"') for e in whole)
    assert decode(one_byte(data)) == whole
    for seed in range(20):
        assert decode(random_reads(data, seed)) == whole


def test_anthropic_stream_keeps_event_names() -> None:
    events = decode([fixture_bytes("anthropic", "stream_basic.txt")])
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2].data == '{"type": "ping"}'


def test_long_line_in_many_small_reads() -> None:
    payload = "x" * 100_000
    data = f"data: {payload}\n\n".encode()
    assert decode(chunks(data, [7] * (len(data) // 7 + 1))) == [SseEvent(payload)]


def test_many_events_in_one_read() -> None:
    data = b"".join(f"data: {i}\n\n".encode() for i in range(1000))
    assert [e.data for e in decode([data])] == [str(i) for i in range(1000)]


def test_ndjson_decoder_splits_lines_across_reads() -> None:
    from flyllm._wire import NdjsonDecoder, decoder_for

    decoder = NdjsonDecoder()
    raw = '{"a": 1}\n\n{"b": "é"}\r\n{"c": 3}'.encode()
    events = [e for i in range(len(raw)) for e in decoder.feed(raw[i : i + 1])]
    events += decoder.close()
    assert [e.data for e in events] == ['{"a": 1}', '{"b": "é"}', '{"c": 3}']
    assert isinstance(decoder_for("ndjson"), NdjsonDecoder)
    with pytest.raises(ValueError, match="framing"):
        decoder_for("xml")


def test_an_event_of_many_data_lines_decodes_in_linear_time() -> None:
    """A hostile server's event of 400,000 data lines (within any size limit) once cost time
    quadratic in its length, blocking the event loop (and so every timer) for seconds."""
    lines = 400_000
    data = b"data: x\n" * lines + b"\n"
    decoder = SseDecoder()
    started = time.perf_counter()
    events = [
        e for read in chunks(data, [65536] * (len(data) // 65536)) for e in decoder.feed(read)
    ]
    assert time.perf_counter() - started < 1.0
    assert events == [SseEvent("\n".join(["x"] * lines))]


def test_an_endless_ndjson_line_decodes_in_linear_time() -> None:
    decoder = NdjsonDecoder()
    started = time.perf_counter()
    for _ in range(4000):  # 16 MB of one line, 4 KB per read
        assert decoder.feed(b"x" * 4096) == []
    assert decoder.feed(b'\n{"a": 1}\n') == [SseEvent("x" * 4096 * 4000), SseEvent('{"a": 1}')]
    assert time.perf_counter() - started < 1.0
    assert decoder.close() == []
