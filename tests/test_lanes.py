"""Lanes, the interactive reserve and deadlines in the local limiter, on virtual time."""

from __future__ import annotations

import asyncio
import contextlib
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ryze_async
from ryze_async import QuotaLimiter, QuotaTimeoutError, RyzeClient, RyzeError
from ryze_async.testing import MockRequest, MockResponse, MockTransport, run_virtual
from ryze_async.testing._quota_sim import max_in_window

PERIOD = 10.0


def limiter(limit: int = 2, **kw: object) -> QuotaLimiter:
    return QuotaLimiter(limit, PERIOD, margin=0.0, **kw)  # type: ignore[arg-type]


def test_interactive_waiter_goes_before_every_queued_bulk_waiter() -> None:
    async def main() -> list[tuple[str, float]]:
        quota = limiter()
        order: list[tuple[str, float]] = []

        async def take(name: str, lane: str) -> None:
            await quota.acquire(lane=lane)  # type: ignore[arg-type]
            order.append((name, asyncio.get_running_loop().time()))

        bulk = [asyncio.create_task(take(f"b{i}", "bulk")) for i in range(6)]
        await asyncio.sleep(1)
        urgent = asyncio.create_task(take("i", "interactive"))
        await asyncio.gather(*bulk, urgent)
        return order

    order = run_virtual(main())
    # b0, b1 burst at 0; the next free slot (t=10) is the interactive caller's, FIFO for bulk.
    assert order[:3] == [("b0", 0.0), ("b1", 0.0), ("i", 10.0)]
    assert [name for name, _ in order[3:]] == ["b2", "b3", "b4", "b5"]


def test_bulk_leaves_the_reserve_of_every_window_free() -> None:
    async def main() -> tuple[list[float], float]:
        quota = limiter(4, reserve=1)
        bulk = [asyncio.create_task(quota.acquire(lane="bulk")) for _ in range(6)]
        await asyncio.sleep(0.5)
        assert quota.try_acquire(lane="bulk") is None
        interactive = quota.try_acquire()  # the reserved slot, at once
        assert interactive is not None
        return list(await asyncio.gather(*bulk)), interactive

    bulk, interactive = run_virtual(main())
    assert interactive == 0.5
    # Bulk never holds more than 3 of any window: the last waits for the interactive stamp.
    assert bulk == [0.0, 0.0, 0.0, 10.0, 10.0, 10.5]


def test_the_stricter_reserve_among_a_tokens_users_wins() -> None:
    """Three clients on one token (reserves 2, 5 and none) share one quota: bulk calls get
    ``limit - 5`` slots of the first window, whichever client sends them."""
    start = 1000.0

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        sent: list[float] = []

        def answer(request: MockRequest) -> MockResponse:
            sent.append(loop.time())
            return MockResponse(200, {"success": True, "message": "placed"})

        transport = MockTransport(answer)
        clients = [RyzeClient(token="tok", instance="i", transport=transport, rate_limit=10,
                              rate_period=PERIOD, interactive_reserve=reserve,
                              priority="bulk")
                   for reserve in (2, 5, 0)]
        calls = [c.fake_call(f"55119{i:08d}") for i in range(4) for c in clients]
        await asyncio.wait_for(asyncio.gather(*calls), PERIOD * 10)
        return sent

    sent = run_virtual(main(), start=start)
    assert len(sent) == 12
    assert sum(t < start + PERIOD for t in sent) == 5


def test_cancelled_interactive_waiter_leaves_the_slot_to_bulk() -> None:
    async def main() -> float:
        quota = limiter(1)
        await quota.acquire()
        bulk = asyncio.create_task(quota.acquire(lane="bulk"))
        urgent = asyncio.create_task(quota.acquire())
        await asyncio.sleep(1)
        urgent.cancel()
        return await bulk

    assert run_virtual(main()) == PERIOD


