"""The public names are a contract: users' code and other tools depend on them."""

from __future__ import annotations

import dataclasses
import inspect

import flyllm

EXPECTED = {
    "AllAttemptsFailedError", "AuthenticationError", "BadRequestError", "BreakerPolicy",
    "ConfigurationError",
    "ContentFilterError", "ContextLengthError", "ErrorKind", "FlyLLMError", "GenerationRequest",
    "InstanceUsage", "InvalidRequestError", "LlmManager", "LlmResponse", "MalformedResponseError",
    "Message", "NoInstanceAvailableError", "NotFoundError", "OverloadedError",
    "PermissionDeniedError", "ProviderConnectionError", "ProviderError", "ProviderTimeoutError",
    "ProviderType", "QuotaError", "RateLimitError", "RetryPolicy", "ServerError", "Strategy",
    "StreamChunk", "StreamInterruptedError", "SyncLlmManager", "TaskDefinition", "Usage",
    "RedirectError",
    "__version__", "use_logging",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(flyllm.__all__) == EXPECTED
    assert len(flyllm.__all__) == len(EXPECTED)
    for name in flyllm.__all__:
        assert hasattr(flyllm, name), name


def test_public_names_have_docstrings() -> None:
    for name in flyllm.__all__:
        obj = getattr(flyllm, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


def test_fixed_names_and_fields() -> None:
    assert [p.value for p in flyllm.ProviderType] == [
        "openai", "anthropic", "google", "mistral", "openai_compatible", "azure", "ollama",
        "cohere", "groq", "together", "perplexity", "deepseek", "openrouter", "fireworks",
        "lmstudio", "vllm",
    ]  # fmt: skip
    fields = {f.name for f in dataclasses.fields(flyllm.LlmResponse)}
    assert {
        "content", "success", "error", "error_kind", "provider", "model", "instance_id",
        "usage", "finish_reason", "latency", "attempts",
    } <= fields  # fmt: skip
    usage_fields = {f.name for f in dataclasses.fields(flyllm.InstanceUsage)}
    assert {
        "id", "name", "provider", "model", "prompt_tokens", "completion_tokens",
        "total_tokens", "requests", "failures",
    } <= usage_fields  # fmt: skip
    assert {k.value for k in flyllm.ErrorKind} == {
        "rate_limit", "quota", "overloaded", "server", "timeout", "connection",
        "authentication", "permission", "not_found", "bad_request", "context_length",
        "content_filter", "malformed_response", "stream_interrupted", "invalid_request",
        "no_instance",
    }  # fmt: skip


def test_add_provider_signature() -> None:
    sig = inspect.signature(flyllm.LlmManager.add_provider)
    positional = [
        p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert positional == ["self", "provider", "api_key", "model", "tasks", "enabled"]
    for name in ("base_url", "name", "weight", "parameters", "headers", "api_version"):
        assert sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_import_does_not_load_the_emulator() -> None:
    import subprocess
    import sys

    code = "import sys, flyllm; print('flyllm.emulator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
