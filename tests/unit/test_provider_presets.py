"""OpenAI-compatible presets: each service's name, URL, parameter differences, stream usage
placement and error shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flyllm.errors import (
    ContentFilterError,
    ContextLengthError,
    ProviderError,
    QuotaError,
    ServerError,
    StreamInterruptedError,
)
from flyllm.providers import get_provider
from flyllm.providers.base import Endpoint, HttpRequest, HttpResponse, SseEvent
from flyllm.providers.openai import OpenAIProvider
from flyllm.providers.presets import PRESETS, Preset, preset_for
from flyllm.types import Message, ProviderType, Usage
from tests.fixtures import API_KEY, fixture_bytes, one_byte, random_reads, replay, response

CHAT = [Message("user", "Hello")]
ALL = {"max_tokens": 10, "temperature": 0.5, "top_k": 5, "stop": list("abcdef"), "seed": 3}


def build(kind: ProviderType, params: dict[str, Any], *, stream: bool = False) -> HttpRequest:
    provider = get_provider(kind)
    return provider.build(Endpoint("m", API_KEY, provider.default_base_url), CHAT, params,
                          stream=stream)  # fmt: skip


def body_of(request: HttpRequest) -> dict[str, Any]:
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


# (kind, url, max_tokens field, stop sent, top_k sent, seed sent, stream_options sent)
TABLE = [
    (ProviderType.GROQ, "https://api.groq.com/openai/v1/chat/completions",
     "max_completion_tokens", list("abcd"), False, True, False),
    (ProviderType.TOGETHER, "https://api.together.xyz/v1/chat/completions",
     "max_tokens", list("abcdef"), True, True, False),
    (ProviderType.PERPLEXITY, "https://api.perplexity.ai/chat/completions",
     "max_tokens", None, True, False, False),
    (ProviderType.DEEPSEEK, "https://api.deepseek.com/chat/completions",
     "max_tokens", list("abcdef"), False, False, True),
    (ProviderType.OPENROUTER, "https://openrouter.ai/api/v1/chat/completions",
     "max_tokens", list("abcdef"), True, True, False),
    (ProviderType.FIREWORKS, "https://api.fireworks.ai/inference/v1/chat/completions",
     "max_tokens", list("abcdef"), True, True, False),
    (ProviderType.LMSTUDIO, "http://localhost:1234/v1/chat/completions",
     "max_tokens", list("abcdef"), True, True, True),
    (ProviderType.VLLM, "http://localhost:8000/v1/chat/completions",
     "max_tokens", list("abcdef"), True, True, True),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "url", "field", "stop", "top_k", "seed", "stream_options"), TABLE)
def test_each_preset_on_the_wire(
    kind: ProviderType,
    url: str,
    field: str,
    stop: list[str] | None,
    top_k: bool,
    seed: bool,
    stream_options: bool,
) -> None:
    request = build(kind, ALL, stream=True)
    body = body_of(request)
    assert request.url == url
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert body[field] == 10 and {"max_tokens", "max_completion_tokens"} - {field} - set(body)
    assert body.get("stop") == stop
    assert ("top_k" in body) is top_k and ("seed" in body) is seed
    assert ("stream_options" in body) is stream_options
    dropped = [n for n in request.notes if n.endswith("left out")]
    assert len(dropped) == (not top_k) + (not seed) + (stop is None)
    assert get_provider(kind).name == kind.value


def test_presets_are_data_and_the_table_covers_every_one() -> None:
    assert {row[0] for row in TABLE} == {p.kind for p in PRESETS}
    assert preset_for(ProviderType.GROQ) == PRESETS[0]
    assert preset_for(ProviderType.OPENAI) is None
    custom = Preset(ProviderType.OPENAI_COMPATIBLE, "http://127.0.0.1:1/v1", max_stop=1)
    provider = custom.provider()
    assert isinstance(provider, OpenAIProvider) and provider.name == "openai_compatible"
    sent = body_of(provider.build(Endpoint("m", "", ""), CHAT, {"stop": ["x", "y"]}))
    assert sent["stop"] == ["x"]


def test_local_presets_send_no_authorization_without_a_key() -> None:
    for kind in (ProviderType.LMSTUDIO, ProviderType.VLLM):
        provider = get_provider(kind)
        request = provider.build(Endpoint("m", "", provider.default_base_url), CHAT, {})
        assert "authorization" not in request.headers


# --- streams --------------------------------------------------------------------------------


def _runs(kind: ProviderType, name: str) -> list[Any]:
    data = fixture_bytes("presets", name)
    parser = get_provider(kind).stream_parser
    runs = [replay(parser(), [data]), replay(parser(), one_byte(data))]
    return runs + [replay(parser(), random_reads(data, seed)) for seed in range(10)]


@pytest.mark.parametrize(
    ("kind", "name", "text", "usage"),
    [
        (ProviderType.GROQ, "groq_stream.txt", "Fast inference.", Usage(40, 3, 43, 0)),
        (ProviderType.TOGETHER, "together_stream.txt", "Hi there!", Usage(39, 3, 42, 0)),
        (
            ProviderType.PERPLEXITY,
            "perplexity_stream.txt",
            "Why did the dog sit in the shade? To avoid being a hot dog.",
            Usage(7, 14, 21, 0),
        ),
    ],
)
def test_stream_usage_wherever_the_service_puts_it(
    kind: ProviderType, name: str, text: str, usage: Usage
) -> None:
    runs = _runs(kind, name)
    for run in runs:
        assert run.error is None and run.completion is not None and run.done
        assert run.completion.content == text and run.completion.usage == usage
        assert run.completion.finish_reason == "stop"
        assert run.deltas == runs[0].deltas


def test_perplexity_without_a_finish_is_interrupted_but_others_need_done() -> None:
    for run in _runs(ProviderType.PERPLEXITY, "perplexity_truncated.txt"):
        assert type(run.error) is StreamInterruptedError
        assert run.error.partial_content == "Why did the dog sit in the shade?"
    groq = get_provider(ProviderType.GROQ).stream_parser()
    finish = '{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}'
    groq.feed(SseEvent(finish))
    assert not groq.done  # groq sends [DONE]; a finish alone does not end its stream
    with pytest.raises(StreamInterruptedError):
        groq.finish()


def test_openrouter_mid_stream_error_and_comments() -> None:
    for run in _runs(ProviderType.OPENROUTER, "openrouter_stream_error.txt"):
        assert type(run.error) is ServerError
        assert run.error.message == "Provider disconnected unexpectedly"
        assert run.error.partial_content == "Partial" and run.error.provider == "openrouter"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "name", "cls"),
    [
        (ProviderType.OPENROUTER, 402, "openrouter_error_402.json", QuotaError),
        (ProviderType.OPENROUTER, 403, "openrouter_error_moderation.json", ContentFilterError),
        (ProviderType.DEEPSEEK, 402, "deepseek_error_402.json", QuotaError),
        (ProviderType.GROQ, 400, "groq_error_context.json", ContextLengthError),
    ],
)
def test_service_error_shapes(
    kind: ProviderType, status: int, name: str, cls: type[ProviderError]
) -> None:
    err = get_provider(kind).classify_error(response("presets", name, status))
    assert type(err) is cls and err.provider == kind.value and err.status == status


def test_numeric_error_codes_inside_a_stream_give_the_kind() -> None:
    parser = get_provider(ProviderType.OPENROUTER).stream_parser()
    with pytest.raises(QuotaError):
        parser.feed(SseEvent('{"error":{"code":402,"message":"Insufficient credits"}}'))
    vllm = get_provider(ProviderType.VLLM)
    err = vllm.classify_error(
        HttpResponse(400, {}, b'{"object":"error","message":"This model\'s maximum context '
                     b'length is 4096 tokens.","type":"BadRequestError","code":400}')
    )  # fmt: skip
    assert type(err) is ContextLengthError
