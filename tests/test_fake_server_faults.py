"""The fake RyzeAPI server's faults and connection handling, over loopback with plain aiohttp."""

from __future__ import annotations

import asyncio
import errno

import aiohttp
import pytest

from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .fake_server_helpers import AUDIO, FakeClock, call

# -- faults ------------------------------------------------------------------------------


async def test_drop_after_read(ryze_server: FakeRyzeServer, session: aiohttp.ClientSession) -> None:
    ryze_server.fail_next(Fault.DROP_AFTER_READ)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, ryze_server)
    dropped = ryze_server.requests[0]
    assert dropped.status is None
    assert dropped.json == AUDIO
    after = await call(session, ryze_server)
    assert (after.status, after.rate()[1]) == (200, 99)  # the dropped one did not count


def test_hang_times_the_client_out_and_stop_is_clean() -> None:
    # On the virtual clock: the client's timeout costs no real time.
    async def main() -> None:
        server = FakeRyzeServer()
        await server.start()
        try:
            server.fail_next(Fault.HANG)
            async with aiohttp.ClientSession() as session:
                with pytest.raises(asyncio.TimeoutError):
                    await call(session, server, timeout=aiohttp.ClientTimeout(total=0.2))
            assert server.requests[0].status is None
            await asyncio.wait_for(server.stop(), timeout=3)
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert others == []
        finally:
            await server.stop()

    run_virtual(main(), start=1000.0)


async def test_stop_releases_a_parked_hang(session: aiohttp.ClientSession) -> None:
    server = FakeRyzeServer()
    await server.start()
    waiting = None
    try:
        server.set_fault(Fault.HANG)
        waiting = asyncio.create_task(call(session, server))
        await server.wait_for_requests(1)
        assert not waiting.done()
        await asyncio.wait_for(server.stop(), timeout=3)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await waiting
        assert [r.status for r in server.requests] == [None]
    finally:
        await server.stop()
        if waiting is not None and not waiting.done():
            waiting.cancel()


