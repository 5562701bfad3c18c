"""The fake RyzeAPI server's routes, bodies, auth and rate windows, over loopback with plain
aiohttp."""

from __future__ import annotations

import copy
import re
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest

from ryze_async.testing import FakeRyzeServer

from .fake_server_helpers import AUDIO, TOKEN, FakeClock, call

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
