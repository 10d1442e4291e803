"""The loopback guard itself must bite, or it protects nothing."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import NetworkGuardError


def test_guard_refuses_public_address() -> None:
    with socket.socket() as s, pytest.raises(NetworkGuardError):
        s.connect(("93.184.216.34", 80))


def test_guard_refuses_private_range_and_names() -> None:
    with pytest.raises(NetworkGuardError):
        socket.getaddrinfo("api.openai.com", 443)
    with socket.socket() as s, pytest.raises(NetworkGuardError):
        s.connect(("10.0.0.1", 80))


def test_guard_allows_loopback() -> None:
    assert socket.getaddrinfo("127.0.0.1", 80)
    assert socket.getaddrinfo("localhost", 80)
