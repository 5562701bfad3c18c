"""Stale keep-alive connections must not turn into unknown outcomes.

The server below emulates the race a real one has: its idle timeout closes a pooled connection
just as the client writes the next POST on it. The request is lost on the wire, and to the
client that is indistinguishable from a server that processed it and hung up. The defence is on
the client's side: by default never reuse a connection at all (#7.6); with pooling turned back
on, never reuse one that has been idle for `keepalive_timeout`.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from ryze_async import OutcomeUnknownError, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .conftest import ClientFactory

NUMBER = "5511999999999"
SERVER_IDLE_CLOSE = 0.15  # aiohttp ages pooled connections on the real clock: kept short


async def test_idle_connections_are_not_reused(
    ryze_server_factory: object, make_client: ClientFactory
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        stale_after=SERVER_IDLE_CLOSE
    )
    client = make_client(server, keepalive_timeout=0.1)
    await client.fake_call(NUMBER)
    # Idle past both the client's keep-alive and the server's idle close; asyncio.sleep
    # waits at least this long, so the outcome does not depend on timing luck.
    await asyncio.sleep(SERVER_IDLE_CLOSE + 0.05)
    result = await client.fake_call(NUMBER)

    assert result.success
    assert [r.status for r in server.requests] == [200, 200]
    first, second = server.requests
    assert first.connection_id != second.connection_id


async def test_a_long_client_keepalive_meets_the_race(
    ryze_server_factory: object, make_client: ClientFactory
) -> None:
    # The control: the same idle gap with a client that keeps connections longer than the
    # server does. This is the failure the default setting prevents.
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        stale_after=SERVER_IDLE_CLOSE
    )
    client = make_client(server, keepalive_timeout=30.0)
    await client.fake_call(NUMBER)
    await asyncio.sleep(SERVER_IDLE_CLOSE + 0.05)
    with pytest.raises(OutcomeUnknownError):
        await client.fake_call(NUMBER)
    assert len(server.requests) == 2


async def test_the_default_survives_the_race_with_a_fresh_connection_per_call(
    ryze_server_factory: object, make_client: ClientFactory
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        stale_after=0.0  # every reused connection is stale: only fresh ones get answers
    )
    client = make_client(server)  # the default keepalive_timeout (0)
    for _ in range(3):
        await client.fake_call(NUMBER)
    assert [r.status for r in server.requests] == [200, 200, 200]
    assert server.connections_accepted == 3


async def test_pooled_back_to_back_calls_share_a_connection(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    client = make_client(ryze_server, keepalive_timeout=1.0)  # pooling, opted into
    for _ in range(5):
        await client.fake_call(NUMBER)
    assert len({r.connection_id for r in ryze_server.requests}) == 1


async def test_keepalive_zero_opens_a_connection_per_call(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    client = make_client(ryze_server, keepalive_timeout=0)
    for _ in range(3):
        await client.fake_call(NUMBER)
    assert len({r.connection_id for r in ryze_server.requests}) == 3
    assert ryze_server.connections_accepted == 3



@pytest.mark.skipif(not getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", False)
                    or (3, 11, 1) <= sys.version_info[:3] < (3, 11, 4),
                    reason="this Python closes TLS transports itself, or its abort() of a "
                    "closed one fails (gh-104485): no cleanup at all")
@pytest.mark.parametrize(("base", "armed"), [("http://127.0.0.1:9", False),
                                            ("https://127.0.0.1:9", True)])
async def test_the_tls_cleanup_timer_runs_only_for_https(base: str, armed: bool) -> None:
    # aiohttp's closed-TLS cleanup re-arms a 2 s timer for the session's life: on plain HTTP
    # there is no TLS transport to abort, only loop turns to pay (#16: the quick loop).
    client = RyzeClient(token="t" * 20, base_url=base, allow_http=True)
    try:
        session = client._transport._session_for_running_loop()  # type: ignore[attr-defined]
        assert session.connector._cleanup_closed_disabled is not armed  # type: ignore[union-attr]
    finally:
        await client.aclose()
