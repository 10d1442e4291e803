"""Property tests: whatever a provider (or something pretending to be one) answers, parsing
ends in a result or a ProviderError, never KeyError, IndexError, TypeError or a hang; a field
of the wrong type is never read as an empty success; an echoed key never reaches an error."""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flyllm._wire import NdjsonDecoder, SseDecoder
from flyllm.errors import ProviderError
from flyllm.providers import get_provider
from flyllm.providers.base import Endpoint, HttpResponse, SseEvent
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


# --- answer SHAPES: a valid answer with one field of the wrong JSON type -----------------------
#
# Each template is a correct answer whose text is "fine". A "slot" on the text's path has a
# kind; any value of another JSON type there must end in a ProviderError (never an empty
# success). Any value at a "free" slot (usage, model, finish reason, ids) must end in the
# text "fine" with plausible counts, or a ProviderError.

Path = tuple[str | int, ...]

scalars = st.integers() | st.floats(allow_nan=False) | st.booleans()
json_lists = st.lists(json_values, max_size=3)
json_dicts = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "object": scalars | st.text(max_size=8) | json_lists,
    "list": scalars | st.text(max_size=8) | json_dicts,
    "string": scalars | json_lists | json_dicts | st.none(),
    "string_or_none": scalars | json_lists | json_dicts,
    "text": scalars | json_dicts | st.lists(scalars | st.text(max_size=4), min_size=1, max_size=3),
    "index": st.floats(allow_nan=False) | st.booleans() | st.text(max_size=4) | json_dicts,
}
FINE_USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def _chat(text_at: Any = "fine") -> dict[str, Any]:
    return {"id": "x", "model": "m", "usage": FINE_USAGE,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text_at}}]}  # fmt: skip


CHAT_TEXT: list[tuple[Path, str]] = [
    (("choices",), "list"), (("choices", 0), "object"), (("choices", 0, "message"), "object"),
    (("choices", 0, "message", "content"), "text"),
]  # fmt: skip
CHAT_FREE: list[Path] = [
    ("id",), ("model",), ("usage",), ("usage", "prompt_tokens"), ("usage", "completion_tokens"),
    ("usage", "total_tokens"), ("choices", 0, "finish_reason"), ("choices", 0, "message", "role"),
]  # fmt: skip
BODIES: dict[str, tuple[dict[str, Any], list[tuple[Path, str]], list[Path]]] = {
    "openai": (_chat(), CHAT_TEXT, CHAT_FREE),
    "mistral": (_chat([{"type": "text", "text": "fine"}]),
                [*CHAT_TEXT, (("choices", 0, "message", "content", 0), "object"),
                 (("choices", 0, "message", "content", 0, "type"), "string"),
                 (("choices", 0, "message", "content", 0, "text"), "string")], CHAT_FREE),
    "anthropic": ({"type": "message", "id": "x", "model": "m", "stop_reason": "end_turn",
                   "content": [{"type": "text", "text": "fine"}],
                   "usage": {"input_tokens": 3, "output_tokens": 2}},
                  [(("content",), "list"), (("content", 0), "object"),
                   (("content", 0, "type"), "string"), (("content", 0, "text"), "string")],
                  [("id",), ("model",), ("stop_reason",), ("usage",),
                   ("usage", "input_tokens"), ("usage", "output_tokens")]),
    "google": ({"candidates": [{"index": 0, "finishReason": "STOP",
                                "content": {"role": "model", "parts": [{"text": "fine"}]}}],
                "modelVersion": "m", "usageMetadata": {"promptTokenCount": 3,
                                                       "candidatesTokenCount": 2}},
               [(("candidates",), "list"), (("candidates", 0), "object"),
                (("candidates", 0, "content"), "object"),
                (("candidates", 0, "content", "parts"), "list"),
                (("candidates", 0, "content", "parts", 0), "object"),
                (("candidates", 0, "content", "parts", 0, "text"), "string_or_none")],
               [("modelVersion",), ("usageMetadata",), ("usageMetadata", "promptTokenCount"),
                ("usageMetadata", "candidatesTokenCount"), ("candidates", 0, "finishReason"),
                ("candidates", 0, "index"), ("candidates", 0, "content", "role")]),
    "cohere": ({"id": "x", "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [{"type": "text", "text": "fine"}]},
                "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2}}},
               [(("message",), "object"), (("message", "content"), "text"),
                (("message", "content", 0), "object"),
                (("message", "content", 0, "type"), "string"),
                (("message", "content", 0, "text"), "string")],
               [("id",), ("finish_reason",), ("usage",), ("usage", "billed_units"),
                ("usage", "billed_units", "input_tokens"), ("message", "role")]),
    "ollama": ({"model": "m", "done": True, "done_reason": "stop", "prompt_eval_count": 3,
                "eval_count": 2, "message": {"role": "assistant", "content": "fine"}},
               [(("message",), "object"), (("message", "content"), "string_or_none")],
               [("model",), ("done",), ("done_reason",), ("prompt_eval_count",),
                ("eval_count",), ("message", "role")]),
}  # fmt: skip
BODIES["azure"] = BODIES["groq"] = BODIES["openai"]


def _set(obj: Any, path: Path, value: Any) -> Any:
    """A deep copy of ``obj`` with the value at ``path`` replaced."""
    copy = json.loads(json.dumps(obj))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _plausible(usage: Any) -> bool:
    fields = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
              usage.cached_tokens)  # fmt: skip
    return all(type(n) is int and 0 <= n <= 4_000_000_000 for n in fields)


