"""Shared fixtures: a client factory bound to a fake server, closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer

ClientFactory = Callable[..., RyzeClient]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """``make_client(server, **overrides)``: a client for ``server``, closed after the test."""
    clients: list[RyzeClient] = []

    def factory(server: FakeRyzeServer, **overrides: Any) -> RyzeClient:
        settings: dict[str, Any] = {
            "token": "test-token",
            "instance": "my-instance",
            "base_url": server.url,
            "rate_limit": None,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        }
        settings.update(overrides)
        client = RyzeClient(**settings)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
