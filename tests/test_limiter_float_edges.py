"""The quota under float rounding: a log that prunes and waits by different sums over-admits.

``stamp + (period + margin)`` and ``(stamp + period) + margin`` can differ in the last bit. When
the wait said "admit" while the prune kept the oldest stamp, the log grew past ``limit`` and then
admitted everything: 15 requests in one 2 s window of a 10-per-2 s server, at loop times near 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ryze_async import QuotaLimiter, RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

LIMIT, PERIOD = 10, 2.0
EPOCH = 1_750_000_000.0


def most_in_any_window(times: list[float], period: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - period:
            first += 1
        most = max(most, last - first + 1)
    return most


@settings(max_examples=60, deadline=None)
@given(start=st.sampled_from([0.0, 0.5, 1.0, 3.3])
       | st.floats(min_value=0.0, max_value=1e7, allow_nan=False),
       period=st.sampled_from([2.0, 0.7, 60.0, 1.1]),
       limit=st.integers(min_value=1, max_value=12))
def test_the_log_never_admits_more_than_limit_per_window(
    start: float, period: float, limit: int
) -> None:
    async def main() -> list[float]:
        limiter = QuotaLimiter(limit, period)
        loop = asyncio.get_running_loop()
        admitted: list[float] = []

        async def one() -> None:
            await limiter.acquire()
            admitted.append(loop.time())

        await asyncio.gather(*(one() for _ in range(4 * limit + 3)))
        return admitted

    admitted = run_virtual(main(), start=start)
    assert most_in_any_window(admitted, period) <= limit


def virtual_server(**settings: Any) -> FakeRyzeServer:
    loop = asyncio.get_running_loop()
    return FakeRyzeServer(clock=lambda: EPOCH + loop.time(), **settings)


@settings(max_examples=12, deadline=None)
@given(start=st.sampled_from([0.0, 0.5, 2.0]), window=st.sampled_from(["fixed", "sliding"]))
def test_a_server_window_never_sees_more_than_the_limit(start: float, window: str) -> None:
    async def main() -> None:
        async with virtual_server(rate_limit=LIMIT, rate_period=PERIOD, window=window) as server, \
                RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                           rate_limit=LIMIT, rate_period=PERIOD) as client:
            await asyncio.gather(*(client.fake_call(f"55119{i:08d}") for i in range(35)))
            assert [r.status for r in server.requests].count(429) == 0
            received = [r.received_at for r in server.requests]
            assert most_in_any_window(received, PERIOD) <= LIMIT

    run_virtual(main(), start=start)
