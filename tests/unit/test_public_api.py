"""The public names are a contract: users' code and other tools depend on them."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest

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
    "Booking", "Candidate", "CandidateStats", "Event", "EventKind", "Hook", "InstanceHealth",
    "InstanceInfo", "LlmInstance", "LlmManagerBuilder", "LlmStream", "ModelInfo", "ModelPrice",
    "StateStore", "SyncStream",
    "Tool", "ToolCall", "ToolCallDelta", "ToolLoopError", "UnsupportedFeatureError",
    "Image", "JsonSchema", "StructuredOutputError",
    "EmbeddingRequest", "EmbeddingResult",
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
        "no_instance", "unsupported",
        "structured_output",
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
    code = "import sys, flyllm; print('flyllm.emulator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_exports_load_on_first_use() -> None:
    code = (
        "import sys, flyllm; lazy = ('flyllm.config.builder', 'flyllm.discovery');"
        "print(any(m in sys.modules for m in lazy));"
        "print(flyllm.ModelInfo.__module__, flyllm.LlmManagerBuilder.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "flyllm.providers.base", "flyllm.config.builder"]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = flyllm.Nope


# -- every type in a public signature is reachable from flyllm ------------------------------

OPAQUE = {"LlmInstance"}
"""Exported types whose own members are not walked: a StateStore receives live instances from
the manager and passes them back; their fields are not an API."""

BUILT_BY_THE_MANAGER = {"LlmStream", "SyncStream"}
"""Exported types users get from a call (``stream()``) and never construct: their __init__ is
not an API."""


def _annotation_namespace() -> dict[str, Any]:
    """Every name of every flyllm module, to resolve annotations imported under TYPE_CHECKING."""
    namespace: dict[str, Any] = {}
    for info in pkgutil.walk_packages(flyllm.__path__, "flyllm."):
        if not info.name.startswith(("flyllm.emulator", "flyllm.cli")):
            namespace.update(vars(importlib.import_module(info.name)))
    return namespace


def _signatures(obj: object) -> Iterator[Callable[..., Any] | type]:
    """What carries annotations on ``obj``: its fields and its public methods and properties."""
    if not inspect.isclass(obj):
        if inspect.isfunction(obj):  # aliases (Hook, EventKind) are walked where they are used
            yield obj
        return
    if dataclasses.is_dataclass(obj):
        yield obj
    for name, member in inspect.getmembers(obj):
        if name.startswith("_") and not (
            name == "__init__" and obj.__name__ not in BUILT_BY_THE_MANAGER
        ):
            continue
        member = member.fget if isinstance(member, property) else member
        if inspect.isfunction(member) or inspect.ismethod(member):
            yield member


def _classes(hint: object) -> Iterator[type]:
    if isinstance(hint, typing.TypeVar):
        yield from _classes(hint.__bound__)
    elif typing.get_origin(hint) is not None:
        yield from (c for arg in typing.get_args(hint) for c in _classes(arg))
    elif isinstance(hint, list | tuple):  # Callable[[Event], None]'s argument list
        yield from (c for arg in hint for c in _classes(arg))
    elif isinstance(hint, type):
        yield hint


def _public_signature_types() -> dict[type, str]:
    namespace = _annotation_namespace()
    found: dict[type, str] = {}
    todo: list[object] = [getattr(flyllm, name) for name in flyllm.__all__]
    walked: set[int] = set()
    while todo:
        obj = todo.pop()
        if id(obj) in walked or getattr(obj, "__name__", "") in OPAQUE:
            continue
        walked.add(id(obj))
        for carrier in _signatures(obj):
            hints = typing.get_type_hints(carrier, namespace, namespace)
            for cls in (c for hint in hints.values() for c in _classes(hint)):
                if cls.__module__.startswith("flyllm") and cls not in found:
                    found[cls] = getattr(carrier, "__qualname__", repr(carrier))
                    todo.append(cls)
    return found


def test_every_type_in_a_public_signature_is_exported() -> None:
    found = _public_signature_types()
    missing = [
        f"{cls.__module__}.{cls.__qualname__} (in {where})"
        for cls, where in found.items()
        if getattr(flyllm, cls.__name__, None) is not cls or cls.__name__ not in flyllm.__all__
    ]
    assert not missing, "not exported from flyllm: " + ", ".join(missing)
    # the walk reaches through methods, fields, generics and lazy annotations
    assert {flyllm.Event, flyllm.ModelInfo, flyllm.Booking, flyllm.CandidateStats} <= set(found)


def test_the_walk_fails_on_a_type_that_is_not_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flyllm, "__all__", [n for n in flyllm.__all__ if n != "InstanceInfo"])
    monkeypatch.delattr(flyllm, "InstanceInfo")
    with pytest.raises(AssertionError, match=r"flyllm\.routing\.instance\.InstanceInfo \(in "):
        test_every_type_in_a_public_signature_is_exported()


# -- SyncLlmManager mirrors LlmManager ------------------------------------------------------

SYNC_NAMES = {"aclose": "close"}
"""Async names spelt differently without await."""
ASYNC_ONLY = {"builder"}
"""The builder builds an LlmManager; wrap its result with ``SyncLlmManager.from_config`` or
build the SyncLlmManager directly."""


def _public(cls: type) -> dict[str, Any]:
    return {name: member for name, member in inspect.getmembers(cls) if not name.startswith("_")}


def _params(member: Any) -> list[inspect.Parameter]:
    func: Any = member.fget if isinstance(member, property) else member
    return list(inspect.signature(func).parameters.values())


def _comparable(member: Any) -> list[tuple[str, Any, Any]]:
    params = _params(member)
    return [(p.name, p.kind, p.default) for p in params if p.kind is not p.VAR_KEYWORD]


def test_sync_manager_has_every_public_method_with_the_same_parameters() -> None:
    async_names = _public(flyllm.LlmManager)
    sync_names = _public(flyllm.SyncLlmManager)
    expected = {SYNC_NAMES.get(n, n) for n in async_names} - ASYNC_ONLY
    assert not expected - set(sync_names), "SyncLlmManager lacks these"
    assert not set(sync_names) - expected - {"manager"}, "SyncLlmManager has extra names"
    for name, member in async_names.items():
        if name in ASYNC_ONLY:
            continue
        mirror = sync_names[SYNC_NAMES.get(name, name)]
        assert isinstance(member, property) == isinstance(mirror, property), name
        theirs, ours = _comparable(member), _comparable(mirror)
        # SyncLlmManager may forward keyword-only parameters through **kwargs
        kwargs = any(p.kind is p.VAR_KEYWORD for p in _params(mirror))
        if kwargs:
            theirs = [p for p in theirs if p[1] is not inspect.Parameter.KEYWORD_ONLY]
        assert ours == theirs, name


# -- the usage ledger -----------------------------------------------------------------------


def test_usage_tally_counts_successes_failures_and_sums() -> None:
    from flyllm.usage import UsageTally

    tally = UsageTally()
    tally.record(flyllm.Usage(10, 5, 15, 4))
    tally.record(None)
    assert tally == UsageTally(requests=2, failures=1, prompt_tokens=10, completion_tokens=5,
                               total_tokens=15, cached_tokens=4)  # fmt: skip
    other = UsageTally(requests=1, prompt_tokens=1, completion_tokens=2, total_tokens=3)
    tally.add(other)
    assert tally.usage == flyllm.Usage(11, 7, 18, 4) and tally.requests == 3
    assert other == UsageTally(1, 0, 1, 2, 3, 0)  # adding leaves the other one as it was


@pytest.mark.parametrize("cls", [flyllm.Event, flyllm.InstanceHealth, flyllm.InstanceInfo,
                                 flyllm.LlmInstance])  # fmt: skip
def test_wide_dataclasses_are_keyword_only(cls: type) -> None:
    # swapping two ints in a positional call would still type-check: keywords make it visible
    fields = dataclasses.fields(cls)
    assert all(f.kw_only for f in fields), [f.name for f in fields if not f.kw_only]
    with pytest.raises(TypeError, match="positional"):
        cls(*range(len(fields)))
