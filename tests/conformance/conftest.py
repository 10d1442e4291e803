"""Shared pieces of the conformance suite: the emulator driven by the providers' official SDKs.

Each test module starts an :class:`~flyllm.emulator.Emulator` for one provider, points that
provider's SDK at ``emu.base_url`` and checks that what the SDK hands back (text, finish
reason, usage, exception class) is what it would hand back from the real API.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# Variables that would silently change where or how an SDK connects (base URLs, API version,
# Vertex mode, extra headers, credential files). Cleared so a developer's shell cannot make
# the suite talk to anything but the emulator, or send something the tests do not expect.
_SDK_ENV = (
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_PROFILE",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE",
    "GOOGLE_GEMINI_BASE_URL",
    "GOOGLE_API_USE_CLIENT_CERTIFICATE",
    "MISTRAL_SA_TOKEN_PATH",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "OPENAI_API_VERSION",
    "OLLAMA_HOST",
    "OLLAMA_API_KEY",
    "CO_API_URL",
    "CO_API_KEY",
    "COHERE_API_KEY",
)


@pytest.fixture(autouse=True)
def _clean_sdk_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
