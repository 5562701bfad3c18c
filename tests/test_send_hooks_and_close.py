"""#7.7 and #7.8: the client tells its caller when an attempt was refused or never sent, and
nothing is sent after ``aclose()``; the fake server's own record is the oracle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ryze_async import ClientClosedError, ConnectionFailedError, RateLimitError, RyzeClient
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .conftest import ClientFactory, slow_connects
from .sessions import record_sessions

NUMBER = "5511999999999"
EPOCH = 1_750_000_000.0  # the fake server's Unix clock at the virtual loop's time 0


def _client(server: FakeRyzeServer, **overrides: Any) -> RyzeClient:
    """``make_client``'s client, for the tests on the virtual clock (their own event loop)."""
    settings: dict[str, Any] = {"token": "test-token", "instance": "my-instance",
                                "base_url": server.url, "rate_limit": None,
                                "backoff_initial": 0.01, "backoff_max": 0.05}
    return RyzeClient(**{**settings, **overrides})


def _hooks(events: list[str]) -> dict[str, object]:
    async def before_send() -> None:
        events.append("before_send")

    async def on_not_sent() -> None:
        events.append("not_sent")

    return {"before_send": before_send, "on_not_sent": on_not_sent}


def test_a_429_is_reported_not_sent_before_the_wait() -> None:
    # On the virtual clock: the second the 429's reset holds the call costs no real time.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with FakeRyzeServer(rate_period=1.0, clock=lambda: EPOCH + loop.time()) as server:
            server.fail_next(Fault.RATE_LIMITED)
            events: list[str] = []
            hooks = _hooks(events)
            real_not_sent = hooks["on_not_sent"]

            async def on_not_sent() -> None:
                await real_not_sent()  # type: ignore[operator]
                events.append(f"server saw {len(server.requests)}")

            async with _client(server) as client:
                result = await client.fake_call(
                    NUMBER, before_send=hooks["before_send"],  # type: ignore[arg-type]
                    on_not_sent=on_not_sent)
        assert result.success
        assert events == ["before_send", "not_sent", "server saw 1", "before_send"]
        assert [r.status for r in server.requests] == [429, 200]

    run_virtual(main(), start=1000.0)


async def test_connection_retries_report_each_refusal_and_precede_each_attempt(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    await ryze_server.refuse_connections()
    client = make_client(ryze_server, max_retries=2)
    events: list[str] = []
    with pytest.raises(ConnectionFailedError):
        await client.fake_call(NUMBER, **_hooks(events))  # type: ignore[arg-type]
    # Not called when the client gives up: the caller handles the exception.
    assert events == ["before_send", "not_sent", "before_send", "not_sent", "before_send"]
    assert ryze_server.requests == []


async def test_before_send_raising_sends_nothing(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    client = make_client(ryze_server)

    async def refuse() -> None:
        raise RuntimeError("journal full")

    with pytest.raises(RuntimeError, match="journal full"):
        await client.fake_call(NUMBER, before_send=refuse)
    assert ryze_server.requests == []


def test_giving_up_after_429s_does_not_report_not_sent() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with FakeRyzeServer(rate_period=0.2, clock=lambda: EPOCH + loop.time()) as server:
            server.fail_next(Fault.RATE_LIMITED, times=2)
            events: list[str] = []
            async with _client(server, max_retries=1) as client:
                with pytest.raises(RateLimitError):
                    await client.fake_call(NUMBER, **_hooks(events))  # type: ignore[arg-type]
        assert events == ["before_send", "not_sent", "before_send"]

    run_virtual(main(), start=1000.0)


async def test_calls_waiting_for_quota_fail_closed_and_are_never_sent(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = record_sessions(monkeypatch)
    client = make_client(ryze_server, rate_limit=2, rate_period=60.0)
    calls = [asyncio.ensure_future(client.fake_call(f"55119{i:08d}")) for i in range(8)]
    await ryze_server.wait_for_requests(2)
    await asyncio.sleep(0.05)
    await client.aclose()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    closed = [o for o in outcomes if isinstance(o, ClientClosedError)]
    placed = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(placed) == 2
    assert len(closed) == 6
    await asyncio.sleep(0.1)  # anything that would still go out has had its chance
    assert len(ryze_server.requests) == 2
    assert len(sessions) == 1  # no session was reopened after close
    assert sessions[0].closed


async def test_a_call_in_its_429_wait_fails_closed(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    ryze_server.fail_next(Fault.RATE_LIMITED)
    client = make_client(ryze_server)
    events: list[str] = []
    call = asyncio.ensure_future(client.fake_call(NUMBER, **_hooks(events)))  # type: ignore[arg-type]
    await ryze_server.wait_for_requests(1)
    await asyncio.sleep(0.05)
    assert events == ["before_send", "not_sent"]
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await call
    assert len(ryze_server.requests) == 1


async def test_a_call_in_retry_backoff_fails_closed(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    await ryze_server.refuse_connections()
    client = make_client(ryze_server, max_retries=5, backoff_initial=30.0, backoff_max=30.0)
    refused = asyncio.Event()

    async def on_not_sent() -> None:
        refused.set()

    call = asyncio.ensure_future(client.fake_call(NUMBER, on_not_sent=on_not_sent))
    await refused.wait()  # the first attempt was refused; the backoff (up to 30 s) starts
    await ryze_server.accept_connections()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await call
    await asyncio.sleep(0.05)
    assert ryze_server.requests == []


async def test_an_outside_cancel_is_still_a_cancel(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    client = make_client(ryze_server, rate_limit=1, rate_period=60.0)
    await client.fake_call(NUMBER)
    call = asyncio.ensure_future(client.fake_call(NUMBER))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(ryze_server.requests) == 1


@pytest.mark.parametrize("connected", [False, True])
def test_a_call_cancelled_before_its_first_byte_is_reported_not_sent(
    monkeypatch: pytest.MonkeyPatch, connected: bool
) -> None:
    # Cancelled while its connection is being made, the call sent nothing: on_not_sent is
    # awaited (a campaign's row goes back to pending) and its slot is given back. Cancelled
    # once its bytes left (the server holds the answer), it may have been placed: no hook.
    slow_connects(monkeypatch, [0.0 if connected else 30.0])

    async def main() -> None:
        async with FakeRyzeServer(clock=lambda: EPOCH + asyncio.get_running_loop().time()) \
                as server:
            if connected:
                server.fail_next(Fault.HANG)
            events: list[str] = []
            async with _client(server, rate_limit=1, rate_period=60.0) as client:
                task = asyncio.create_task(
                    client.fake_call(NUMBER, **_hooks(events)))  # type: ignore[arg-type]
                await asyncio.sleep(5)  # the virtual loop's time: connecting, or sent
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert len(server.requests) == int(connected)
                if connected:
                    assert events == ["before_send"]
                    return
                assert events == ["before_send", "not_sent"]
                # The slot came back: the next call goes at once, not a period later.
                began = asyncio.get_running_loop().time()
                monkeypatch.undo()
                await client.fake_call(NUMBER)
                assert asyncio.get_running_loop().time() - began < 1.0

    run_virtual(main(), start=1000.0)