@st.composite
def wrong_slot(draw: st.DrawFn, table: dict[str, Any]) -> tuple[str, Path, Any]:
    provider = draw(st.sampled_from(sorted(table)))
    path, kind = draw(st.sampled_from(table[provider][-2]))
    return provider, path, draw(WRONG[kind])


@st.composite
def free_slot(draw: st.DrawFn, table: dict[str, Any]) -> tuple[str, Path, Any]:
    provider = draw(st.sampled_from(sorted(table)))
    return provider, draw(st.sampled_from(table[provider][-1])), draw(json_values)


@SETTINGS
@given(case=wrong_slot(BODIES))
def test_a_wrong_type_on_the_text_path_is_a_provider_error(case: tuple[str, Path, Any]) -> None:
    provider, path, value = case
    body = json.dumps(_set(BODIES[provider][0], path, value)).encode()
    try:
        completion = get_provider(provider).parse(HttpResponse(200, {}, body))
    except ProviderError:
        return
    raise AssertionError(f"{provider}: {path}={value!r} gave success {completion.content!r}")


@SETTINGS
@given(case=free_slot(BODIES))
def test_any_value_elsewhere_keeps_the_text_or_is_a_provider_error(
    case: tuple[str, Path, Any],
) -> None:
    provider, path, value = case
    body = json.dumps(_set(BODIES[provider][0], path, value)).encode()
    try:
        completion = get_provider(provider).parse(HttpResponse(200, {}, body))
    except ProviderError:
        return
    assert completion.content == "fine", (provider, path, value)
    assert _plausible(completion.usage), (provider, path, value, completion.usage)
    assert completion.model is None or isinstance(completion.model, str)


def _sse(events: list[dict[str, Any]], names: list[str | None] | None = None) -> list[SseEvent]:
    names = names or [None] * len(events)
    return [SseEvent(json.dumps(e), n) for e, n in zip(events, names, strict=True)]


