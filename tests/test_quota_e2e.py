"""The quota end to end: real clients, a real server on loopback, real time."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer

from .conftest import ClientFactory

LIMIT, PERIOD, CALLS = 10, 2.0, 35
IDEAL = (math.ceil(CALLS / LIMIT) - 1) * PERIOD  # a burst of 10, then 10 more every 2 s


@pytest.mark.parametrize("window", ["fixed", "sliding"])
async def test_concurrent_calls_get_no_429_and_near_ideal_time(
    ryze_server_factory: object, make_client: ClientFactory, window: str
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        rate_limit=LIMIT, rate_period=PERIOD, window=window
    )
    client = make_client(server, rate_limit=LIMIT, rate_period=PERIOD)
    started = time.monotonic()
    results = await asyncio.gather(*(client.fake_call(f"55119{i:08d}") for i in range(CALLS)))
    elapsed = time.monotonic() - started

    statuses = [r.status for r in server.requests]
    assert statuses.count(429) == 0
    assert len(server.placed_calls) == CALLS
    assert all(r.success for r in results)
    assert IDEAL <= elapsed <= IDEAL * 1.10


async def test_clients_on_one_token_share_the_quota(
    ryze_server_factory: object, make_client: ClientFactory
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        rate_limit=LIMIT, rate_period=PERIOD, window="sliding"
    )
    first = make_client(server, rate_limit=LIMIT, rate_period=PERIOD)
    second = make_client(server, rate_limit=LIMIT, rate_period=PERIOD)
    # that they share one quota object: tests/test_seams.py, on the virtual clock
    calls = [c.fake_call(f"55119{i:08d}") for i in range(8) for c in (first, second)]
    await asyncio.gather(*calls)
    assert [r.status for r in server.requests].count(429) == 0
    assert len(server.placed_calls) == 16


async def test_another_user_of_the_token_pauses_us_until_the_reset(
    ryze_server_factory: object, make_client: ClientFactory
) -> None:
    # Someone else spent the whole window: the server's Remaining: 0 must stop us, not a 429.
    server: FakeRyzeServer = await ryze_server_factory(  # type: ignore[operator]
        rate_limit=3, rate_period=PERIOD, window="sliding"
    )
    other = RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                       rate_limit=None)
    async with other:
        for i in range(2):
            await other.fake_call(f"55219{i:08d}")
    client = make_client(server, rate_limit=3, rate_period=PERIOD)
    await client.fake_call("5511900000001")  # the server now says remaining 0
    await client.fake_call("5511900000002")
    statuses = [r.status for r in server.requests]
    assert statuses == [200, 200, 200, 200]
