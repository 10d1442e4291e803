"""The transport: proxies from the environment, and failures turned into flyllm's two kinds."""

from __future__ import annotations

import socket

import pytest

from flyllm.errors import ProviderConnectionError
from flyllm.providers.base import HttpRequest
from flyllm.transport import Timeouts, Transport


async def test_proxies_come_from_the_environment_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.corp.example")
    transport = Transport()
    transport._get_session()
    try:
        assert transport._proxy("https://api.openai.com/v1/x") == "http://proxy.internal:3128"
        assert transport._proxy("http://api.mistral.ai/v1") == "http://plain-proxy.internal:3128"
        assert transport._proxy("http://127.0.0.1:8001/v1") is None
        assert transport._proxy("https://llm.corp.example/v1") is None
    finally:
        await transport.aclose()


async def test_without_proxy_variables_requests_go_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    transport = Transport()
    transport._get_session()
    try:
        assert transport._proxy("https://api.openai.com/v1") is None
    finally:
        await transport.aclose()


async def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        transport = Transport()
        request = HttpRequest("POST", f"http://127.0.0.1:{port}/v1", {}, b"{}")
        with pytest.raises(ProviderConnectionError, match=r"127\.0\.0\.1"):
            await transport.send(request, Timeouts())
        await transport.aclose()
