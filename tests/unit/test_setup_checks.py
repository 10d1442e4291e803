"""Set-up checks: every bad value given at manager construction, define_task or add_provider is
a ConfigurationError naming the instance (or task) and the field, never quoting a secret; the
same bad values in one request are an InvalidRequestError for that request only."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from flyllm import (
    ConfigurationError,
    GenerationRequest,
    InvalidRequestError,
    LlmManager,
    TaskDefinition,
)
from flyllm._display import mask_url
from flyllm.providers import get_provider
from flyllm.types import ProviderType

SECRET = "-".join(["gw", "secret", "4f9a1c"])  # built at run time: never a literal key


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


BAD_NUMBERS = [math.inf, -math.inf, math.nan, -1.0, 0, 0.0, "3", True]
BAD_PARAMETERS: list[tuple[dict[str, Any], str]] = [
    ({"temperature": math.nan}, "temperature"),
    ({"logit_bias": {"1": math.inf}}, "logit_bias"),
    ({"tags": {1, 2}}, "tags"),
    ({"when": datetime.datetime(2026, 1, 1)}, "when"),
    ({"blob": b"\x00\x01"}, "blob"),
    ({"deep": _nested(100_000)}, "deep"),
]


@pytest.mark.parametrize("field", ["connect_timeout", "read_timeout", "deadline"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_manager_timeouts_must_be_positive_finite_seconds(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):
        LlmManager(**{field: value})


@pytest.mark.parametrize("value", [0, -1, 1.5, math.inf, "big", True])
def test_max_response_bytes_must_be_a_positive_integer(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        LlmManager(max_response_bytes=value)


BAD_INSTANCES: list[tuple[dict[str, Any], str]] = [
    ({"read_timeout": math.inf}, "read_timeout"),
    ({"connect_timeout": math.nan}, "connect_timeout"),
    ({"read_timeout": -2}, "read_timeout"),
    ({"weight": math.nan}, "weight"),
    ({"weight": math.inf}, "weight"),
    ({"weight": -1}, "weight"),
    ({"base_url": "not a url"}, "base_url"),
    ({"base_url": "ftp://files.example/v1"}, "base_url"),
    ({"base_url": "http://"}, "base_url"),
    ({"base_url": "https://api.example/v1\r\nX-Injected: 1"}, "base_url"),
    ({"headers": {"X-Gateway-Key": 12345}}, "X-Gateway-Key"),
    ({"headers": {"X-Gateway-Key": SECRET + "\r\nX-Injected: 1"}}, "X-Gateway-Key"),
    ({"headers": {"X-Gateway-Key": SECRET + "\n"}}, "X-Gateway-Key"),
    ({"headers": {"X-Gateway-Key": SECRET + "\x00"}}, "X-Gateway-Key"),
    ({"headers": {"Bad Name": SECRET}}, "Bad Name"),
    ({"headers": {"X-Key\r\n": SECRET}}, "header name"),
    ({"headers": {7: SECRET}}, "header name"),
    ({"headers": ["X-Key", SECRET]}, "headers"),
    *(({"parameters": params}, name) for params, name in BAD_PARAMETERS),
    ({"api_version": 3}, "api_version"),
    ({"api_version": "2024\r\nX: 1"}, "api_version"),
    ({"provider_params": {"openai": {"temperature": math.inf}}}, "temperature"),
    ({"provider_params": {"openai": {"extra": {1, 2}}}}, "extra"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_INSTANCES)
def test_add_provider_rejects_bad_values_naming_the_instance_and_field(
    kwargs: dict[str, Any], field: str
) -> None:
    manager = LlmManager()
    options = {"base_url": "https://gateway.example/v1", **kwargs}
    with pytest.raises(ConfigurationError) as caught:
        manager.add_provider("openai", SECRET, "gpt-x", name="edge", **options)
    message = str(caught.value)
    assert "'edge'" in message and field in message
    assert SECRET not in message  # neither the key nor a header value is ever quoted
    assert manager.instances() == []


def test_a_key_with_control_characters_is_rejected_without_quoting_it() -> None:
    with pytest.raises(ConfigurationError, match="api_key") as caught:
        LlmManager().add_provider("openai", SECRET + "\n", "gpt-x")
    assert SECRET not in str(caught.value)


def test_a_base_url_in_an_error_is_masked() -> None:
    url = f"ftp://user:{SECRET}@files.example/v1?key={SECRET}"
    with pytest.raises(ConfigurationError, match="base_url") as caught:
        LlmManager().add_provider("openai", "k", "gpt-x", base_url=url)
    assert SECRET not in str(caught.value) and "files.example" in str(caught.value)


@pytest.mark.parametrize(("params", "field"), BAD_PARAMETERS)
def test_task_parameters_must_be_json(params: dict[str, Any], field: str) -> None:
    manager = LlmManager()
    with pytest.raises(ConfigurationError, match=f"task 'summary'.*{field}"):
        manager.define_task(TaskDefinition("summary", params))
    with pytest.raises(ConfigurationError, match=field):
        manager.define_task(TaskDefinition("other", provider_params={"openai": params}))


def test_good_values_pass() -> None:
    manager = LlmManager(read_timeout=5, connect_timeout=0.5, deadline=30, max_response_bytes=1)
    manager.add_provider(
        "openai", "k", "gpt-x", [TaskDefinition("t", {"temperature": 0.2, "stop": ["\n"]})],
        base_url="http://127.0.0.1:9/v1", weight=0, headers={"X-Trace": "a\tb", "x-y": ""},
        parameters={"logit_bias": {"50256": -100}, "user": "u-1"}, read_timeout=1,
    )  # fmt: skip
    assert len(manager.instances()) == 1


BAD_REQUESTS: list[tuple[GenerationRequest, str]] = [
    *((GenerationRequest(prompt="x", params=params), name) for params, name in BAD_PARAMETERS),
    (GenerationRequest(prompt="x", provider_params={"openai": {"seed": math.inf}}), "seed"),
    (GenerationRequest(prompt="x", deadline=math.inf), "deadline"),
    (GenerationRequest(prompt="x", read_timeout=math.nan), "read_timeout"),
    (GenerationRequest(prompt="x", connect_timeout=-1), "connect_timeout"),
]


@pytest.mark.parametrize(("request_", "field"), BAD_REQUESTS)
async def test_bad_request_values_fail_that_request_only(
    request_: GenerationRequest, field: str
) -> None:
    async with LlmManager() as manager:
        manager.add_provider("openai", "k", "gpt-x", base_url="http://127.0.0.1:9/v1")
        with pytest.raises(InvalidRequestError, match=field):
            manager.stream(request_)
        with pytest.raises(InvalidRequestError, match=field):
            await manager.generate(request_)
        (failed,) = await manager.batch_generate([request_])
        assert failed.error_kind == "invalid_request" and failed.attempts == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example/v1", "https://api.example/v1"),
        ("https://user:SECRET@gw.example:8443/v1", "https://***@gw.example:8443/v1"),
        ("https://SECRET@gw.example/v1", "https://***@gw.example/v1"),
        ("https://gw.example/v1?key=SECRET&v=SECRET", "https://gw.example/v1?key=***&v=***"),
        ("https://gw.example/v1?SECRET#SECRET", "https://gw.example/v1?***"),
        ("user:SECRET@gw.example/v1", "***@gw.example/v1"),
        ("http://[::1", "<an unreadable URL>"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    masked = mask_url(url.replace("SECRET", SECRET))
    assert masked == shown and SECRET not in masked


def test_url_credentials_and_an_authorization_header_cannot_both_be_sent() -> None:
    manager = LlmManager()
    with pytest.raises(ConfigurationError, match="Authorization") as caught:
        manager.add_provider("openai", "k", "gpt-x", base_url=f"https://u:{SECRET}@gw.example/v1")
    assert SECRET not in str(caught.value)
    manager.add_provider("anthropic", "k", "c", base_url=f"https://u:{SECRET}@gw.example")
    assert SECRET not in repr(manager.instances()) + repr(manager._all)


def test_a_provider_tripping_over_a_setting_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = get_provider(ProviderType.ANTHROPIC)

    def broken(*args: Any, **kwargs: Any) -> Any:  # a provider bug on an odd setting
        raise TypeError("'>=' not supported between instances of 'int' and 'str'")

    monkeypatch.setattr(type(provider), "build", broken)
    with pytest.raises(ConfigurationError, match=r"'claude-edge'.*TypeError") as caught:
        LlmManager().add_provider("anthropic", "k", "c", name="claude-edge")
    assert isinstance(caught.value.__cause__, TypeError)


@pytest.mark.parametrize("port", ["99999", "abc", "-1"])
def test_a_base_url_with_a_bad_port_is_refused_at_set_up(port: str) -> None:
    # Found by review: without this, every request to the instance ended as the request's own
    # error at send time instead of the set-up failing (or the request failing over).
    manager = LlmManager()
    with pytest.raises(ConfigurationError, match="base_url"):
        manager.add_provider("openai", "k", "m", base_url=f"http://127.0.0.1:{port}/v1")


def test_a_password_holding_url_delimiters_is_masked_whole() -> None:
    for password in ("pa/ss" + SECRET, "s3cr#" + SECRET, "a?b" + SECRET):
        for url in (f"http://user:{password}@host/v1", f"redis://:{password}@host:6379/0"):
            shown = mask_url(url)
            assert SECRET not in shown and "***@host" in shown, shown
