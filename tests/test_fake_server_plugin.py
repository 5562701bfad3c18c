"""The fake server's pytest plugin: its fixtures, their teardown, and its pytest-asyncio guard."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import aiohttp
import pytest

from ryze_async.testing import FakeRyzeServer, ServerFactory, run_virtual

from .fake_server_helpers import call

pytest_plugins = ("pytester",)


async def test_factory_fixture_builds_independent_servers(
    ryze_server_factory: ServerFactory, session: aiohttp.ClientSession
) -> None:
    one = await ryze_server_factory(rate_limit=1)
    two = await ryze_server_factory(token="other", instances=["x"])
    assert one.port != two.port
    assert (await call(session, one)).status == 200
    assert (await call(session, one)).status == 429
    assert (await call(session, two, token="other", instance="x")).status == 200
    assert len(two.placed_calls) == 1


def test_plugin_stops_factory_servers_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import aiohttp, pytest

        seen = []

        @pytest.mark.asyncio
        async def test_make(ryze_server_factory, ryze_server):
            seen.append(await ryze_server_factory())
            seen.append(ryze_server)

        @pytest.mark.asyncio
        async def test_stopped():
            for server in seen:
                async with aiohttp.ClientSession() as session:
                    with pytest.raises(aiohttp.ClientConnectorError):
                        await session.get(server.url + "/health")
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-W", "error", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=2)


def test_the_documented_usage_works_in_strict_mode(pytester: pytest.Pytester) -> None:
    """docs/testing.md's example, in pytest-asyncio's strict mode, with the fixtures' defaults."""
    pytester.makepyfile(
        """
        import pytest
        from ryze_async import RyzeClient

        @pytest.mark.asyncio
        async def test_my_bot(ryze_server):
            async with RyzeClient(token="test-token", instance="my-instance",
                                  base_url=ryze_server.url) as client:
                await client.fake_call("5511999999999")
            [request] = ryze_server.requests
            assert request.route == "fake" and request.instance == "my-instance"
            assert request.json == {"number": "5511999999999"}
            assert ryze_server.placed_calls == [request]
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-W", "error", "-o", "asyncio_mode=strict",
        "-o", "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=1)


def test_plugin_registers_nothing_without_pytest_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest_asyncio", None)
    spec = importlib.util.find_spec("ryze_async.testing._plugin")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "ryze_server")
    assert not hasattr(module, "ryze_server_factory")


def test_waiting_for_requests_that_never_come_is_bounded() -> None:
    """A test whose requests never arrive fails where it waited, saying what did arrive."""
    async def main() -> None:  # on the virtual clock: the bound costs no real time
        async with FakeRyzeServer() as server, aiohttp.ClientSession() as session:
            assert (await call(session, server)).status == 200
            await server.wait_for_requests(1, timeout=0.05)  # already there: returns at once
            async with asyncio.timeout(10):  # the test's own bound, far above the one under test
                with pytest.raises(TimeoutError,
                                   match=r"waited 0\.2 s for 2 request\(s\); 1 arrived"):
                    await server.wait_for_requests(2, timeout=0.2)

    run_virtual(main(), start=1000.0)
