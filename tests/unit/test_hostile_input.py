"""Property tests: whatever a provider (or something pretending to be one) answers, parsing
ends in a result or a ProviderError, never KeyError, IndexError, TypeError or a hang."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyllm.errors import ProviderError
from flyllm.providers import get_provider
from flyllm.providers.base import HttpResponse, SseEvent
from flyllm.sse import NdjsonDecoder, SseDecoder
from flyllm.types import ProviderType

PROVIDERS = [get_provider(kind) for kind in ProviderType]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["choices", "message", "content", "candidates", "parts", "text", "usage", "error",
             "type", "delta", "index", "finish_reason", "stop_reason", "finishReason",
             "usageMetadata", "promptFeedback", "message_start", "content_block_delta",
             "input_tokens", "output_tokens", "prompt_tokens", "detail", "code", "status",
             "done", "eval_count", "tokens", "billed_units", "refusal", "model"]
        ) | st.text(max_size=8),
        children,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip

statuses = st.sampled_from(
    [200, 201, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 529]
)


def _outcome(call: Any) -> None:
    with contextlib.suppress(ProviderError):
        call()


@SETTINGS
@given(body=st.binary(max_size=300), status=statuses)
def test_parse_survives_arbitrary_bytes(body: bytes, status: int) -> None:
    for provider in PROVIDERS:
        _outcome(lambda p=provider: p.parse(HttpResponse(status, {}, body)))


@SETTINGS
@given(value=json_values, status=statuses, retry_after=st.text(max_size=12))
def test_parse_and_classify_survive_arbitrary_json(
    value: Any, status: int, retry_after: str
) -> None:
    body = json.dumps(value).encode()
    headers = {"retry-after": retry_after, "x-should-retry": retry_after}
    for provider in PROVIDERS:
        _outcome(lambda p=provider: p.parse(HttpResponse(status, headers, body)))
        if status >= 400:
            assert isinstance(
                provider.classify_error(HttpResponse(status, headers, body)), ProviderError
            )


@SETTINGS
@given(
    events=st.lists(
        st.tuples(
            st.one_of(
                st.none(),
                st.sampled_from(
                    [
                        "message_start",
                        "content_block_delta",
                        "message_delta",
                        "message_stop",
                        "error",
                        "ping",
                        "content-delta",
                        "message-end",
                    ]
                ),
            ),
            st.one_of(json_values.map(json.dumps), st.text(max_size=40), st.just("[DONE]")),
        ),
        max_size=8,
    )
)
def test_stream_parsers_survive_arbitrary_events(events: list[tuple[str | None, str]]) -> None:
    for provider in PROVIDERS:
        parser = provider.stream_parser()

        def run(parser: Any = parser) -> None:
            for name, data in events:
                assert isinstance(parser.feed(SseEvent(data, name)), str)
            parser.finish()

        _outcome(run)


@SETTINGS
@given(chunks=st.lists(st.binary(max_size=64), max_size=10))
def test_decoders_survive_arbitrary_bytes(chunks: list[bytes]) -> None:
    for decoder in (SseDecoder(), NdjsonDecoder()):
        for chunk in chunks:
            assert isinstance(decoder.feed(chunk), list)
        assert isinstance(decoder.close(), list)
