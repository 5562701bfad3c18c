"""The fake RyzeAPI server, end to end over loopback with a plain aiohttp ClientSession."""

from __future__ import annotations

import asyncio
import copy
import errno
import importlib.util
import json
import re
import sys
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ryze_async.testing import FakeRyzeServer, Fault, ServerFactory

pytest_plugins = ("pytester",)

TOKEN = "test-token"
AUDIO = {"number": "5511999999999", "mediaUrl": "https://example.com/m.mp3"}


class FakeClock:
    """A server clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Reply:
    """What the client saw."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def message(self) -> str:
        message: str = self.json()["error"]["message"]
        return message

    def json(self) -> Any:
        return json.loads(self.body)

    def rate(self) -> tuple[int, int, int]:
        return (
            int(self.headers["X-RateLimit-Limit"]),
            int(self.headers["X-RateLimit-Remaining"]),
            int(self.headers["X-RateLimit-Reset"]),
        )


async def call(
    session: aiohttp.ClientSession,
    server: FakeRyzeServer,
    body: Any = None,
    *,
    route: str = "audio",
    instance: str = "my-instance",
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    **kwargs: Any,
) -> Reply:
    sent = dict(headers or {})
    if token is not None:
        sent["token"] = token
    url = URL(f"{server.url}/api/call/{route}/{instance}", encoded=True)
    json_body = (AUDIO if body is None else body) if raw is None else None
    async with session.post(url, json=json_body, data=raw, headers=sent, **kwargs) as resp:
        return Reply(resp.status, resp.headers.copy(), await resp.read())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


# -- routes and bodies -------------------------------------------------------------------


async def test_audio_call_success_bodies(
    ryze_server: FakeRyzeServer, session: aiohttp.ClientSession
) -> None:
    by_url = await call(session, ryze_server, AUDIO)
    jid = "5511999999999@s.whatsapp.net"
    by_b64 = await call(session, ryze_server, {"number": jid, "mediaBase64": "SUQz"})
    for reply, number in ((by_url, AUDIO["number"]), (by_b64, jid)):
        assert reply.status == 200
        body = reply.json()
        assert set(body) == {"success", "message", "callId", "number"}
        assert body["success"] is True
        assert body["message"] == "Audio call placed"
        assert body["number"] == number
        assert re.fullmatch(r"[0-9A-F]{20}", body["callId"])
        assert reply.headers["Content-Type"].startswith("application/json")
    assert by_url.json()["callId"] != by_b64.json()["callId"]
    assert [r.json["number"] for r in ryze_server.placed_calls] == [AUDIO["number"], jid]


@pytest.mark.parametrize(("sent", "expected"), [(None, 8), (0, 8), (1, 1), (60, 60)])
async def test_fake_call_success_and_default_duration(
    ryze_server: FakeRyzeServer, session: aiohttp.ClientSession, sent: int | None, expected: int
) -> None:
    body: dict[str, Any] = {"number": "5511999999999"}
    if sent is not None:
        body["duration"] = sent
    reply = await call(session, ryze_server, body, route="fake")
    assert reply.status == 200
    payload = reply.json()
    assert payload.pop("callId")
    assert payload == {
        "success": True,
        "message": "Call placed successfully",
        "number": "5511999999999",
        "duration": expected,
    }
    assert ryze_server.placed_calls[0].route == "fake"