def test_deadline_raises_at_once_when_the_slot_is_known_to_be_later() -> None:
    async def main() -> tuple[float, QuotaTimeoutError]:
        loop = asyncio.get_running_loop()
        quota = limiter(2)
        waiters = [asyncio.create_task(quota.acquire()) for _ in range(6)]
        await asyncio.sleep(0)
        started = loop.time()
        # Two admitted at 0, four ahead: this caller's turn is at 30 at the earliest.
        with pytest.raises(QuotaTimeoutError) as caught:
            await quota.acquire(deadline=started + 25)
        elapsed = loop.time() - started
        assert await asyncio.gather(*waiters) == [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]
        return elapsed, caught.value

    elapsed, error = run_virtual(main())
    assert elapsed == 0.0
    assert error.available_in == pytest.approx(30.0)
    assert isinstance(error, RyzeError)


def test_deadline_bounds_the_wait_when_the_slot_is_not_known_to_be_later() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        quota = QuotaLimiter(1, PERIOD, margin=0.0)
        await quota.acquire()
        quota.hold_until(0.0)
        # The log says t=10; a 429's hold set later pushes it to 40: found out while waiting.
        waiter = asyncio.create_task(quota.acquire(deadline=15.0))
        await asyncio.sleep(1)
        quota.hold_until(39.0)
        with pytest.raises(QuotaTimeoutError):
            await waiter
        assert quota.try_acquire() is None
        assert await quota.acquire() == 40.0  # the timed-out waiter took no slot
        return loop.time()

    assert run_virtual(main()) == 40.0


def test_deadline_met_is_a_slot() -> None:
    async def main() -> float:
        quota = limiter(1)
        await quota.acquire()
        return await quota.acquire(deadline=PERIOD)

    assert run_virtual(main()) == PERIOD


def test_quota_timeout_error_is_public_and_pickles() -> None:
    error = QuotaTimeoutError("no slot", max_wait=2.0, available_in=7.5)
    assert "QuotaTimeoutError" in ryze_async.__all__
    assert type(error).__module__ == "ryze_async"
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (again.max_wait, again.available_in, str(again)) == (2.0, 7.5, str(error))


@settings(max_examples=60, deadline=None, database=None)
@given(
    limit=st.integers(1, 6),
    reserve=st.integers(0, 5),
    arrivals=st.lists(
        st.tuples(st.floats(0, 30), st.sampled_from(["interactive", "bulk"]), st.booleans()),
        min_size=1, max_size=40),
)
def test_any_window_bound_and_lane_order_hold_for_any_mix(
    limit: int, reserve: int, arrivals: list[tuple[float, str, bool]]
) -> None:
    reserve = min(reserve, limit - 1)

    async def main() -> list[tuple[float, str, float]]:
        loop = asyncio.get_running_loop()
        quota = QuotaLimiter(limit, PERIOD, margin=0.0, reserve=reserve)
        admitted: list[tuple[float, str, float]] = []

        async def one(at: float, lane: str, cancel: bool) -> None:
            await asyncio.sleep(at)
            task = asyncio.ensure_future(quota.acquire(lane=lane))  # type: ignore[arg-type]
            if cancel:
                loop.call_later(PERIOD / 3, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                admitted.append((await task, lane, at))

        await asyncio.gather(*(one(*a) for a in arrivals))
        return admitted

    admitted = run_virtual(main())
    window = PERIOD - 1e-9  # margin 0: a slot comes back exactly one period after its use
    times = [t for t, _, _ in admitted]
    assert max_in_window(times, window) <= limit
    bulk = [t for t, lane, _ in admitted if lane == "bulk"]
    if bulk:
        assert max_in_window(bulk, window) <= max(1, limit - reserve)
    # No bulk call is admitted while an interactive one waits.
    waiting = [(came, t) for t, lane, came in admitted if lane == "interactive" and t > came]
    assert not [(b, came, t) for b in bulk for came, t in waiting if came < b < t]
