"""The quota end to end: real clients and a real server on loopback, on the virtual clock.

Client and server run in one `VirtualTimeLoop` and the server's clock is that loop's clock, so
a wait for the next window costs no real time and the elapsed time is exact: the tests assert
the ideal schedule itself, not the ideal with a slack that hides a late or early wake-up.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

LIMIT, PERIOD, CALLS = 10, 2.0, 35
IDEAL = (math.ceil(CALLS / LIMIT) - 1) * PERIOD  # a burst of 10, then 10 more every 2 s
EPOCH = 1_750_000_000.0  # the server's Unix time when the loop's clock reads 0
START = 1000.0  # the loop's clock at the start: a monotonic clock is never near 0


def virtual_server(*, phase: float = 0.0, **settings: Any) -> FakeRyzeServer:
    """A fake server whose wall clock is the running loop's clock (call inside the loop),
    ``phase`` seconds past a whole second: where its Date header ticks matters."""
    loop = asyncio.get_running_loop()
    return FakeRyzeServer(clock=lambda: EPOCH + phase + loop.time(), **settings)


def client_for(server: FakeRyzeServer, **settings: Any) -> RyzeClient:
    return RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                      backoff_initial=0.01, backoff_max=0.05, **settings)


def on_virtual_time(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    run_virtual(test(), start=START)


MARGIN = 0.1  # the client's default safety margin for a 2 s period (default_margin)
WAITS = math.ceil(CALLS / LIMIT) - 1
# A sliding server's reset is read against its Date header, whole seconds: up to 1 s late.
LATE = {"fixed": 0.0, "sliding": 1.0}


@pytest.mark.parametrize("phase", [0.0, 0.37, 0.99])
@pytest.mark.parametrize("window", ["fixed", "sliding"])
def test_concurrent_calls_get_no_429_and_the_ideal_time(window: str, phase: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server(rate_limit=LIMIT, rate_period=PERIOD, window=window,
                                  phase=phase) as server, \
                client_for(server, rate_limit=LIMIT, rate_period=PERIOD) as client:
            started = loop.time()
            results = await asyncio.gather(
                *(client.fake_call(f"55119{i:08d}") for i in range(CALLS)))
            elapsed = loop.time() - started
            statuses = [r.status for r in server.requests]
            assert statuses.count(429) == 0
            assert len(server.placed_calls) == CALLS
            assert all(r.success for r in results)
            # Never early (that would be a 429 on a real server), and late only by the margin
            # (and, against a sliding server, the Date header's resolution): exact, no slack.
            assert elapsed >= IDEAL + WAITS * MARGIN - 1e-9, elapsed
            assert elapsed <= IDEAL + WAITS * (MARGIN + LATE[window]) + 1e-9, elapsed

    on_virtual_time(main)


def test_clients_on_one_token_share_the_quota() -> None:
    async def main() -> None:
        async with virtual_server(rate_limit=LIMIT, rate_period=PERIOD,
                                  window="sliding") as server, \
                client_for(server, rate_limit=LIMIT, rate_period=PERIOD) as first, \
                client_for(server, rate_limit=LIMIT, rate_period=PERIOD) as second:
            calls = [c.fake_call(f"55119{i:08d}") for i in range(8) for c in (first, second)]
            await asyncio.gather(*calls)
            assert [r.status for r in server.requests].count(429) == 0
            assert len(server.placed_calls) == 16

    on_virtual_time(main)


def test_another_user_of_the_token_pauses_us_until_the_reset() -> None:
    async def main() -> None:
        # Someone else spent the whole window: the server's Remaining: 0 must stop us, not a 429.
        async with virtual_server(rate_limit=3, rate_period=PERIOD,
                                  window="sliding") as server:
            async with client_for(server, rate_limit=None) as other:
                for i in range(2):
                    await other.fake_call(f"55219{i:08d}")
            async with client_for(server, rate_limit=3, rate_period=PERIOD) as client:
                await client.fake_call("5511900000001")  # the server now says remaining 0
                await client.fake_call("5511900000002")
            assert [r.status for r in server.requests] == [200, 200, 200, 200]

    on_virtual_time(main)
