"""The transport: proxies from the environment, and failures turned into flyllm's two kinds."""

from __future__ import annotations

import gzip
import socket
import zlib

import pytest

from flyllm._display import mask_url
from flyllm._transport import Transport, _Inflater, _origin
from flyllm._wire import Timeouts
from flyllm.errors import MalformedResponseError, ProviderConnectionError
from flyllm.providers.base import HttpRequest


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


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://api.example.com/v1/chat", "https://api.example.com/v1/chat"),
        (
            "https://u:pw@api.example.com:8443/v1?key=abc#frag",
            "https://***@api.example.com:8443/v1?key=***",
        ),
        ("http://a@b@host/x", "http://***@host/x"),
        ("not a url?key=abc", "not a url?key=***"),
        ("http://host/" + "p" * 400, "http://host/" + "p" * 288 + "..."),
    ],
)
def test_urls_in_messages_lose_userinfo_and_query(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://u:pw@Example.com:8443/v1?key=abc", "https://example.com:8443"),
        ("http://[::1]:80/x", "http://[::1]:80"),
        ("http://host/x", "http://host"),
        ("http://[::1/x", None),
        ("http://bad host/x", None),
        ("/relative", None),
    ],
)
def test_an_origin_is_scheme_host_and_port_only(url: str, origin: str | None) -> None:
    assert _origin(url) == origin


def test_concatenated_gzip_members_decode_and_their_number_is_bounded() -> None:
    member = gzip.compress(b"abc")
    inflater = _Inflater("gzip", 200)
    assert b"".join(inflater.feed(member * 3)) == b"abc" * 3
    inflater.finish()
    with pytest.raises(MalformedResponseError, match="members"):
        list(_Inflater("gzip", 200).feed(gzip.compress(b"") * 1025))


def test_a_body_cut_inside_a_member_is_malformed() -> None:
    inflater = _Inflater("gzip", 200)
    list(inflater.feed(gzip.compress(b"abc" * 100)[:-4]))
    with pytest.raises(MalformedResponseError, match="ended before its end"):
        inflater.finish()


def test_inflating_goes_in_bounded_steps() -> None:
    pieces = list(_Inflater("deflate", 200).feed(zlib.compress(bytes(3 * 1024 * 1024), 9)))
    assert max(len(p) for p in pieces) <= 256 * 1024 and sum(map(len, pieces)) == 3 * 1024 * 1024
