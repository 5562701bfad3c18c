"""#7.9: the limiter learns what the server says remains, honours Retry-After, is per server and
token, and drops a cancelled waiter in O(1). Timing on the virtual clock."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from email.utils import formatdate

import pytest
from aiohttp import web

from ryze_async import QuotaLimiter, RyzeClient
from ryze_async.testing import FakeRyzeServer, VirtualTimeLoop, run_virtual

EPOCH = 1_800_000_000.0  # a multiple of 60: fixed windows start at virtual t = 0, 60, ...
LIMIT = 10
PERIOD = 60.0


def _server(window: str) -> FakeRyzeServer:
    loop = asyncio.get_running_loop()
    return FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window=window,  # type: ignore[arg-type]
                          clock=lambda: EPOCH + loop.time())


async def _someone_else_spends(server: FakeRyzeServer, count: int, gap: float) -> None:
    async with RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                          rate_limit=None) as other:
        for i in range(count):
            await other.fake_call(f"55119{50000000 + i:08d}")
            await asyncio.sleep(gap)


@pytest.mark.parametrize("window", ["fixed", "sliding"])
@pytest.mark.parametrize(("spent", "gap"), [(7, 0.0), (7, 4.0), (9, 1.0), (3, 0.0), (10, 1.0)])
def test_a_fresh_process_joining_a_spent_window_draws_no_429(
    window: str, spent: int, gap: float
) -> None:
    # With k > 0 left, none; with none left, only the lone first request can learn that.
    async def main() -> list[int | None]:
        async with _server(window) as server:
            await _someone_else_spends(server, spent, gap)
            async with RyzeClient(token="test-token", instance="my-instance",
                                  base_url=server.url, rate_limit=LIMIT,
                                  rate_period=PERIOD) as client:
                await asyncio.gather(*(client.fake_call(f"55119{i:08d}") for i in range(25)))
            return [r.status for r in server.requests]

    statuses = run_virtual(main(), start=1.0)
    expected_429s = 1 if spent == LIMIT else 0
    assert statuses.count(429) == expected_429s
    assert len(statuses) == spent + 25 + expected_429s


def test_the_first_admission_goes_alone_until_settled() -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(LIMIT, PERIOD, learn_first=True)
        first = await limiter.acquire()
        others = [asyncio.create_task(limiter.acquire()) for _ in range(4)]
        await asyncio.sleep(4)
        assert not any(t.done() for t in others)
        limiter.observe(limit=LIMIT, remaining=2, reset_after=20.0, admitted_at=first)
        limiter.settle()  # the server says 2 remain until t = 24
        times = [await t for t in others[:3]]
        await asyncio.sleep(1)
        assert not others[3].done()  # after the reset the first goes alone again: a new probe
        limiter.settle()
        return [*times, await others[3]]

    assert run_virtual(main()) == [4.0, 4.0, 24.0, 25.0]


# QuotaLimiter's rule: a slow probe holds the others "5 s per 60 s" of the period, never more
# than 5 s (RyzeAPI answers in far less).
@pytest.mark.parametrize(("period", "held"), [(60.0, 5.0), (12.0, 1.0), (6.0, 0.5), (120.0, 5.0)])
def test_a_slow_probe_holds_the_others_five_seconds_per_minute(period: float, held: float) -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(LIMIT, period, learn_first=True)
        await limiter.acquire()  # its answer never comes (yet)
        return list(await asyncio.gather(*(limiter.acquire() for _ in range(3))))

    assert run_virtual(main()) == [held] * 3


def test_a_probe_that_gets_no_answer_still_releases_the_others() -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(LIMIT, PERIOD, learn_first=True)
        await limiter.acquire()
        others = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
        await asyncio.sleep(1)
        limiter.settle()  # the attempt failed without an answer: nothing learnt
        return [await t for t in others]

    assert run_virtual(main()) == [1.0, 1.0, 1.0]


def test_remaining_above_zero_caps_admissions_until_the_reset() -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        first = await limiter.acquire()
        limiter.observe(limit=LIMIT, remaining=3, reset_after=30.0, admitted_at=first)
        return [await limiter.acquire() for _ in range(5)]

    assert run_virtual(main()) == [0.0, 0.0, 0.0, 30.0, 30.0]


def test_admissions_after_the_answered_one_count_against_its_remaining() -> None:
    async def main() -> float:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        answered = await limiter.acquire()
        for _ in range(2):
            await limiter.acquire()  # in flight while the answer came back
        limiter.observe(limit=LIMIT, remaining=2, reset_after=30.0, admitted_at=answered)
        return limiter.next_delay()

    assert run_virtual(main()) == 30.0


async def _answer_429_then_200(
    headers_429: Callable[[], dict[str, str]],
) -> tuple[web.AppRunner, str, list[float]]:
    loop = asyncio.get_running_loop()
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(loop.time())
        if len(seen) == 1:
            return web.json_response({"success": False, "error": {"message": "Rate limit"}},
                                     status=429, headers=headers_429())
        return web.json_response({"success": True, "message": "ok", "callId": "X",
                                  "number": "5511999999999", "duration": 8})

    app = web.Application()
    app.router.add_post("/api/call/fake/{instance}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


def _date(offset: float) -> str:
    return formatdate(EPOCH + offset, usegmt=True)


RETRY_AFTER_CASES: list[tuple[str, Callable[[], dict[str, str]], float]] = [
    ("seconds", lambda: {"Retry-After": "7"}, 7.0),
    ("http date on the server clock",
     lambda: {"Date": _date(0), "Retry-After": _date(12)}, 12.0),
    ("-0000 zone is UTC", lambda: {"Date": _date(0),
                                   "Retry-After": _date(9).replace("GMT", "-0000")}, 9.0),
    ("no header: one period", dict, PERIOD),
    ("garbage: one period", lambda: {"Retry-After": "soon"}, PERIOD),
    ("over the reset", lambda: {"Retry-After": "4", "Date": _date(0),
                                "X-RateLimit-Reset": str(int(EPOCH + 40))}, 4.0),
]


@pytest.mark.parametrize("rate_limit", [None, 100])
@pytest.mark.parametrize(("name", "headers", "wait"), RETRY_AFTER_CASES,
                         ids=[c[0] for c in RETRY_AFTER_CASES])
def test_a_429_waits_retry_after_or_one_period(
    name: str, headers: Callable[[], dict[str, str]], wait: float, rate_limit: int | None
) -> None:
    async def main() -> list[float]:
        runner, url, seen = await _answer_429_then_200(headers)
        try:
            async with RyzeClient(token="t", instance="i", base_url=url, rate_limit=rate_limit,
                                  rate_period=PERIOD) as client:
                await client.fake_call("5511999999999")
        finally:
            await runner.cleanup()
        return seen

    seen = run_virtual(main())
    assert len(seen) == 2
    assert seen[1] - seen[0] == pytest.approx(wait, abs=0.01)


# Two servers on one token are two quotas: tests/test_limiter_sharing.py.


class _CountingFuture(asyncio.Future):  # type: ignore[type-arg]
    """A waiter's future that counts every look at it: done() and each comparison a scan
    (deque.remove, ``in``) makes. A lazy skip looks at each cancelled waiter once or twice."""

    visits = 0

    def done(self) -> bool:
        _CountingFuture.visits += 1
        return super().done()

    def __eq__(self, other: object) -> bool:
        _CountingFuture.visits += 1
        return self is other

    def __hash__(self) -> int:
        return id(self)


class _CountingLoop(VirtualTimeLoop):
    def create_future(self) -> asyncio.Future:  # type: ignore[type-arg]
        return _CountingFuture(loop=self)


def _cancel_waiters(n: int, loop: type[VirtualTimeLoop] = VirtualTimeLoop) -> float:
    """Real CPU seconds to cancel `n` queued waiters, newest first (the worst case for a scan)."""

    async def main() -> float:
        limiter = QuotaLimiter(1, PERIOD, margin=0.0)
        await limiter.acquire()
        waiters = [asyncio.create_task(limiter.acquire()) for _ in range(n)]
        await asyncio.sleep(0)
        survivor = waiters.pop(0)
        gc.disable()
        try:
            started = time.process_time()
            _CountingFuture.visits = 0
            for task in reversed(waiters):
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            elapsed = time.process_time() - started
        finally:
            gc.enable()
        assert await survivor == PERIOD  # FIFO and the slot survive the mass cancel
        assert await limiter.acquire() == 2 * PERIOD
        return elapsed

    with asyncio.Runner(loop_factory=loop) as runner:
        return runner.run(main())


def test_cancelling_many_waiters_visits_each_once() -> None:
    # A scan per cancelled waiter would be ~n^2 / 2 = 12,500,000 visits here.
    _cancel_waiters(5_000, _CountingLoop)
    assert 0 < _CountingFuture.visits <= 4 * 5_000


def test_cancelling_twenty_thousand_waiters_takes_linear_time() -> None:
    # Linear: ~10x the time of 2,000 (cache effects push it to ~16x); the O(n^2) scan: ~100x.
    small = min(_cancel_waiters(2_000) for _ in range(3))
    large = min(_cancel_waiters(20_000) for _ in range(2))
    assert large < 40 * small, (small, large)


@pytest.mark.parametrize("stale_first", [True, False])
def test_the_freshest_answer_decides_the_budget(stale_first: bool) -> None:
    # Six calls; the answers of the first (admitted at 0) and the last (at 2) both say 4 remain.
    # Read alone, the first's must assume our five later calls were not counted yet (-1: none
    # left until the reset); the last's shows the server counted all six: the log decides. In
    # whatever order they come back, the fresher answer decides.
    async def main() -> float:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        first = await limiter.acquire()
        await asyncio.sleep(1.0)
        for _ in range(4):
            await limiter.acquire()
        await asyncio.sleep(1.0)
        last = await limiter.acquire()
        answers = [first, last] if stale_first else [last, first]
        for admitted_at in answers:
            limiter.observe(limit=LIMIT, remaining=4, reset_after=30.0, admitted_at=admitted_at)
        return limiter.next_delay()

    assert run_virtual(main()) == 0.0


def test_a_fresher_answer_that_shows_less_room_still_caps() -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        first = await limiter.acquire()
        await asyncio.sleep(1.0)
        last = await limiter.acquire()
        limiter.observe(limit=LIMIT, remaining=8, reset_after=30.0, admitted_at=first)
        limiter.observe(limit=LIMIT, remaining=1, reset_after=30.0, admitted_at=last)  # a stranger
        return [await limiter.acquire() for _ in range(2)]

    assert run_virtual(main()) == [1.0, 31.0]


def test_a_same_instant_batch_answered_in_order_holds_nobody() -> None:
    # One pump admits a batch at one loop time. The answers of its calls, counted by the server
    # in admission order, each say exactly what our log knows: no budget, no hold. Read with
    # every same-instant call counted as later, the first answers said "-18 left" and held the
    # quota until the server's reset (up to a second late with whole-second headers): a
    # sliding-window server ran at about 70 % of its quota.
    async def main() -> float:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        slots = await asyncio.gather(*(limiter.acquire() for _ in range(LIMIT)))
        assert len(set(slots)) == 1  # one instant
        for i, slot in enumerate(slots):
            limiter.observe(limit=LIMIT, remaining=LIMIT - 1 - i, reset_after=PERIOD + 3,
                            admitted_at=slot)
        return limiter.next_delay()

    assert run_virtual(main()) == PERIOD + 1.0  # the log's own next slot, not the reset
