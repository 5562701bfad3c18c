"""Issue 8: the client core's seams: transport=, MockTransport, hooks, the quota backend."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from ryze_async import (
    ClientClosedError,
    ConnectionFailedError,
    Hooks,
    OutcomeUnknownError,
    QuotaBackend,
    QuotaLimiter,
    QuotaTimeoutError,
    QuotaWaitEnded,
    QuotaWaitStarted,
    RateLimitError,
    RequestEnded,
    RequestStarted,
    RetryScheduled,
    RyzeClient,
)
from ryze_async.testing import MockRequest, MockResponse, MockTransport, run_virtual

TOKEN = "tok-SECRET-7f3a9c"
NUMBER = "5511999999999"
PLACED = MockResponse(200, {"success": True, "message": "Call placed", "callId": "C1"})


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_request_started(self, details: RequestStarted) -> None:
        self.events.append(details)

    def on_request_ended(self, details: RequestEnded) -> None:
        self.events.append(details)

    def on_retry_scheduled(self, details: RetryScheduled) -> None:
        self.events.append(details)

    def on_quota_wait_started(self, details: QuotaWaitStarted) -> None:
        self.events.append(details)

    def on_quota_wait_ended(self, details: QuotaWaitEnded) -> None:
        self.events.append(details)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


def client_with(transport: MockTransport, **kwargs: object) -> RyzeClient:
    options: dict[str, object] = {"token": TOKEN, "instance": "inst", "rate_limit": None,
                                  "max_retries": 2, "backoff_initial": 1.0, "backoff_max": 1.0}
    options.update(kwargs)
    return RyzeClient(transport=transport, **options)  # type: ignore[arg-type]


def answers(*items: MockResponse | Exception) -> MockTransport:
    pending = list(items)

    def handler(_request: MockRequest) -> MockResponse:
        item = pending.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return MockTransport(handler)


# -- MockTransport and the transport seam ---------------------------------------------------------


def test_mock_transport_records_what_the_client_sends() -> None:
    async def handler(request: MockRequest) -> MockResponse:  # a coroutine handler works too
        await asyncio.sleep(0)
        return PLACED

    transport = MockTransport(handler)

    async def main() -> None:
        async with client_with(transport) as client:
            result = await client.fake_call("+55 11 99999-9999", duration=5)
            assert result.call_id == "C1"
            await client.audio_call(NUMBER, media_url="https://example.com/m.mp3",
                                    instance="other")

    run_virtual(main())
    fake, audio = transport.requests
    assert fake.url.endswith("/api/call/fake/inst")
    assert fake.json() == {"number": NUMBER, "duration": 5}
    assert fake.headers["token"] == TOKEN
    assert audio.url.endswith("/api/call/audio/other")
    assert audio.json() == {"number": NUMBER, "mediaUrl": "https://example.com/m.mp3"}
    assert TOKEN not in repr(fake)
    assert transport.closed  # the client closes the transport it was given


def test_a_never_sent_failure_is_retried_and_an_unknown_one_is_not() -> None:
    retried = answers(MockTransport.not_sent(), PLACED)
    unknown = answers(MockTransport.unknown(), PLACED)

    async def main() -> None:
        async with client_with(retried) as client:
            assert (await client.fake_call(NUMBER)).success
        async with client_with(unknown) as client:
            with pytest.raises(OutcomeUnknownError):
                await client.fake_call(NUMBER)

    run_virtual(main())
    assert len(retried.requests) == 2
    assert len(unknown.requests) == 1


def test_attempts_count_every_try_when_the_client_gives_up() -> None:
    transport = answers(*[MockTransport.not_sent()] * 3)

    async def main() -> None:
        async with client_with(transport) as client:
            with pytest.raises(ConnectionFailedError) as info:
                await client.fake_call(NUMBER)
        assert info.value.attempts == 3
        assert TOKEN not in repr(info.value)

    run_virtual(main())
    assert len(transport.requests) == 3


def test_a_closed_client_sends_nothing_through_its_transport() -> None:
    transport = answers(PLACED)

    async def main() -> None:
        client = client_with(transport)
        await client.aclose()
        with pytest.raises(ClientClosedError):
            await client.fake_call(NUMBER)

    run_virtual(main())
    assert transport.requests == []


# -- hooks ---------------------------------------------------------------------------------------


def test_each_event_fires_once_per_real_occurrence() -> None:
    hooks = Recorder()
    transport = answers(MockTransport.not_sent(), MockResponse(429), PLACED)

    async def main() -> None:
        async with client_with(transport, hooks=hooks) as client:
            await client.fake_call(NUMBER)

    run_virtual(main())
    assert hooks.kinds() == [
        "RequestStarted", "RequestEnded", "RetryScheduled",  # never sent: resent
        "RequestStarted", "RequestEnded", "RetryScheduled",  # 429: sent again after its reset
        "RequestStarted", "RequestEnded",
    ]
    s1, e1, r1, s2, e2, r2, s3, e3 = hooks.events
    assert [s.attempt for s in (s1, s2, s3)] == [1, 2, 3]  # type: ignore[attr-defined]
    assert (e1.error, e1.sent, e1.status) == ("ConnectionFailedError", False, None)  # type: ignore[attr-defined]
    assert (e2.error, e2.sent, e2.status) == (None, True, 429)  # type: ignore[attr-defined]
    assert (e3.error, e3.sent, e3.status) == (None, True, 200)  # type: ignore[attr-defined]
    assert (r1.reason, r1.attempt) == ("not_sent", 2)  # type: ignore[attr-defined]
    assert (r2.reason, r2.attempt, r2.delay) == ("rate_limited", 3, 60.0)  # type: ignore[attr-defined]
    assert s1.url.endswith("/api/call/fake/inst")  # type: ignore[attr-defined]
    assert {e.kind for e in hooks.events} == {"fake"}  # type: ignore[attr-defined]


def test_an_unknown_outcome_ends_its_request_as_sent() -> None:
    hooks = Recorder()

    async def main() -> None:
        async with client_with(answers(MockTransport.unknown()), hooks=hooks) as client:
            with pytest.raises(OutcomeUnknownError):
                await client.fake_call(NUMBER)

    run_virtual(main())
    assert hooks.kinds() == ["RequestStarted", "RequestEnded"]
    ended = hooks.events[1]
    assert (ended.error, ended.sent) == ("OutcomeUnknownError", True)  # type: ignore[attr-defined]


def test_a_quota_wait_is_reported_when_it_begins_and_ends() -> None:
    hooks = Recorder()

    async def main() -> None:
        async with client_with(answers(PLACED, PLACED), hooks=hooks, rate_limit=1,
                               rate_period=60.0, rate_margin=1.0) as client:
            await client.fake_call(NUMBER)
            await client.fake_call(NUMBER)

    run_virtual(main())
    assert hooks.kinds() == ["RequestStarted", "RequestEnded", "QuotaWaitStarted",
                             "QuotaWaitEnded", "RequestStarted", "RequestEnded"]
    ended = hooks.events[3]
    assert ended.admitted  # type: ignore[attr-defined]
    assert ended.waited == pytest.approx(61.0)  # type: ignore[attr-defined]


def test_details_carry_neither_the_token_nor_the_number() -> None:
    hooks = Recorder()
    transport = answers(MockTransport.not_sent(), MockResponse(429), PLACED, PLACED)

    async def main() -> None:
        async with client_with(transport, hooks=[hooks], rate_limit=1, rate_period=60.0) as c:
            await c.fake_call(NUMBER)
            await c.fake_call(NUMBER)

    run_virtual(main())
    assert set(hooks.kinds()) >= {"RequestStarted", "RequestEnded", "RetryScheduled",
                                  "QuotaWaitStarted", "QuotaWaitEnded"}
    for event in hooks.events:
        shown = repr(event) + repr(dataclasses.astuple(event))  # type: ignore[call-overload]
        assert TOKEN not in shown
        assert NUMBER not in shown
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.kind = "audio"  # type: ignore[attr-defined]


def test_a_hook_that_raises_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def on_request_started(self, details: RequestStarted) -> None:
            raise RuntimeError("hook bug")

    good = Recorder()
    transport = answers(PLACED)

    async def main() -> None:
        async with client_with(transport, hooks=(Broken(), good)) as client:
            assert (await client.fake_call(NUMBER)).success

    with caplog.at_level(logging.ERROR, logger="ryze_async"):
        run_virtual(main())
    assert good.kinds() == ["RequestStarted", "RequestEnded"]
    assert "hook bug" in caplog.text
    assert len(transport.requests) == 1


# -- the quota backend ----------------------------------------------------------------------------


def _backend(limit: int) -> QuotaBackend:
    return QuotaLimiter(limit, 60.0, margin=0.0)  # the local limiter is a QuotaBackend


def test_local_limiter_as_a_quota_backend() -> None:
    async def main() -> None:
        quota = _backend(2)
        first = quota.try_acquire()
        second = quota.try_acquire()
        assert first == second == 0.0
        assert quota.try_acquire() is None  # full: a caller must wait
        assert second is not None
        quota.release(second)  # never sent: the slot comes back
        assert quota.try_acquire() == 0.0
        with pytest.raises(QuotaTimeoutError):  # the next slot is at 60: refused at once
            await quota.acquire(deadline=1.0)
        assert await quota.acquire() == 60.0
        quota.hold_until(30.0)
        quota.observe(limit=None, remaining=None, reset_after=None)
        quota.settle()
        loop = asyncio.get_running_loop()
        assert await quota.acquire() == loop.time() == 90.0

    run_virtual(main())


def test_a_slot_whose_call_never_left_is_given_back() -> None:
    hooks = Recorder()

    async def refuse() -> None:
        raise RuntimeError("journal write failed")

    transport = answers(PLACED)

    async def main() -> float:
        async with client_with(transport, hooks=hooks, rate_limit=1, rate_period=60.0) as c:
            with pytest.raises(RuntimeError):
                await c.fake_call(NUMBER, before_send=refuse)
            await c.fake_call(NUMBER)
        return asyncio.get_running_loop().time()

    assert run_virtual(main()) == 0.0  # the second call did not wait for the first's slot
    assert "QuotaWaitStarted" not in hooks.kinds()
    assert len(transport.requests) == 1


def test_rate_limit_error_after_every_allowed_resend() -> None:
    transport = answers(MockResponse(429), MockResponse(429), MockResponse(429))

    async def main() -> None:
        async with client_with(transport) as client:
            with pytest.raises(RateLimitError):
                await client.fake_call(NUMBER)

    run_virtual(main())
    assert len(transport.requests) == 3


def test_only_the_aiohttp_transport_imports_aiohttp_on_the_client_side() -> None:
    import ast
    from pathlib import Path

    import ryze_async

    package = Path(ryze_async.__file__).parent
    importers = set()
    for path in package.rglob("*.py"):
        if "testing" in path.relative_to(package).parts:
            continue  # the fake server is the server side
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "aiohttp" or name.startswith("aiohttp.") for name in names):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"_transports/_aiohttp.py"}


@pytest.mark.parametrize(("second_url", "shared"), [("http://127.0.0.1:1", True),
                                                    ("http://127.0.0.1:2", False)])
def test_clients_share_a_quota_per_token_and_server(second_url: str, shared: bool) -> None:
    hooks = Recorder()

    async def main() -> float:
        clients = [client_with(answers(PLACED), base_url=url, rate_limit=1, rate_period=60.0,
                               rate_margin=0.0, hooks=hooks)
                   for url in ("http://127.0.0.1:1", second_url)]
        for client in clients:
            await client.fake_call(NUMBER)
            await client.aclose()
        return asyncio.get_running_loop().time()

    elapsed = run_virtual(main())
    assert ("QuotaWaitStarted" in hooks.kinds()) is shared
    assert elapsed == (60.0 if shared else 0.0)
