"""The suite's own guard (tests/conftest.py): nothing in a test process leaves loopback."""

from __future__ import annotations

import socket

import pytest

from ryze_async import ConnectionFailedError, RyzeClient


async def test_the_default_base_url_cannot_be_reached_from_a_test() -> None:
    # The default base URL is the real RyzeAPI: a test that forgot base_url must fail, not call.
    async with RyzeClient(token="test-token", instance="my-instance", max_retries=0) as client:
        with pytest.raises(ConnectionFailedError, match="nothing was sent"):
            await client.fake_call("5511999999999")


def test_resolving_a_remote_name_is_refused_before_any_query() -> None:
    with pytest.raises(socket.gaierror, match="loopback only"):
        socket.getaddrinfo("ryzeapi.cloud", 443)


def test_loopback_still_resolves() -> None:
    assert socket.getaddrinfo("127.0.0.1", 80)
    assert socket.getaddrinfo("localhost", 80)