async def test_server_error_html_502_and_rate_limited(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(30.0)
    async with FakeRyzeServer(clock=clock) as server:
        server.fail_next(Fault.SERVER_ERROR)
        server.fail_next(Fault.HTML_502)
        server.fail_next(Fault.RATE_LIMITED)
        error = await call(session, server)
        assert error.status == 500
        assert error.json() == {"success": False, "error": {"message": "internal failure"}}
        proxy = await call(session, server)
        assert proxy.status == 502
        assert proxy.headers["Content-Type"].startswith("text/html")
        assert proxy.body.lstrip().startswith(b"<html>")
        limited = await call(session, server)
        assert (limited.status, limited.message) == (429, "Rate limit exceeded. Try again later.")
        assert limited.rate() == (100, 0, 60)
        normal = await call(session, server)
        assert (normal.status, normal.rate()) == (200, (100, 99, 60))
        assert [r.status for r in server.requests] == [500, 502, 429, 200]


async def test_redirect_is_recorded_whether_followed_or_not(
    ryze_server: FakeRyzeServer, session: aiohttp.ClientSession
) -> None:
    ryze_server.fail_next(Fault.REDIRECT, times=2)
    kept = await call(session, ryze_server, allow_redirects=False)
    assert kept.status == 307
    assert kept.headers["Location"] == f"{ryze_server.url}/redirected"
    assert len(ryze_server.requests) == 1
    followed = await call(session, ryze_server)
    assert followed.status == 404
    hits = [(r.method, r.path, r.status) for r in ryze_server.requests]
    assert hits[1:] == [("POST", "/api/call/audio/my-instance", 307), ("POST", "/redirected", 404)]


async def test_truncated_body(ryze_server: FakeRyzeServer, session: aiohttp.ClientSession) -> None:
    ryze_server.fail_next(Fault.TRUNCATED)
    with pytest.raises(aiohttp.ClientPayloadError):
        await call(session, ryze_server)
    assert [r.status for r in ryze_server.requests] == [None]
    assert ryze_server.placed_calls == []


async def test_fault_queue_order_persistence_and_token_first(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeRyzeServer() as server:
        server.fail_next(Fault.SERVER_ERROR, times=2)
        server.set_fault(Fault.HTML_502)
        assert (await call(session, server, token="bad")).status == 401  # consumes nothing
        statuses = [(await call(session, server)).status for _ in range(4)]
        assert statuses == [500, 500, 502, 502]
        server.set_fault(None)
        assert (await call(session, server)).status == 200
        server.fail_next(Fault.SERVER_ERROR)
        server.reset()
        assert server.requests == []
        after_reset = await call(session, server)  # no fault left, and a fresh window
        assert (after_reset.status, after_reset.rate()[1]) == (200, 99)
        with pytest.raises(ValueError, match="at least 1"):
            server.fail_next(Fault.HANG, times=0)


# -- connections and paths ----------------------------------------------------------------


async def test_refuse_and_accept_on_the_same_port(ryze_server: FakeRyzeServer) -> None:
    port = ryze_server.port
    async with aiohttp.ClientSession() as pooled:
        assert (await call(pooled, ryze_server)).status == 200
        await ryze_server.refuse_connections()
        assert ryze_server.port == port
        async with aiohttp.ClientSession() as fresh:
            with pytest.raises(aiohttp.ClientConnectorError) as refused:
                await call(fresh, ryze_server)
        assert refused.value.os_error.errno == errno.ECONNREFUSED
        # The idle pooled connection was closed too: nothing slips through it.
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(pooled, ryze_server)
        assert len(ryze_server.requests) == 1
        await ryze_server.accept_connections()
        assert ryze_server.port == port
        assert (await call(pooled, ryze_server)).status == 200


async def test_unstarted_server_with_explicit_port_refuses(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer() as probe:
        port = probe.port
    server = FakeRyzeServer(port=port)
    assert server.url == f"http://127.0.0.1:{port}"
    with pytest.raises(aiohttp.ClientConnectorError):
        await call(session, server)
    async with server:
        assert (await call(session, server)).status == 200


async def test_raw_path_keeps_the_encoded_slash(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer(instances=["a/b"]) as server:
        reply = await call(session, server, instance="a%2Fb")
        assert reply.status == 200
        (record,) = server.requests
        assert record.path == "/api/call/audio/a%2Fb"
        assert record.instance == "a/b"
        assert (await call(session, server, instance="a/b")).status == 404  # two segments


async def test_connection_ids_show_keep_alive_reuse(ryze_server: FakeRyzeServer) -> None:
    async with aiohttp.ClientSession() as first:
        await call(first, ryze_server)
        await call(first, ryze_server)
    async with aiohttp.ClientSession() as second:
        await call(second, ryze_server)
    ids = [r.connection_id for r in ryze_server.requests]
    assert ids[0] == ids[1] != ids[2]
    assert ryze_server.connections_accepted == 2


async def test_response_delay(session: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    async with FakeRyzeServer(response_delay=0.05) as server:
        started = loop.time()
        assert (await call(session, server)).status == 200
        assert loop.time() - started >= 0.05


async def test_stop_drops_a_delayed_response(session: aiohttp.ClientSession) -> None:
    server = FakeRyzeServer(response_delay=3600)
    await server.start()
    waiting = None
    try:
        waiting = asyncio.create_task(call(session, server))
        await server.wait_for_requests(1)
        await asyncio.wait_for(server.stop(), timeout=3)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await waiting
        assert [r.status for r in server.requests] == [None]
    finally:
        await server.stop()
        if waiting is not None and not waiting.done():
            waiting.cancel()


def test_keepalive_timeout_closes_idle_connections() -> None:
    # On the virtual clock (the server's keep-alive timer is the loop's): the idle gap costs no
    # real time.
    async def main() -> None:
        async with FakeRyzeServer(keepalive_timeout=0.05) as server, \
                aiohttp.ClientSession() as session:
            await call(session, server)
            await call(session, server)
            # Six times the server's keep-alive: its close timer fires first on this loop.
            await asyncio.sleep(0.3)
            await call(session, server)
            first, reused, after_idle = (r.connection_id for r in server.requests)
            assert first == reused != after_idle
            assert server.connections_accepted == 2

    run_virtual(main(), start=1000.0)


def test_constructor_refuses_non_loopback_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeRyzeServer(host="0.0.0.0")  # noqa: S104 - the point is that it is refused
    with pytest.raises(ValueError, match="rate_limit"):
        FakeRyzeServer(rate_limit=0)
    with pytest.raises(ValueError, match="window"):
        FakeRyzeServer(window="leaky")  # type: ignore[arg-type]