_CHAT_CHUNKS: list[dict[str, Any]] = [
    {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                  "content": ""}}]},
    {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": "fine"}}]},
    {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"id": "x", "model": "m", "choices": [], "usage": FINE_USAGE},
]  # fmt: skip
# provider -> (events, event names, index of the event with the text, text slots, free slots)
STREAMS: dict[str, tuple[list[dict[str, Any]], list[str | None], int,
                         list[tuple[Path, str]], list[Path]]] = {
    "openai": (_CHAT_CHUNKS, [None] * 4, 1,
               [(("choices",), "list"), (("choices", 0), "object"),
                (("choices", 0, "delta"), "object"), (("choices", 0, "delta", "content"), "text"),
                (("choices", 0, "index"), "index")],
               [("id",), ("model",), ("usage",)]),
    "anthropic": ([{"type": "message_start", "message": {"model": "m", "usage": {
                       "input_tokens": 3, "output_tokens": 1}}},
                   {"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": "fine"}},
                   {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 2}},
                   {"type": "message_stop"}],
                  ["message_start", "content_block_delta", "message_delta", "message_stop"], 1,
                  [(("delta",), "object"), (("delta", "type"), "string"),
                   (("delta", "text"), "string")],
                  [("index",), ("type",)]),
    "google": ([{"candidates": [{"content": {"role": "model", "parts": [{"text": "fine"}]}}],
                 "modelVersion": "m"},
                {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                 "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}],
               [None, None], 0,
               [(("candidates",), "list"), (("candidates", 0), "object"),
                (("candidates", 0, "content"), "object"),
                (("candidates", 0, "content", "parts"), "list"),
                (("candidates", 0, "content", "parts", 0), "object"),
                (("candidates", 0, "content", "parts", 0, "text"), "string_or_none")],
               [("modelVersion",), ("usageMetadata",), ("candidates", 0, "content", "role")]),
    "cohere": ([{"type": "message-start", "id": "x"},
                {"type": "content-delta", "index": 0,
                 "delta": {"message": {"content": {"type": "text", "text": "fine"}}}},
                {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": {
                    "billed_units": {"input_tokens": 3, "output_tokens": 2}}}}],
               ["message-start", "content-delta", "message-end"], 1,
               [(("delta",), "object"), (("delta", "message"), "object"),
                (("delta", "message", "content"), "object"),
                (("delta", "message", "content", "text"), "string_or_none")],
               [("index",), ("type",), ("delta", "message", "content", "type")]),
    "ollama": ([{"model": "m", "message": {"role": "assistant", "content": "fine"},
                 "done": False},
                {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
                 "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}],
               [None, None], 0,
               [(("message",), "object"), (("message", "content"), "string_or_none")],
               [("model",), ("message", "role")]),
}  # fmt: skip
STREAMS["mistral"] = STREAMS["groq"] = STREAMS["openai"]


def _replay(provider: str, path: Path, value: Any) -> str:
    """The streamed text of the template with one slot of its text event replaced."""
    events, names, at, _, _ = STREAMS[provider]
    events = [_set(e, path, value) if i == at else e for i, e in enumerate(events)]
    parser = get_provider(provider).stream_parser()
    texts = [str(parser.feed(event)) for event in _sse(events, names)]
    if provider in ("openai", "mistral", "groq"):
        texts.append(str(parser.feed(SseEvent("[DONE]"))))
    completion = parser.finish()
    assert "".join(texts) == completion.content
    assert _plausible(completion.usage)
    return completion.content


@SETTINGS
@given(case=wrong_slot(STREAMS))
def test_a_wrong_type_in_a_stream_event_is_a_provider_error(case: tuple[str, Path, Any]) -> None:
    provider, path, value = case
    try:
        text = _replay(provider, path, value)
    except ProviderError:
        return
    raise AssertionError(f"{provider}: {path}={value!r} streamed success {text!r}")


@SETTINGS
@given(case=free_slot(STREAMS))
def test_any_value_elsewhere_in_a_stream_keeps_the_text(case: tuple[str, Path, Any]) -> None:
    provider, path, value = case
    with contextlib.suppress(ProviderError):
        assert _replay(provider, path, value) == "fine", (provider, path, value)


@pytest.mark.parametrize("provider", sorted(BODIES))
def test_the_templates_themselves_are_fine(provider: str) -> None:
    body = json.dumps(BODIES[provider][0]).encode()
    assert get_provider(provider).parse(HttpResponse(200, {}, body)).content == "fine"
    if provider in STREAMS:
        assert _replay(provider, ("_",), None) == "fine"


# --- the instance's key, echoed anywhere in any body -------------------------------------------


@SETTINGS
@given(
    before=st.text(max_size=300),
    after=st.text(max_size=40),
    status=statuses,
    as_json=st.booleans(),
    in_header=st.booleans(),
)
def test_an_echoed_key_never_reaches_an_error(
    before: str, after: str, status: int, as_json: bool, in_header: bool
) -> None:
    key = "K" + secrets.token_hex(16)  # never something hypothesis could have drawn
    endpoint = Endpoint(
        "m", "" if in_header else key, "http://127.0.0.1:1",
        headers={"X-Portkey-Api-Key": key} if in_header else {},
    )  # fmt: skip
    text = before + key + after
    body = json.dumps({"error": {"message": text}, "message": text}) if as_json else text
    response = HttpResponse(status, {}, body.encode())
    for provider in PROVIDERS:
        errors: list[ProviderError] = []
        try:
            provider.parse(response, endpoint)
        except ProviderError as err:
            errors.append(err)
        if status >= 400:
            errors.append(provider.classify_error(response, endpoint))
        for error in errors:
            shown = str(error) + repr(error)
            if key[:12] in shown:  # pytrace=False: the output never shows it
                pytest.fail(f"{provider.name}: the key leaked into an error", pytrace=False)
