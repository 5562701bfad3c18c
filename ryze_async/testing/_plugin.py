"""pytest plugin (entry point ``pytest11: ryze_async``): fixtures for the fake RyzeAPI server.

Fixtures:

* ``ryze_server`` -- a started `FakeRyzeServer` with default settings, stopped after the test.
* ``ryze_server_factory`` -- an async callable: ``server = await ryze_server_factory(**kwargs)``
  takes `FakeRyzeServer`'s keyword arguments and returns a started server; every server it
  made is stopped after the test (even when one of the stops fails).

pytest loads this plugin in every run where ryze_async is installed. The fixtures are async
and need pytest-asyncio; when pytest-asyncio is not installed this module registers nothing
(and still imports cleanly), so unrelated test suites are unaffected.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from typing import Any

from ._server import FakeRyzeServer, ServerFactory

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def ryze_server() -> AsyncIterator[FakeRyzeServer]:
        """A started FakeRyzeServer with default settings."""
        async with FakeRyzeServer() as server:
            yield server

    @pytest_asyncio.fixture
    async def ryze_server_factory() -> AsyncIterator[ServerFactory]:
        """An async factory of started FakeRyzeServers, all stopped at teardown."""
        servers: list[FakeRyzeServer] = []

        async def factory(**kwargs: Any) -> FakeRyzeServer:
            server = FakeRyzeServer(**kwargs)
            await server.start()
            servers.append(server)
            return server

        try:
            yield factory
        finally:
            # Stop every server even if one stop fails; report the first failure.
            first_error: BaseException | None = None
            for server in reversed(servers):
                try:
                    await server.stop()
                except Exception as exc:  # re-raised below, after the other stops
                    first_error = first_error or exc
            if first_error is not None:
                raise first_error
