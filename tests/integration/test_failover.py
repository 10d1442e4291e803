"""Failover: retryable errors move on, the request's own errors return at once, the real
errors are kept, and keys never leak."""

from __future__ import annotations

import io
import logging

import pytest

from flyllm import (
    AllAttemptsFailedError,
    ContentFilterError,
    ContextLengthError,
    GenerationRequest,
    LlmManager,
)
from flyllm.emulator import Fault
from tests.integration.conftest import SLEEPS, EmulatorFactory

RETRYABLE_FAULTS = [
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


@pytest.mark.parametrize(("fault", "kind"), RETRYABLE_FAULTS)
@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "mistral"])
async def test_each_failure_kind_fails_over_to_the_next_instance(
    provider: str,
    fault: str,
    kind: str,
    manager: LlmManager,
    emulators: EmulatorFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = await emulators(provider)
    good = await emulators(provider)
    manager.add_provider(provider, "k-bad", "model-a", base_url=bad.base_url)
    manager.add_provider(provider, "k-good", "model-b", base_url=good.base_url)
    bad.schedule(fault, count=1)

    with caplog.at_level(logging.WARNING, logger="flyllm"):
        response = await manager.generate(GenerationRequest(prompt="hello"))

    assert response.success and response.instance_id == 1 and response.attempts == 2
    usage = {u.id: u for u in manager.token_usage()}
    assert usage[0].failures == 1 and usage[0].requests == 1
    assert usage[1].failures == 0 and usage[1].total_tokens == response.usage.total_tokens > 0
    assert SLEEPS == []  # failing over to a fresh instance never waits
    assert bad.stats()["faults_injected"] == {fault: 1}
    (failover,) = [r.getMessage() for r in caplog.records if "failing over" in r.getMessage()]
    assert f"instance 0, {provider}" in failover and f"{kind}:" in failover


@pytest.mark.parametrize(("fault", "kind"), RETRYABLE_FAULTS)
async def test_when_every_attempt_fails_each_real_error_is_kept(
    fault: str, kind: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emus = [await emulators(p) for p in ("openai", "anthropic", "google")]
    for i, emu in enumerate(emus):
        manager.add_provider(emu.provider, f"secret-key-{i}", f"model-{i}", base_url=emu.base_url)
        emu.set_faults([Fault(fault)])

    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(GenerationRequest(prompt="hello"))

    attempts = caught.value.attempts
    assert [a.kind.value for a in attempts] == [kind] * 3
    assert [a.instance_id for a in attempts] == [0, 1, 2]
    assert [a.provider for a in attempts] == ["openai", "anthropic", "google"]
    text = str(caught.value)
    for i in range(3):
        assert f"instance {i}" in text
        assert "secret-key" not in text and "secret-key" not in repr(attempts[i])
    if fault not in ("reset", "malformed"):
        assert all(a.status is not None and a.message for a in attempts)

    responses = await manager.batch_generate([GenerationRequest(prompt="again")])
    assert not responses[0].success
    if kind in ("quota", "authentication"):
        # A revoked key or an exhausted quota took those instances out of the rotation.
        assert responses[0].error_kind == "no_instance" and responses[0].attempts == 0
        assert "ready in 6" in (responses[0].error or "")  # the long cooldown, 600 s
        assert {h.state for h in manager.instance_health()} == {"open"}
    else:
        assert responses[0].error_kind == kind
        assert responses[0].attempts == 3 and "instance 2" in (responses[0].error or "")


async def test_rate_limit_hint_is_honoured_before_a_new_round(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("openai")
    manager.add_provider("openai", "k", "m", base_url=emu.base_url)
    emu.schedule("rate_limit", count=1)
    response = await manager.generate(GenerationRequest(prompt="x"))
    assert response.success and response.attempts == 2
    assert len(SLEEPS) == 1 and SLEEPS[0] == pytest.approx(1.0, abs=0.01)
    assert emu.stats()["requests"] == 2


async def test_permanent_failures_are_not_retried_in_the_same_request(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("anthropic", api_keys={"good"})
    manager.add_provider("anthropic", "wrong", "claude", base_url=emu.base_url)
    with pytest.raises(AllAttemptsFailedError) as caught:
        await manager.generate(GenerationRequest(prompt="x", max_attempts=5))
    assert [a.kind.value for a in caught.value.attempts] == ["authentication"]
    assert emu.stats()["requests"] == 1


async def test_a_hang_times_out_and_fails_over(emulators: EmulatorFactory) -> None:
    hung = await emulators("mistral")
    ok = await emulators("mistral")
    hung.set_faults([Fault("hang")])
    async with LlmManager(read_timeout=0.3) as manager:
        manager.add_provider("mistral", "k", "m", base_url=hung.base_url)
        manager.add_provider("mistral", "k", "m", base_url=ok.base_url)
        response = await manager.generate(GenerationRequest(prompt="x"))
        assert response.success and response.instance_id == 1
        failed = await manager.batch_generate([GenerationRequest(prompt="y", max_attempts=1)] * 2)
    timeouts = [r for r in failed if not r.success]
    assert len(timeouts) == 1 and timeouts[0].error_kind == "timeout"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "mistral"])
async def test_request_errors_return_at_once_without_failover(
    provider: str, manager: LlmManager, emulators: EmulatorFactory
) -> None:
    first, second = await emulators(provider), await emulators(provider)
    manager.add_provider(provider, "k", "m", base_url=first.base_url)
    manager.add_provider(provider, "k", "m", base_url=second.base_url)

    with pytest.raises(ContextLengthError) as too_long:
        await manager.generate(GenerationRequest(prompt="[[context_length]] a very long prompt"))
    assert too_long.value.instance_id == 0 and too_long.value.status == 400
    assert second.stats()["requests"] == 0

    if provider != "mistral":  # Mistral has no refusal in its wire format
        with pytest.raises(ContentFilterError) as refused:
            await manager.generate(GenerationRequest(prompt="[[refusal]] do something bad"))
        assert refused.value.message
        responses = await manager.batch_generate([GenerationRequest(prompt="[[refusal]] again")])
        assert responses[0].error_kind == "content_filter" and responses[0].attempts == 1
    assert first.stats()["requests"] + second.stats()["requests"] <= 3


async def test_gemini_blocked_prompt_is_a_content_filter_failure(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    emu = await emulators("google")
    manager.add_provider("google", "k", "gemini-2.5-flash", base_url=emu.base_url)
    with pytest.raises(ContentFilterError, match="SAFETY"):
        await manager.generate(GenerationRequest(prompt="[[blocked]] something"))


async def test_unknown_model_fails_over_and_counts_against_the_instance(
    manager: LlmManager, emulators: EmulatorFactory
) -> None:
    for provider in ("openai", "mistral"):
        emu = await emulators(provider, models={"real-model"})
        manager.add_provider(provider, "k", "typo-model", base_url=emu.base_url)
        manager.add_provider(provider, "k", "real-model", base_url=emu.base_url)
    responses = await manager.generate_sequentially([GenerationRequest(prompt="x")] * 2)
    assert all(r.success and r.model == "real-model" and r.attempts == 2 for r in responses)
    health = {h.id: h for h in manager.instance_health()}
    assert health[0].state == health[2].state == "open"
    assert health[0].reason == "not_found" and health[0].cooldown_left > 500
    more = await manager.batch_generate([GenerationRequest(prompt="x", max_attempts=1)] * 4)
    assert all(r.success and r.model == "real-model" for r in more)
    usage = manager.token_usage()
    assert [u.requests for u in usage] == [1, 3, 1, 3]  # no more traffic to the typos
    assert usage[0].failures == usage[2].failures == 1


async def test_keys_never_reach_logs_or_reprs(
    manager: LlmManager, emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-test-very-secret-0123456789"
    emu = await emulators("openai", api_keys={"other"})
    manager.add_provider("openai", key, "gpt-4o-mini", base_url=emu.base_url)
    with caplog.at_level(logging.DEBUG, logger="flyllm"):
        responses = await manager.batch_generate([GenerationRequest(prompt="x")] * 3)
    assert all(r.error_kind == "authentication" for r in responses)
    everything = caplog.text + repr(responses) + repr(manager.instances()) + repr(manager._all)
    everything += "".join(str(r.exception) + repr(r.exception) for r in responses)
    assert key not in everything
    assert "attempt 1 instance=0 provider=openai model=gpt-4o-mini status=401" in caplog.text


async def test_header_values_and_url_credentials_are_masked_wherever_shown(
    manager: LlmManager, emulators: EmulatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "-".join(["gw", "token", "77aa19"])  # built at run time
    emu = await emulators("anthropic", faults=[Fault("server_error")])
    host = emu.base_url.split("://", 1)[1]
    manager.add_provider(
        "anthropic", "k", "claude-x", base_url=f"http://user:{secret}@{host}",
        headers={"X-Gateway-Key": secret, "X-Other": secret},
    )  # fmt: skip
    manager.add_provider(
        "openai", "k", "gpt-x", base_url=f"https://gw.example/v1?key={secret}",
        headers={"Authorization": f"Bearer {secret}"},
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="flyllm"):
        responses = await manager.batch_generate([GenerationRequest(prompt="x", max_attempts=1)])
    table = io.StringIO()
    manager.print_instance_health(table)
    manager.print_token_usage(table)
    shown = (
        repr(manager.instances())
        + repr(manager._all)
        + str(manager.instances())
        + str(manager._all)
        + table.getvalue()
        + caplog.text
    )
    shown += repr(manager.instance_health()) + repr(responses) + str(responses[0].exception)
    assert secret not in shown
    assert "X-Gateway-Key" in shown and "gw.example/v1" in shown and "gpt-x" in shown
    assert emu.stats()["requests"] == 1  # the request really went out with them
