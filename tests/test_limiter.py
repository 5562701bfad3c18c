"""QuotaLimiter and the virtual-time loop, all on virtual time (deterministic, no real waits)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time

import pytest
from aiolimiter import AsyncLimiter

from ryze_async import QuotaLimiter
from ryze_async.testing._quota_sim import (
    fixed_window_rejections,
    ideal_time,
    jittered,
    max_in_window,
    run_admissions,
    sliding_window_rejections,
)
from ryze_async.testing._virtual_time import VirtualTimeLoop, run_virtual

LIMIT = 100
PERIOD = 60.0
JITTER = 0.05  # requests reach the server 0..50 ms after admission
STARTS = (0.0, 17.3, 59.99, 12345.678)


def quota_times(n: int, start: float) -> list[float]:
    return run_admissions(lambda: QuotaLimiter(LIMIT, PERIOD).acquire, n, start=start)


def server_phases(first: float) -> list[float]:
    """Fixed-window boundaries relative to the first admission, including boundaries that split
    a jittered burst in two."""
    fractions = (0.0, 0.25, 0.5, 0.99)
    return [first + f * PERIOD for f in fractions] + [first + d for d in (0.01, 0.025, 0.04)]


async def stamp(limiter: QuotaLimiter) -> float:
    await limiter.acquire()
    return asyncio.get_running_loop().time()


# --- virtual time -------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [0.0, 1234.5])
def test_virtual_sleep_is_instant_and_exact(start: float) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        begin = loop.time()
        await asyncio.sleep(3600)
        return begin, loop.time()

    real_start = time.perf_counter()
    begin, end = run_virtual(main(), start=start)
    assert begin == start
    assert end - begin == 3600.0
    assert time.perf_counter() - real_start < 1.0  # an hour of virtual time, no real hour


def test_virtual_loop_reports_deadlock_instead_of_hanging() -> None:
    async def main() -> None:
        await asyncio.Event().wait()  # nothing can ever set it

    with pytest.raises(RuntimeError, match="deadlock"):
        run_virtual(main())


def test_virtual_time_stands_still_while_an_executor_job_runs() -> None:
    async def main() -> tuple[float, bool, float]:
        loop = asyncio.get_running_loop()
        sleeper = asyncio.create_task(asyncio.sleep(5))
        await loop.run_in_executor(None, time.sleep, 0.02)
        during = loop.time()
        overtaken = sleeper.done()
        await sleeper
        return during, overtaken, loop.time()

    during, overtaken, after = run_virtual(main())
    assert (during, overtaken, after) == (0.0, False, 5.0)


def test_aiolimiter_runs_on_virtual_time_without_hanging() -> None:
    # AsyncLimiter re-arms a timer for float-rounding remainders; a clock that never moves on
    # zero-length timers spins forever there (looptime 0.9 does).
    times = run_admissions(lambda: AsyncLimiter(1, 0.6).acquire, 200)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(0.6, abs=1e-4)
    assert max(times) == pytest.approx(199 * 0.6, abs=0.01)


def test_harness_detects_aiolimiter_bursting_past_the_quota() -> None:
    times = run_admissions(lambda: AsyncLimiter(LIMIT, PERIOD).acquire, 1000)
    assert max_in_window(times, PERIOD) > LIMIT
    arrivals = jittered(times, JITTER, seed=1)
    assert fixed_window_rejections(arrivals, LIMIT, PERIOD) > 0
    assert sliding_window_rejections(arrivals, LIMIT, PERIOD) > 0


def test_harness_detects_missing_margin_under_jitter() -> None:
    times = run_admissions(lambda: QuotaLimiter(LIMIT, PERIOD, margin=0.0).acquire, 1000)
    assert max_in_window(times, PERIOD) == LIMIT  # exact on paper...
    arrivals = jittered(times, JITTER, seed=1)
    assert sliding_window_rejections(arrivals, LIMIT, PERIOD) > 0  # ...but not on the wire


# --- the quota ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start", STARTS)
def test_thousand_admissions_respect_every_window_and_use_the_quota(start: float) -> None:
    times = quota_times(1000, start)
    assert len(times) == 1000
    assert times == sorted(times)
    # Any 60 s window holding limit+1 admissions would contain times[i] and times[i + limit].
    assert all(b - a >= PERIOD for a, b in zip(times, times[LIMIT:], strict=False))
    assert max_in_window(times, PERIOD) == LIMIT
    for phase in server_phases(times[0]):
        assert fixed_window_rejections(times, LIMIT, PERIOD, phase) == 0
    assert sliding_window_rejections(times, LIMIT, PERIOD) == 0
    assert times[0] == start
    assert max(times) - start <= 1.02 * ideal_time(1000, LIMIT, PERIOD)


@pytest.mark.parametrize(("start", "seed"), [(0.0, 1), (17.3, 2), (59.99, 3), (12345.678, 4)])
def test_jittered_arrivals_draw_no_429_from_fixed_or_sliding_servers(
    start: float, seed: int
) -> None:
    times = quota_times(1000, start)
    arrivals = jittered(times, JITTER, seed)
    for phase in [*server_phases(times[0]), 0.0]:
        assert fixed_window_rejections(arrivals, LIMIT, PERIOD, phase) == 0
    assert sliding_window_rejections(arrivals, LIMIT, PERIOD) == 0


def test_burst_of_limit_then_the_next_waits_period_plus_margin() -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        assert limiter.margin == 1.0
        return [await stamp(limiter) for _ in range(LIMIT + 2)]

    times = run_virtual(main())
    assert times[:LIMIT] == [0.0] * LIMIT
    assert times[LIMIT:] == [61.0, 61.0]


def test_short_periods_keep_a_floor_margin() -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(2, 1.0)
        assert limiter.margin == 0.1
        return [await stamp(limiter) for _ in range(3)]

    assert run_virtual(main()) == [0.0, 0.0, pytest.approx(1.1)]


def test_waiters_are_served_in_arrival_order() -> None:
    rng = random.Random(7)
    arrivals = sorted(rng.uniform(0, 30) for _ in range(40))

    async def main() -> list[tuple[int, float]]:
        limiter = QuotaLimiter(3, 10.0, margin=0.5)
        served: list[tuple[int, float]] = []

        async def worker(index: int, at: float) -> None:
            await asyncio.sleep(at)
            served.append((index, await stamp(limiter)))

        async with asyncio.TaskGroup() as group:
            for index, at in enumerate(arrivals):
                group.create_task(worker(index, at))
        return served

    served = run_virtual(main())
    assert [index for index, _ in served] == list(range(len(arrivals)))
    times = [t for _, t in served]
    assert max_in_window(times, 10.0) == 3
    assert all(b - a >= 10.5 - 1e-9 for a, b in zip(times, times[3:], strict=False))


def test_a_newcomer_does_not_take_a_freed_slot_from_those_waiting() -> None:
    async def main() -> list[tuple[str, float]]:
        limiter = QuotaLimiter(2, 10.0, margin=0.0)
        log: list[tuple[str, float]] = []

        async def worker(name: str, again: bool = False) -> None:
            log.append((name, await stamp(limiter)))
            if again:  # arrives while D is being woken and a slot is free
                log.append((name + "2", await stamp(limiter)))

        await worker("A")
        await worker("B")
        async with asyncio.TaskGroup() as group:
            group.create_task(worker("C", again=True))
            group.create_task(worker("D"))
            group.create_task(worker("E"))
        return log

    names, times = zip(*run_virtual(main()), strict=True)
    assert names == ("A", "B", "C", "D", "E", "C2")
    assert times == (0.0, 0.0, 10.0, 10.0, 20.0, 20.0)


def test_cancelled_head_frees_its_place_and_takes_no_slot() -> None:
    async def main() -> tuple[float, float]:
        limiter = QuotaLimiter(1, 10.0, margin=0.0)
        await limiter.acquire()  # t=0
        head = asyncio.create_task(limiter.acquire())
        behind = asyncio.create_task(stamp(limiter))
        await asyncio.sleep(5)
        head.cancel()
        with pytest.raises(asyncio.CancelledError):
            await head
        return await behind, await stamp(limiter)

    # `behind` gets the head's slot at 10, and the next one is due only 10 s after that.
    assert run_virtual(main()) == (10.0, 20.0)


def test_cancelled_middle_waiter_takes_no_slot() -> None:
    async def main() -> tuple[float, float, float]:
        limiter = QuotaLimiter(1, 10.0, margin=0.0)
        await limiter.acquire()
        first = asyncio.create_task(stamp(limiter))
        middle = asyncio.create_task(stamp(limiter))
        last = asyncio.create_task(stamp(limiter))
        await asyncio.sleep(5)
        middle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await middle
        return await first, await last, await stamp(limiter)

    assert run_virtual(main()) == (10.0, 20.0, 30.0)


def test_waiter_cancelled_right_after_its_turn_came_passes_it_on() -> None:
    async def main() -> tuple[float, float]:
        limiter = QuotaLimiter(1, 10.0, margin=0.0)
        await limiter.acquire()
        victim: asyncio.Task[float] | None = None

        async def head() -> float:
            admitted = await stamp(limiter)  # hands the turn to `victim` on the way out
            assert victim is not None
            victim.cancel()  # before victim could run
            return admitted

        head_task = asyncio.create_task(head())
        await asyncio.sleep(0)
        victim = asyncio.create_task(stamp(limiter))
        await asyncio.sleep(0)
        last = asyncio.create_task(stamp(limiter))
        with pytest.raises(asyncio.CancelledError):
            await victim
        return await head_task, await last

    assert run_virtual(main()) == (10.0, 20.0)


# --- server feedback ----------------------------------------------------------------------------


@pytest.mark.parametrize(("admitted", "expected"), [(1, 100.0), (LIMIT, 61.0)])
def test_remaining_zero_holds_until_reset_unless_our_own_log_is_full(
    admitted: int, expected: float
) -> None:
    # One admission of ours and the server says the quota is gone: someone else shares the token,
    # obey its reset. A full log of ours already waits longer than any server window: no change.
    async def main() -> tuple[float, float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        for _ in range(admitted):
            await limiter.acquire()
        limiter.observe(limit=LIMIT, remaining=0, reset_after=100.0)
        return limiter.next_delay(), await stamp(limiter)

    assert run_virtual(main()) == (expected, expected)


def test_lower_server_limit_lowers_ours_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[int, float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        for _ in range(50):
            await limiter.acquire()
        with caplog.at_level(logging.WARNING, logger="ryze_async"):
            limiter.observe(limit=50, remaining=None, reset_after=None)
            limiter.observe(limit=50, remaining=None, reset_after=None)
            limiter.observe(limit=80, remaining=None, reset_after=None)  # never raised again
        return limiter.limit, limiter.next_delay()

    assert run_virtual(main()) == (50, 61.0)
    warnings = [r for r in caplog.records if r.name == "ryze_async"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "50" in warnings[0].getMessage()


# fmt: off
USELESS_FEEDBACK: list[tuple[int | None, int | None, float | None]] = [
    (None, None, None), (None, None, 30.0),
    (None, 0, None),  # no reset time: nothing to act on
    (None, 5, 30.0),  # quota left
    (0, None, None), (-3, None, None), (None, 0, math.nan),  # garbage
    (None, 0, -50.0),  # reset in the past: clamped to now
]
# fmt: on


@pytest.mark.parametrize(("limit", "remaining", "reset_after"), USELESS_FEEDBACK)
def test_observe_ignores_absent_or_useless_values(
    limit: int | None, remaining: int | None, reset_after: float | None
) -> None:
    async def main() -> tuple[int, float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        await limiter.acquire()
        limiter.observe(limit=limit, remaining=remaining, reset_after=reset_after)
        return limiter.limit, limiter.next_delay()

    assert run_virtual(main()) == (LIMIT, 0.0)


@pytest.mark.parametrize(("remaining", "reset_after"), [(0, 1e9), (0, math.inf), (-1, 1e9)])
def test_observe_clamps_garbage_reset(remaining: int, reset_after: float) -> None:
    async def main() -> float:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        limiter.observe(limit=None, remaining=remaining, reset_after=reset_after)
        return limiter.next_delay()

    assert run_virtual(main()) == 2 * PERIOD + 5


def test_hold_until_after_a_429_never_shortens() -> None:
    async def main() -> tuple[float, float, float]:
        limiter = QuotaLimiter(LIMIT, PERIOD)
        await limiter.acquire()
        limiter.hold_until(5.0)
        limiter.hold_until(2.0)
        with pytest.raises(ValueError, match="NaN"):
            limiter.hold_until(math.nan)
        return limiter.next_delay(), await stamp(limiter), await stamp(limiter)

    assert run_virtual(main()) == (5.0, 5.0, 5.0)


# fmt: off
BAD_CONFIGS: list[tuple[int, float, float | None]] = [
    (0, 60.0, None), (True, 60.0, None), (1, 0.0, None), (1, math.inf, None),
    (1, 60.0, -1.0), (1, 60.0, math.nan),
]
# fmt: on


@pytest.mark.parametrize(("limit", "period", "margin"), BAD_CONFIGS)
def test_bad_configuration_is_refused(limit: int, period: float, margin: float | None) -> None:
    with pytest.raises(ValueError, match=r"limit|period|margin"):
        QuotaLimiter(limit, period, margin=margin)
