"""Every recorded stream, replayed whole, one byte per read and at random (seeded) read sizes,
must give exactly the same deltas, completion or error: the decoder and the parsers must not
depend on how the network cuts the bytes."""

from __future__ import annotations

import pytest

from flyllm.errors import (
    ContentFilterError,
    OverloadedError,
    ProviderError,
    ServerError,
    StreamInterruptedError,
)
from flyllm.providers import get_provider
from flyllm.types import Usage
from tests.fixtures import Replay, fixture_bytes, one_byte, random_reads, replay

COMPLETE = [
    ("openai", "stream_basic.txt", "stop", Usage(14, 30, 44, 0)),
    ("openai_compatible", "stream_basic.txt", "stop", Usage(14, 30, 44, 0)),
    ("anthropic", "stream_basic.txt", "stop", Usage(11, 6, 17, 0)),
    ("anthropic", "stream_thinking.txt", "stop", Usage(336, 57, 393, 300)),
    ("anthropic", "stream_tool_use.txt", "tool_calls", Usage(472, 89, 561, 0)),
    ("google", "stream_basic.txt", "stop", Usage(51, 2, 53, 0)),
    ("google", "stream_thought.txt", "stop", Usage(9, 140, 149, 0)),
    ("google", "stream_old_model.txt", "stop", Usage(6, 10, 16, 0)),
    ("mistral", "stream.txt", "stop", Usage(13, 8, 21, 0)),
]

FAILING: list[tuple[str, str, type[ProviderError], str]] = [
    ("openai", "stream_truncated.txt", StreamInterruptedError, "I'm just a computer program,"),
    ("openai", "stream_error.txt", ServerError, "I'm just a"),
    ("openai", "stream_refusal.txt", ContentFilterError, ""),
    ("anthropic", "stream_truncated.txt", StreamInterruptedError, "Hello wor"),
    ("anthropic", "stream_error.txt", OverloadedError, "Hello"),
    ("google", "stream_truncated.txt", StreamInterruptedError, "Four score"),
    ("google", "stream_bare_error.txt", OverloadedError, "The answer"),
    ("google", "stream_data_error.txt", ServerError, "The answer"),
    ("google", "stream_blocked.txt", ContentFilterError, ""),
    ("mistral", "stream_truncated.txt", StreamInterruptedError, "Hello! How can"),
    ("mistral", "stream_finish_error.txt", ServerError, "Hello!"),
]


def fixture_dir(provider: str) -> str:
    return "openai" if provider == "openai_compatible" else provider


def all_replays(provider: str, name: str) -> list[Replay]:
    data = fixture_bytes(fixture_dir(provider), name)
    parser_for = get_provider(provider).stream_parser
    runs = [replay(parser_for(), [data]), replay(parser_for(), one_byte(data))]
    runs += [replay(parser_for(), random_reads(data, seed)) for seed in range(25)]
    return runs


@pytest.mark.parametrize(("provider", "name", "finish", "usage"), COMPLETE)
def test_complete_streams_are_split_independent(
    provider: str, name: str, finish: str, usage: Usage
) -> None:
    runs = all_replays(provider, name)
    first = runs[0]
    assert first.error is None
    assert first.completion is not None
    assert first.done
    assert first.completion.content == first.text
    assert first.completion.finish_reason == finish
    assert first.completion.usage == usage
    for run in runs[1:]:
        assert run.deltas == first.deltas
        assert run.completion == first.completion


@pytest.mark.parametrize(("provider", "name", "cls", "partial"), FAILING)
def test_failing_streams_are_split_independent(
    provider: str, name: str, cls: type[ProviderError], partial: str
) -> None:
    for run in all_replays(provider, name):
        assert type(run.error) is cls
        assert run.completion is None
        assert run.text == partial
        assert run.error.partial_content == partial
        assert run.error.provider == provider
        assert run.error.status == 200
