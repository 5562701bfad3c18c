"""Quota checks shared by the limiter tests and benchmarks/limiter.py.

Runs many concurrent acquisitions on virtual time, adds seeded network jitter, and replays the
arrivals against two simulated servers: a fixed-window counter and a sliding-window log. A
rejected request does not count against the quota in either simulator.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ryze_async.testing._virtual_time import run_virtual

__all__ = [
    "QuotaReport",
    "admission_times",
    "evaluate",
    "fixed_window_rejections",
    "ideal_time",
    "jittered",
    "max_in_window",
    "run_admissions",
    "sliding_window_rejections",
]

Acquire = Callable[[], Awaitable[object]]


async def admission_times(acquire: Acquire, n: int) -> list[float]:
    """Start `n` tasks at once, each calling `acquire()`; loop times of admission, in order."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await acquire()
        times.append(loop.time())

    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(one())
    return times


def run_admissions(
    make_acquire: Callable[[], Acquire], n: int, *, start: float = 0.0
) -> list[float]:
    """`admission_times` on a fresh virtual-time loop starting at `start`; the limiter is built
    inside the loop by `make_acquire` (some limiters bind to the loop that first uses them)."""

    async def main() -> list[float]:
        return await admission_times(make_acquire(), n)

    return run_virtual(main(), start=start)


def max_in_window(times: Sequence[float], period: float) -> int:
    """Most events in any window of length `period`, checked from every event onwards
    (``[t, t + period)``) and up to every event (``(t - period, t]``)."""
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        starting = bisect.bisect_left(ordered, t + period) - i
        ending = bisect.bisect_right(ordered, t) - bisect.bisect_right(ordered, t - period)
        best = max(best, starting, ending)
    return best


def jittered(times: Sequence[float], max_jitter: float, seed: int) -> list[float]:
    """Arrival times at the server: each admission delayed by uniform 0..max_jitter, sorted."""
    rng = random.Random(seed)
    return sorted(t + rng.uniform(0.0, max_jitter) for t in times)


def fixed_window_rejections(
    arrivals: Sequence[float], limit: int, period: float, phase: float = 0.0
) -> int:
    """429s from a server counting in fixed windows ``[phase + k*period, phase + (k+1)*period)``."""
    counts: dict[int, int] = {}
    rejected = 0
    for arrival in sorted(arrivals):
        window = math.floor((arrival - phase) / period)
        used = counts.get(window, 0)
        if used >= limit:
            rejected += 1
        else:
            counts[window] = used + 1
    return rejected


def sliding_window_rejections(arrivals: Sequence[float], limit: int, period: float) -> int:
    """429s from a server that admits a request if fewer than `limit` were admitted in the
    ``period`` seconds up to it (``(t - period, t]``)."""
    accepted: deque[float] = deque()
    rejected = 0
    for arrival in sorted(arrivals):
        while accepted and accepted[0] <= arrival - period:
            accepted.popleft()
        if len(accepted) >= limit:
            rejected += 1
        else:
            accepted.append(arrival)
    return rejected


def ideal_time(n: int, limit: int, period: float) -> float:
    """Shortest compliant schedule: `limit` at once, then `limit` more every `period`."""
    return (math.ceil(n / limit) - 1) * period


@dataclass(frozen=True)
class QuotaReport:
    max_in_window: int  # most admissions in any `period` window
    fixed_429: int  # worst over the server phases tried
    sliding_429: int
    elapsed: float  # first start to last admission
    ideal: float

    @property
    def time_ratio(self) -> float:
        return self.elapsed / self.ideal if self.ideal else math.inf

    def compliant(self, limit: int) -> bool:
        return self.max_in_window <= limit and self.fixed_429 == 0 and self.sliding_429 == 0


def evaluate(
    times: Sequence[float],
    *,
    start: float,
    limit: int,
    period: float,
    max_jitter: float,
    seed: int,
    server_phases: Sequence[float] = (0.0,),
) -> QuotaReport:
    """Check admission `times` (of a run started at `start`) against the quota.

    Fixed-window phases are absolute loop times of a window boundary (modulo `period`).
    """
    arrivals = jittered(times, max_jitter, seed)
    return QuotaReport(
        max_in_window=max_in_window(times, period),
        fixed_429=max(fixed_window_rejections(arrivals, limit, period, p) for p in server_phases),
        sliding_429=sliding_window_rejections(arrivals, limit, period),
        elapsed=max(times) - start,
        ideal=ideal_time(len(times), limit, period),
    )
