"""Bots on the shared Redis quota (issue 15): ``available_in`` as on the local quota, and the
interactive reserve in force from the client's construction, before its first call. A real
redis-server and the fake server; Redis's log and the fake server's record are the oracles."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from aiohttp import web
from redis import asyncio as aioredis

from ryze_async import QuotaTimeoutError, RedisQuota, RyzeClient
from ryze_async.testing import FakeRyzeServer, RedisServer
from ryze_async.testing._shared_quota import REDIS_SERVER

pytestmark = [
    pytest.mark.infra,
    pytest.mark.skipif(not Path(REDIS_SERVER).exists(), reason="redis-server is not installed"),
]

LIMIT, PERIOD, MARGIN = 4, 2.0, 0.1




@pytest.mark.parametrize("lane", ["bulk", "interactive"])
async def test_a_refusal_says_when_the_quota_could_admit_the_call(
    redis_server: RedisServer, raw: aioredis.Redis, lane: str
) -> None:
    digest = uuid.uuid4().hex
    q = RedisQuota.from_url(redis_server.url, token_digest=digest, limit=LIMIT,
                            period=PERIOD, margin=MARGIN)
    try:
        for _ in range(LIMIT):
            await q.acquire()
            q.settle()
        secs, micros = await raw.time()
        first = min(score for _, score in await raw.zrange(
            f"ryze:{{{digest}}}:log", 0, -1, withscores=True))
        with pytest.raises(QuotaTimeoutError) as refused:
            await q.acquire(lane=lane, max_wait=0.5)  # type: ignore[arg-type]
        available = refused.value.available_in
        assert available is not None
        # The first admission's slot comes back a window (period + margin) after it.
        expected = (first / 1e6 + PERIOD + MARGIN) - (int(secs) + micros / 1e6)
        assert available == pytest.approx(expected, abs=0.25)
        assert 0.5 < available <= PERIOD + MARGIN
    finally:
        await q.aclose()


async def _reserve_announced(raw: aioredis.Redis, bound: float) -> bool:
    """True once some client's reserve is announced in Redis (polled, for `bound` s at most)."""
    async with asyncio.timeout(bound):
        # Redis is another server: nothing to wait on but its state.
        while not [k async for k in raw.scan_iter("ryze:{*}:reserves")]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return True


async def test_the_reserve_holds_from_the_bots_construction_before_its_first_call(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    await raw.flushall()
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD,
                              instances=("bot", "campaign")) as server:
        settings = {"token": "test-token", "base_url": server.url, "rate_limit": LIMIT,
                    "rate_period": PERIOD, "rate_margin": MARGIN,
                    "quota_url": redis_server.url}
        bot = RyzeClient(instance="bot", interactive_reserve=2, **settings)  # no call, no with
        bulk = RyzeClient(instance="campaign", priority="bulk", **settings)
        try:
            try:
                await _reserve_announced(raw, 5.0)
            except TimeoutError:
                pytest.fail("the bot's reserve was not announced before its first call")
            sent = 0
            for i in range(LIMIT):  # the bulk user tries to take the whole window at once
                try:
                    await bulk.fake_call(f"5511900000{i:03d}", max_wait=0)
                    sent += 1
                except QuotaTimeoutError:
                    pass
            assert sent == LIMIT - 2, sent
            await bot.fake_call("5511988887777", max_wait=0)  # a reserved slot, at once
            await bot.fake_call("5511988887778", max_wait=0)
        finally:
            await bulk.aclose()
            await bot.aclose()
        assert [r.status for r in server.requests] == [200] * LIMIT


async def test_the_example_bot_puts_its_reserve_in_force_when_it_starts(
    redis_server: RedisServer, raw: aioredis.Redis,
) -> None:
    # examples/bot.py builds its client before the event loop runs (web.run_app): the reserve
    # must be announced when the app starts, not at the first user's call.
    from .test_example_bot import load_bot

    bot = load_bot()
    await raw.flushall()
    client = await asyncio.to_thread(  # built where no loop runs, as main() does
        RyzeClient, token="test-token", instance="bot", base_url="http://127.0.0.1:9",
        rate_limit=LIMIT, rate_period=PERIOD, quota_url=redis_server.url,
        interactive_reserve=2)
    runner = web.AppRunner(bot.make_app(client))
    await runner.setup()
    try:
        keys = [k async for k in raw.scan_iter("ryze:{*}:reserves")]
        assert keys, "the bot's reserve is not in force before its first call"
        assert await raw.zcard(keys[0]) == 1
    finally:
        await runner.cleanup()
    assert client.closed
    assert await raw.zcard(keys[0]) == 0  # withdrawn at shutdown
