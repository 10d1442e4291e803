"""Model discovery end to end: ``LlmManager.list_models`` and ``SyncLlmManager.list_models``
against every emulated provider (pages, filters, classified errors, faults), and the
``flyllm models`` command in a subprocess, whose output never holds the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from flyllm import GenerationRequest, LlmManager, SyncLlmManager
from flyllm._transport import Transport
from flyllm._wire import Timeouts
from flyllm.discovery import ModelInfo, list_models
from flyllm.emulator import Emulator
from flyllm.emulator.catalog import DEFAULTS
from flyllm.errors import (
    AuthenticationError,
    ConfigurationError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
)
from flyllm.providers.base import HttpRequest, HttpResponse
from flyllm.routing.settings import BASE_URL_ENV
from tests.integration.conftest import EmulatorFactory, emulator_in_thread

KEY = "sk-discovery-canary-1a2b3c4d"

# What each provider lists from the emulator's default catalogue: the chat models where the
# provider says which can chat (Gemini, Cohere, Mistral, Azure), everything elsewhere.
CHAT_ONLY = {"google", "cohere", "mistral", "azure"}
PROVIDERS = tuple(DEFAULTS)  # every dialect and compatible service
PAGES = {"anthropic": 3, "google": 3, "cohere": 2}  # two models a page in the emulator


def expected(provider: str) -> list[str]:
    return [m.id for m in DEFAULTS[provider] if m.chat or provider not in CHAT_ONLY]


@pytest.fixture(autouse=True)
def _no_base_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in BASE_URL_ENV.values():
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_provider_lists_its_models(
    emulators: EmulatorFactory, manager: LlmManager, provider: str
) -> None:
    emu = await emulators(provider, api_keys={KEY})
    models = await manager.list_models(provider, KEY, emu.base_url)
    assert [m.id for m in models] == expected(provider)
    assert all(isinstance(m, ModelInfo) and m.provider == provider for m in models)
    assert len(emu.requests) == PAGES.get(provider, 1)
    assert {r.api_key for r in emu.requests} == {KEY}


async def test_listed_ids_are_usable_as_model_names(
    emulators: EmulatorFactory, manager: LlmManager
) -> None:
    emu = await emulators("google", api_keys={KEY}, models={"gemini-2.5-flash", "gemini-pro-x"})
    models = await manager.list_models("gemini", KEY, emu.base_url)
    assert [m.id for m in models] == ["gemini-2.5-flash", "gemini-pro-x"]
    manager.add_provider("google", KEY, models[1].id, base_url=emu.base_url)
    (response,) = await manager.generate_sequentially([GenerationRequest(prompt="Hi")])
    assert response.success and response.model == "gemini-pro-x", response.error


async def test_fields_from_each_provider(emulators: EmulatorFactory, manager: LlmManager) -> None:
    anthropic = await emulators("anthropic", api_keys={KEY})
    opus = (await manager.list_models("anthropic", KEY, anthropic.base_url))[0]
    assert (opus.id, opus.display_name, opus.created) == (
        "claude-opus-4-6",
        "Claude Opus 4.6",
        1_770_163_200,
    )
    assert (opus.context_window, opus.max_output_tokens) == (200_000, 128_000)
    assert opus.raw["lifecycle"] == "active"
    cohere = await emulators("cohere", api_keys={KEY})
    command = (await manager.list_models("cohere", KEY, cohere.base_url))[0]
    assert (command.id, command.context_window) == ("command-a-03-2025", 256_000)
    assert cohere.requests[0].query["endpoint"] == "chat"
    azure = await emulators("azure", api_keys={KEY})
    listed = await manager.list_models(
        "azure", KEY, azure.base_url, api_version="2025-04-01-preview"
    )
    assert [m.created for m in listed][:1] == [1_744_316_542]
    assert azure.requests[-1].path == "/openai/models"
    assert azure.requests[-1].headers["api-key"] == KEY


async def test_base_url_from_the_sdk_variable(
    emulators: EmulatorFactory, manager: LlmManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulators("anthropic", api_keys={KEY})
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emu.base_url)
    assert [m.id for m in await manager.list_models("anthropic", KEY)] == expected("anthropic")


@pytest.mark.parametrize(
    "provider", ["openai", "anthropic", "google", "mistral", "azure", "cohere"]
)
async def test_a_wrong_key_is_an_authentication_error(
    emulators: EmulatorFactory, manager: LlmManager, provider: str
) -> None:
    emu = await emulators(provider, api_keys={KEY})
    with pytest.raises(AuthenticationError) as caught:
        await manager.list_models(provider, "wrong-key-0123456789", emu.base_url)
    assert caught.value.provider == provider and caught.value.status in (400, 401)
    assert "wrong-key-0123456789" not in str(caught.value)


async def test_faults_are_classified(emulators: EmulatorFactory, manager: LlmManager) -> None:
    emu = await emulators("anthropic", api_keys={KEY})
    emu.schedule("rate_limit", retry_after=3.0)
    with pytest.raises(RateLimitError) as limited:
        await manager.list_models("anthropic", KEY, emu.base_url)
    assert limited.value.retry_after == 3.0
    emu.schedule("malformed")
    with pytest.raises(MalformedResponseError):
        await manager.list_models("anthropic", KEY, emu.base_url)
    models = await manager.list_models("anthropic", KEY, emu.base_url)
    assert [m.id for m in models] == expected("anthropic")


async def test_a_failed_later_page_fails_the_whole_listing(emulators: EmulatorFactory) -> None:
    emu = await emulators("google", api_keys={KEY})

    class FailNextPage(Transport):
        async def send(self, request: HttpRequest, timeouts: Timeouts) -> HttpResponse:
            response = await super().send(request, timeouts)
            emu.schedule("server_error")  # whichever page comes next fails
            return response

    transport = FailNextPage()
    try:
        with pytest.raises(ServerError):
            await list_models(transport, "google", KEY, emu.base_url, timeouts=Timeouts())
    finally:
        await transport.aclose()
    assert [r.query.get("pageToken") is None for r in emu.requests] == [True, False]


def test_sync_manager_lists_models() -> None:
    with (
        emulator_in_thread("mistral", api_keys={KEY}) as emu,
        SyncLlmManager() as manager,
    ):
        models = manager.list_models("mistral", KEY, emu.base_url)
        assert [m.id for m in models] == expected("mistral")
        with pytest.raises(AuthenticationError):
            manager.list_models("mistral", "nope", emu.base_url)
        with pytest.raises(ConfigurationError, match="empty"):
            manager.list_models("mistral", "", emu.base_url)


# --- the flyllm models command ----------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, Emulator]]:
    with (
        emulator_in_thread("openai", api_keys={KEY}) as openai,
        emulator_in_thread("google", api_keys={KEY}) as google,
        emulator_in_thread("ollama") as ollama,
    ):
        yield {"openai": openai, "google": google, "ollama": ollama}


def flyllm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """One ``flyllm models`` run; fails the test if the key shows up in its output."""
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    clean.pop("OLLAMA_HOST", None)
    done = subprocess.run(
        [sys.executable, "-m", "flyllm.cli", "models", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert KEY not in done.stdout and KEY not in done.stderr
    return done


def test_cli_prints_one_id_per_line(served: dict[str, Emulator]) -> None:
    done = flyllm("openai", "--base-url", served["openai"].base_url, OPENAI_API_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected("openai") and done.stderr == ""


def test_cli_json_with_the_key_from_the_command_line(served: dict[str, Emulator]) -> None:
    done = flyllm("gemini", "--base-url", served["google"].base_url, "--api-key", KEY, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["id"] for r in rows] == expected("google")
    assert rows[0] == {
        "id": "gemini-2.5-pro", "provider": "google", "display_name": "Gemini 2.5 Pro",
        "created": None, "owned_by": None, "context_window": 1_048_576,
        "max_output_tokens": 65_536,
    }  # fmt: skip


def test_cli_reads_the_sdk_variables(served: dict[str, Emulator]) -> None:
    google = served["google"].base_url
    done = flyllm("google", GOOGLE_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=google)
    assert done.returncode == 0 and done.stdout.splitlines() == expected("google"), done.stderr
    done = flyllm("google", GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=google)
    assert done.returncode == 0, done.stderr
    host = served["ollama"].base_url.removeprefix("http://")
    done = flyllm("ollama", OLLAMA_HOST=host)  # a local server needs no key
    assert done.returncode == 0 and done.stdout.splitlines() == expected("ollama"), done.stderr


def test_cli_wrong_key_exits_1(served: dict[str, Emulator]) -> None:
    wrong = KEY[:-1] + "X"
    done = flyllm("openai", "--base-url", served["openai"].base_url, OPENAI_API_KEY=wrong)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("flyllm models: authentication:"), done.stderr
    assert wrong not in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("openai",), {}, "no API key for openai: pass --api-key or set OPENAI_API_KEY"),
        (("cohere",), {}, "CO_API_KEY or COHERE_API_KEY"),
        (("no-such",), {"OPENAI_API_KEY": KEY}, "unknown provider 'no-such'"),
        (("azure", "--base-url", "https://r.openai.azure.com/openai/deployments/gpt"),
         {"AZURE_OPENAI_API_KEY": KEY}, "cannot list deployments"),
        (("openai_compatible", "--api-key", KEY), {}, "needs a base_url"),
    ],
)  # fmt: skip
def test_cli_usage_errors_exit_2(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    done = flyllm(*args, **env)
    assert done.returncode == 2 and done.stdout == ""
    assert message in done.stderr, done.stderr


def test_cli_needs_a_provider() -> None:
    done = flyllm()
    assert done.returncode == 2 and "provider" in done.stderr