async def test_health_needs_no_token_and_is_not_limited(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer(rate_limit=1) as server:
        for _ in range(3):
            async with session.get(f"{server.url}/health") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok", "service": "RyzeAPI"}
                assert "X-RateLimit-Limit" not in resp.headers
        assert (await call(session, server)).status == 200  # the one slot is still free
        assert [r.route for r in server.requests] == ["health"] * 3 + ["audio"]


@pytest.mark.parametrize(
    ("route", "raw", "message"),
    [
        ("audio", b"{", "Invalid request body: Expecting property name"),
        ("audio", b"", "Invalid request body: Expecting value"),
        ("audio", b"[1]", "Invalid request body: expected a JSON object"),
        ("audio", b'{"number": 55, "mediaUrl": "u"}', "Invalid request body: number must be"),
        ("audio", b'{"mediaUrl": "u"}', "Number is required"),
        ("audio", b'{"number": "", "mediaUrl": "u"}', "Number is required"),
        ("audio", b'{"number": "1"}', "Provide exactly one of mediaUrl or mediaBase64"),
        ("audio", b'{"number": "1", "mediaUrl": "", "mediaBase64": ""}', "Provide exactly one"),
        ("audio", b'{"number": "1", "mediaUrl": "u", "mediaBase64": "b"}', "Provide exactly one"),
        ("fake", b'{"number": "1", "duration": 61}', "Duration must be between 1 and 60 seconds"),
        ("fake", b'{"number": "1", "duration": -1}', "Duration must be between 1 and 60 seconds"),
        ("fake", b'{"number": "1", "duration": "8"}', "Invalid request body: duration must be"),
        ("fake", b'{"number": "1", "duration": 8.5}', "Invalid request body: duration must be"),
        ("fake", b'{"duration": 8}', "Number is required"),
    ],
)
async def test_body_validation(
    ryze_server: FakeRyzeServer,
    session: aiohttp.ClientSession,
    route: str,
    raw: bytes,
    message: str,
) -> None:
    reply = await call(session, ryze_server, route=route, raw=raw)
    assert reply.status == 400
    assert reply.json()["success"] is False
    assert reply.message.startswith(message)
    assert reply.rate()[1] == 99  # validated after the rate limit: it counted
    assert ryze_server.placed_calls == []
    assert ryze_server.requests[0].body == raw


async def test_unknown_keys_are_ignored(
    ryze_server: FakeRyzeServer, session: aiohttp.ClientSession
) -> None:
    reply = await call(session, ryze_server, {**AUDIO, "delay": 5, "extra": {"x": 1}})
    assert reply.status == 200


async def test_other_routes_are_404_envelopes(
    ryze_server: FakeRyzeServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"{ryze_server.url}/api/call/audio/my-instance") as resp:
        assert resp.status == 404
        assert await resp.json() == {"success": False, "error": {"message": "Not Found"}}
    async with session.post(f"{ryze_server.url}/api/call/video/my-instance") as resp:
        assert resp.status == 404
    empty = await call(session, ryze_server, instance="")
    assert (empty.status, empty.message) == (400, "Instance name is required")
    assert [r.route for r in ryze_server.requests] == ["other", "other", "audio"]


# -- auth, instances, rate limits ---------------------------------------------------------


async def test_auth_header_bearer_and_rejections(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer(rate_limit=5) as server:
        assert (await call(session, server)).status == 200
        bearer = await call(
            session, server, token=None, headers={"Authorization": "Bearer " + TOKEN}
        )
        assert bearer.status == 200
        missing = await call(session, server, token=None)
        assert (missing.status, missing.message) == (401, "Missing token in header")
        invalid = await call(session, server, token="nope")
        assert (invalid.status, invalid.message) == (401, "Invalid token")
        assert "X-RateLimit-Remaining" not in invalid.headers
        # The two 401s did not count: 2 of 5 used.
        assert (await call(session, server)).rate()[1] == 2
        by_header, by_bearer = server.requests[0].headers, server.requests[1].headers
        assert by_header["token"] == by_header["TOKEN"] == by_header.get("Token") == TOKEN
        assert "authorization" not in by_header
        assert by_bearer["authorization"] == f"Bearer {TOKEN}"
        assert "Token" not in by_bearer
        with pytest.raises(TypeError, match="read-only"):
            by_header["token"] = "changed"
        assert copy.deepcopy(by_header) == by_header
        assert TOKEN not in repr(server.requests[0])
        assert TOKEN not in repr(server)


async def test_each_token_has_its_own_bucket(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer(tokens=["second"], rate_limit=2) as server:
        assert [(await call(session, server)).status for _ in range(3)] == [200, 200, 429]
        other = await call(session, server, token="second")
        assert other.status == 200
        assert other.rate()[:2] == (2, 1)


async def test_instances_missing_disconnected_and_added(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer() as server:
        missing = await call(session, server, instance="nope")
        assert (missing.status, missing.message) == (404, "instance not found")
        assert missing.rate()[1] == 99
        server.disconnect_instance("my-instance")
        down = await call(session, server)
        assert (down.status, down.message) == (503, "Instance is not connected to WhatsApp")
        server.disconnect_instance("my-instance", status=400)
        assert (await call(session, server)).status == 400
        server.connect_instance("my-instance")
        assert (await call(session, server)).status == 200
        server.add_instance("new")
        assert (await call(session, server, instance="new")).status == 200
        with pytest.raises(KeyError):
            server.disconnect_instance("ghost")
        with pytest.raises(ValueError, match="400 or 503"):
            server.disconnect_instance("new", status=500)  # type: ignore[arg-type]


async def test_fixed_window_limit_reset_and_next_window(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(1000.5)  # window [960, 1020)
    async with FakeRyzeServer(rate_limit=3, clock=clock) as server:
        replies = [await call(session, server) for _ in range(3)]
        assert [r.rate() for r in replies] == [(3, 2, 1020), (3, 1, 1020), (3, 0, 1020)]
        clock.now = 1019.9
        refused = await call(session, server)
        assert (refused.status, refused.message) == (429, "Rate limit exceeded. Try again later.")
        assert refused.rate() == (3, 0, 1020)
        assert "Retry-After" not in refused.headers
        clock.now = 1020.0
        fresh = await call(session, server)
        assert (fresh.status, fresh.rate()) == (200, (3, 2, 1080))
        assert [r.status for r in server.requests] == [200, 200, 200, 429, 200]
        assert len(server.placed_calls) == 4


async def test_fixed_window_phase_and_ceiled_reset(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(1000.0)
    async with FakeRyzeServer(rate_limit=5, window_phase=15.25, clock=clock) as server:
        # Windows start at 15.25 + k*60: this one is [975.25, 1035.25), announced as 1036.
        assert (await call(session, server)).rate() == (5, 4, 1036)


async def test_a_429_is_not_counted_but_a_404_is(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(0.0)
    async with FakeRyzeServer(rate_limit=2, clock=clock) as server:
        assert (await call(session, server, instance="nope")).status == 404
        assert (await call(session, server)).status == 200
        assert (await call(session, server)).status == 429
        assert (await call(session, server)).status == 429
        clock.now = 60.0
        assert (await call(session, server)).rate()[1] == 1


async def test_sliding_window_frees_exactly_one_slot(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(1000.0)
    async with FakeRyzeServer(rate_limit=2, window="sliding", clock=clock) as server:
        assert (await call(session, server)).rate() == (2, 1, 1060)
        clock.now = 1010.0
        assert (await call(session, server)).rate() == (2, 0, 1060)
        clock.now = 1059.5
        assert (await call(session, server)).status == 429
        clock.now = 1060.0  # the first request leaves the window: one slot, not two
        freed = await call(session, server)
        assert (freed.status, freed.rate()) == (200, (2, 0, 1070))
        again = await call(session, server)
        assert (again.status, again.rate()) == (429, (2, 0, 1070))


async def test_no_rate_limit_keeps_headers(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer(rate_limit=None, clock=FakeClock(0.0)) as server:
        replies = [await call(session, server) for _ in range(150)]
        assert {r.status for r in replies} == {200}
        unlimited = FakeRyzeServer.UNLIMITED
        assert replies[-1].rate() == (unlimited, unlimited - 150, 60)


async def test_date_header_follows_the_injected_clock(session: aiohttp.ClientSession) -> None:
    clock = FakeClock(1_700_000_000.9)
    async with FakeRyzeServer(clock=clock) as server:
        placed = await call(session, server)
        async with session.get(f"{server.url}/nowhere") as resp:
            not_found_date = resp.headers["Date"]
        assert placed.headers["Date"] == "Tue, 14 Nov 2023 22:13:20 GMT"
        assert not_found_date == placed.headers["Date"]
        clock.now += 3600
        later = await call(session, server)
        assert parsedate_to_datetime(later.headers["Date"]).timestamp() == 1_700_003_600
        assert server.requests[0].received_at == 1_700_000_000.9


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


async def test_hang_times_the_client_out_and_stop_is_clean(session: aiohttp.ClientSession) -> None:
    server = FakeRyzeServer()
    await server.start()
    try:
        server.fail_next(Fault.HANG)
        with pytest.raises(asyncio.TimeoutError):
            await call(session, server, timeout=aiohttp.ClientTimeout(total=0.2))
        assert server.requests[0].status is None
        await asyncio.wait_for(server.stop(), timeout=3)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []
    finally:
        await server.stop()


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


async def test_keepalive_timeout_closes_idle_connections(session: aiohttp.ClientSession) -> None:
    async with FakeRyzeServer(keepalive_timeout=0.05) as server:
        await call(session, server)
        await call(session, server)
        # Six times the server's keep-alive: its close timer fires first on this loop.
        await asyncio.sleep(0.3)
        await call(session, server)
        first, reused, after_idle = (r.connection_id for r in server.requests)
        assert first == reused != after_idle
        assert server.connections_accepted == 2


def test_constructor_refuses_non_loopback_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeRyzeServer(host="0.0.0.0")  # noqa: S104 - the point is that it is refused
    with pytest.raises(ValueError, match="rate_limit"):
        FakeRyzeServer(rate_limit=0)
    with pytest.raises(ValueError, match="window"):
        FakeRyzeServer(window="leaky")  # type: ignore[arg-type]


# -- pytest plugin ------------------------------------------------------------------------


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


def test_plugin_registers_nothing_without_pytest_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest_asyncio", None)
    spec = importlib.util.find_spec("ryze_async.testing._plugin")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not hasattr(module, "ryze_server")
    assert not hasattr(module, "ryze_server_factory")
