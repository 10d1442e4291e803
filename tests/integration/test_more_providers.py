"""The manager against the emulator for every provider added by "More providers": Azure
OpenAI, Ollama, Cohere and the OpenAI-compatible presets. The same checks as the first four:
routing by task, parameters on the wire, streaming (text and usage equal the non-streamed
answer), usage tracking, and every error kind of test_failover."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flyllm import (
    AllAttemptsFailedError,
    ContentFilterError,
    ContextLengthError,
    GenerationRequest,
    LlmManager,
    ProviderError,
    ServerError,
    StreamInterruptedError,
    TaskDefinition,
    Usage,
)
from flyllm.emulator import Emulator, Fault
from tests.integration.conftest import SLEEPS, EmulatorFactory, body

PRESETS = ["groq", "together", "perplexity", "deepseek", "openrouter", "fireworks", "lmstudio",
           "vllm"]  # fmt: skip
PROVIDERS = ["azure", "ollama", "cohere", *PRESETS]
FAULTS = [
    ("rate_limit", "rate_limit"),
    ("server_error", "server"),
    ("bad_gateway", "server"),
    ("unavailable", "overloaded"),
    ("overloaded", "overloaded"),
    ("reset", "connection"),
    ("malformed", "malformed_response"),
    ("quota", "quota"),
    ("unauthorized", "authentication"),
]


async def _pair(
    provider: str, manager: LlmManager, emulators: EmulatorFactory, **kwargs: Any
) -> tuple[Emulator, Emulator]:
    first, second = await emulators(provider, **kwargs), await emulators(provider)
    manager.add_provider(provider, "k-first", "model-a", base_url=first.base_url)
    manager.add_provider(provider, "k-second", "model-b", base_url=second.base_url)
    return first, second


@pytest.mark.parametrize(("fault", "kind"), FAULTS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_failure_kind_fails_over(
    provider: str,
    fault: str,
    kind: str,
    manager: LlmManager,
    emulators: EmulatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad, _ = await _pair(provider, manager, emulators)
    bad.schedule(fault, count=1)
    with caplog.at_level(logging.WARNING, logger="flyllm"):
        response = await manager.generate(GenerationRequest(prompt="hello"))
    assert response.success and response.instance_id == 1 and response.attempts == 2
    assert response.provider == provider
    usage = {u.id: u for u in manager.token_usage()}
    assert usage[0].failures == 1 and usage[0].provider == provider
    assert usage[1].total_tokens == response.usage.total_tokens > 0
    assert SLEEPS == [] and bad.stats()["faults_injected"] == {fault: 1}
    (failover,) = [r.getMessage() for r in caplog.records if "failing over" in r.getMessage()]
    assert f"instance 0, {provider}" in failover and f"{kind}:" in failover


@pytest.mark.parametrize("provider", ["azure", "ollama", "cohere", "groq", "perplexity"])
async def test_when_every_attempt_fails_each_error_is_kept_without_keys(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emus = [await emulators(provider, faults=[Fault("server_error")]) for _ in range(2)]
    for i, emu in enumerate(emus):
        manager.add_provider(provider, f"secret-key-{i}", "m", base_url=emu.base_url)
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(GenerationRequest(prompt="hello", max_attempts=2))
    attempts = caught.value.attempts
    assert [(a.kind.value, a.instance_id, a.provider) for a in attempts] == [
        ("server", 0, provider),
        ("server", 1, provider),
    ]
    assert all(a.status == 500 and a.message for a in attempts)
    assert "secret-key" not in str(caught.value) + "".join(map(repr, attempts))


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_request_errors_return_at_once(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    first, second = await _pair(provider, manager, emulators)
    with pytest.raises(ContextLengthError) as too_long:
        await manager.generate(GenerationRequest(prompt="[[context_length]] a long prompt"))
    assert too_long.value.instance_id == 0 and too_long.value.status == 400
    assert second.stats()["requests"] == 0
    if provider == "azure":  # Azure's prompt filter; the others have no refusal on the wire
        with pytest.raises(ContentFilterError, match="content management policy"):
            await manager.generate(GenerationRequest(prompt="[[refusal]] do something bad"))
        assert first.stats()["requests"] + second.stats()["requests"] == 2  # no failover


async def test_rate_limit_hints_are_honoured(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    for provider in ("azure", "ollama"):
        emu = await emulators(provider)
        manager.add_provider(provider, "k", "m", base_url=emu.base_url)
        emu.schedule(Fault("rate_limit", retry_after=2.0))
    responses = await manager.generate_sequentially([GenerationRequest(prompt="x")] * 2)
    assert all(r.success for r in responses)
    assert [pytest.approx(2.0)] == SLEEPS  # both limited once; the new round waited the hint


# --- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_stream_text_and_usage_match_the_plain_answer(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators(provider)
    manager.add_provider(provider, "k", "model-x", base_url=emu.base_url)
    request = GenerationRequest(prompt="tell me a story", params={"max_tokens": 25})
    plain = await manager.generate(request)
    async with manager.stream(request) as stream:
        chunks = [chunk async for chunk in stream]
    final = stream.response
    assert "".join(c.text for c in chunks) == plain.content == final.content
    assert len([c for c in chunks if c.text]) > 5
    assert chunks[-1].finish_reason == plain.finish_reason == "length"
    assert chunks[-1].usage == plain.usage == final.usage and plain.usage.completion_tokens == 25
    assert {(c.instance_id, c.provider, c.model) for c in chunks} == {(0, provider, "model-x")}
    usage = manager.token_usage()[0]
    assert usage.requests == 2 and usage.total_tokens == 2 * plain.usage.total_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "fault", ["rate_limit", "server_error", "overloaded", "stream_error", "stream_cut", "malformed"]
)
async def test_stream_errors_before_the_first_chunk_fail_over(
    provider: str, fault: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad, _ = await _pair(provider, manager, emulators)
    bad.schedule(Fault(fault, after_chunks=0), count=1)
    async with manager.stream(GenerationRequest(prompt="hello there")) as stream:
        text = "".join([chunk.text async for chunk in stream])
    plain = await manager.generate(GenerationRequest(prompt="hello there"))
    assert text == plain.content
    assert stream.response.instance_id == 1 and stream.response.attempts == 2
    assert bad.stats()["faults_injected"] == {fault: 1}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["stream_cut", "stream_error"])
async def test_stream_faults_after_text_raise_with_the_partial_content(
    provider: str, fault: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    bad, other = await _pair(provider, manager, emulators, reply_tokens=30)
    bad.set_faults([Fault(fault, after_chunks=3)])
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async with manager.stream(GenerationRequest(prompt="long answer")) as stream:
            async for chunk in stream:
                received.append(chunk.text)
    expected = StreamInterruptedError if fault == "stream_cut" else ServerError
    assert type(caught.value) is expected and caught.value.instance_id == 0
    assert len([t for t in received if t]) == 3
    assert caught.value.partial_content == "".join(received)
    assert other.stats()["requests"] == 0


# --- routing, parameters, usage -------------------------------------------------------------


async def test_tasks_route_across_the_new_providers(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    summary = TaskDefinition("summary", {"max_tokens": 40})
    code = TaskDefinition("code", {"max_tokens": 60})
    emus = {name: await emulators(name) for name in ("azure", "ollama", "cohere", "groq")}
    manager.add_provider("azure", "k", "gpt-4o-prod", [summary], base_url=emus["azure"].base_url)
    manager.add_provider(
        "ollama", "", "llama3.2", [summary, code], base_url=emus["ollama"].base_url
    )
    manager.add_provider("cohere", "k", "command-a", [code], base_url=emus["cohere"].base_url)
    manager.add_provider("groq", "k", "llama-3.3-70b", [code], base_url=emus["groq"].base_url)
    summaries = await manager.batch_generate(
        [GenerationRequest(prompt=f"summarize {i}", task="summary") for i in range(6)]
    )
    assert {r.instance_id for r in summaries} == {0, 1}
    assert {r.provider for r in summaries} == {"azure", "ollama"}
    codes = await manager.batch_generate(
        [GenerationRequest(prompt=f"code {i}", task="code") for i in range(6)]
    )
    assert {r.provider for r in codes} == {"ollama", "cohere", "groq"}
    assert emus["azure"].stats()["requests"] == 3 and emus["cohere"].stats()["requests"] == 2
    usage = {u.provider: u for u in manager.token_usage()}
    assert usage["ollama"].requests == 5 and usage["groq"].total_tokens > 0
    assert sum(u.total_tokens for u in usage.values()) == sum(
        r.usage.total_tokens for r in [*summaries, *codes]
    )


PARAMS = {"max_tokens": 30, "temperature": 0.3, "top_p": 0.5, "top_k": 5, "stop": ["zzz"],
          "seed": 7}  # fmt: skip


async def test_parameters_arrive_translated_on_the_wire(
    manager: LlmManager, emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    names = ["azure", "ollama", "cohere", "groq", "perplexity", "deepseek", "together"]
    emus = {name: await emulators(name) for name in names}
    task = TaskDefinition("t", PARAMS, provider_params={"cohere": {"safety_mode": "STRICT"}})
    for name in names:
        manager.add_provider(name, "k", "m", [task], base_url=emus[name].base_url)
    with caplog.at_level(logging.WARNING, logger="flyllm"):
        responses = await manager.batch_generate(
            [GenerationRequest(prompt="hello", task="t", system="be brief")] * 14,
            max_concurrency=1,
        )
    assert all(r.success for r in responses)
    azure = body(emus["azure"])
    assert azure["max_tokens"] == 30 and azure["seed"] == 7 and "top_k" not in azure
    assert emus["azure"].requests[-1].query["api-version"] == "2024-10-21"
    options = body(emus["ollama"])["options"]
    assert options == {"num_predict": 30, "temperature": 0.3, "top_p": 0.5, "top_k": 5,
                       "stop": ["zzz"], "seed": 7}  # fmt: skip
    assert body(emus["ollama"])["messages"][0] == {"role": "system", "content": "be brief"}
    cohere = body(emus["cohere"])
    assert (cohere["p"], cohere["k"], cohere["stop_sequences"], cohere["seed"]) == (
        0.5, 5, ["zzz"], 7,
    )  # fmt: skip
    assert cohere["safety_mode"] == "STRICT" and "safety_mode" not in body(emus["groq"])
    groq = body(emus["groq"])
    assert groq["max_completion_tokens"] == 30 and "max_tokens" not in groq and "top_k" not in groq
    perplexity = body(emus["perplexity"])
    assert perplexity["top_k"] == 5 and "stop" not in perplexity and "seed" not in perplexity
    assert "seed" not in body(emus["deepseek"]) and body(emus["together"])["top_k"] == 5
    notes = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(notes) == len(set(notes)) == 6  # each logged once per instance


async def test_azure_v1_surface_and_deployment_option(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("azure", models={"prod-4o"})
    manager.add_provider("azure", "k", "prod-4o", base_url=emu.base_url, api_version="v1")
    manager.add_provider("azure", "k", "gpt-4o", base_url=emu.base_url,
                         options={"deployment": "prod-4o"})  # fmt: skip
    first, second = await manager.generate_sequentially(
        [GenerationRequest(prompt="x", params={"max_tokens": 3})] * 2
    )
    assert first.success and second.success
    paths = [r.path for r in emu.requests]
    assert paths == ["/openai/v1/chat/completions", "/openai/deployments/prod-4o/chat/completions"]
    assert emu.requests[0].json is not None and emu.requests[0].json["max_completion_tokens"] == 3


async def test_keyless_local_servers(manager: LlmManager, emulators: EmulatorFactory) -> None:
    vllm, ollama = await emulators("vllm"), await emulators("ollama")
    manager.add_provider("vllm", "", "qwen", base_url=vllm.base_url)
    manager.add_provider("ollama", "", "llama3.2", base_url=ollama.base_url)
    responses = await manager.generate_sequentially([GenerationRequest(prompt="hi")] * 2)
    assert sorted(r.provider or "" for r in responses) == ["ollama", "vllm"]
    assert all(r.success and r.usage.total_tokens > 0 for r in responses)
    for emu in (vllm, ollama):
        assert "authorization" not in emu.requests[-1].headers


async def test_a_groq_instance_on_the_plain_openai_dialect(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    plain = await emulators("openai")
    manager.add_provider("groq", "k", "llama-3.3-70b", base_url=plain.base_url)
    request = GenerationRequest(prompt="hi", params={"max_tokens": 5})
    response = await manager.generate(request)
    assert response.provider == "groq" and response.usage.completion_tokens == 5
    assert body(plain)["max_completion_tokens"] == 5
    async with manager.stream(request) as stream:
        text = "".join([chunk.text async for chunk in stream])
    assert text == response.content and "stream_options" not in body(plain)
    # OpenAI's own dialect sends stream usage only when asked; Groq's API puts it in x_groq
    # unasked (the groq dialect does), so here the streamed answer has no counts.
    assert stream.response.usage == Usage()
