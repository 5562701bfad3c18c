"""Attacks on the shared Redis quota's lanes and reserve (issue 11), on a real redis-server.

Each test states the attack; the oracle is Redis's own record (the log, and Redis TIME at the
moment each admission was handed to its caller, i.e. when it would be sent), never a duration.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis

from ryze_async import RedisQuota
from ryze_async.testing import RedisServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._shared_quota import REDIS_SERVER

pytestmark = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed (apt install redis)"
)

LIMIT, PERIOD, MARGIN = 4, 1.0, 0.1
EPS = 2e-6


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    async with aioredis.Redis.from_url(redis_server.url) as connection:
        yield connection


def quota(url: str, digest: str, reserve: int = 0, limit: int = LIMIT) -> RedisQuota:
    return RedisQuota.from_url(url, token_digest=digest, limit=limit, period=PERIOD,
                               margin=MARGIN, reserve=reserve)


async def redis_now(raw: aioredis.Redis) -> float:
    secs, micros = await raw.time()
    return float(secs) + micros / 1e6


async def test_a_waiter_that_wakes_late_never_sends_outside_its_slot(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Attack: a process stalls (GC pause, SIGSTOP, a blocked loop) while a call sleeps towards
    # its reserved slot, and wakes a window later. Its entry has aged out of the log, so the
    # other process was given the whole next window: a late send would be limit + 1 there.
    # The oracle: Redis time when each admission reached its caller (the send).
    digest = uuid.uuid4().hex
    q, other = quota(redis_server.url, digest), quota(redis_server.url, digest)
    sends: list[float] = []
    try:
        for _ in range(LIMIT):
            await q.acquire()
            q.settle()
            sends.append(await redis_now(raw))
        waiter = asyncio.create_task(q.acquire())  # a slot about a window away: it sleeps
        for _ in range(1000):
            if await raw.zcard(f"ryze:{{{digest}}}:log") == LIMIT + 1:
                break
            await asyncio.sleep(0.002)
        time.sleep(PERIOD + 2 * MARGIN + 1.2)  # noqa: ASYNC251 - the stall: this loop does nothing
        admission = await waiter
        sends.append(await redis_now(raw))
        for _ in range(LIMIT):
            await other.acquire()
            sends.append(await redis_now(raw))
        assert max_in_window(sends, PERIOD) <= LIMIT, sends
        assert sends[LIMIT] - float(admission) <= MARGIN  # sent within its slot's margin
        assert max_in_window(sends, PERIOD) <= LIMIT
    finally:
        await q.aclose()
        await other.aclose()
