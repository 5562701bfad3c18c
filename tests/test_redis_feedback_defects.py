"""Defects of the Redis quota's reading of server feedback, found by benchmarks/lanes.py's
two-process table (issue 11) and fixed: a hold kept first come, first served, and an answer
that came back out of order no longer holds the quota until the server's reset.

Real redis-server, Redis time: each test checks where slots were placed, not how long anything
took (one waits through a hold of 1.5 s and more, the other through 2 s).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis

from ryze_async import QuotaTimeoutError, RedisQuota
from ryze_async.testing import RedisServer
from ryze_async.testing._shared_quota import REDIS_SERVER

pytestmark = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed (apt install redis)"
)

EPS = 2e-6  # slots are whole microseconds of Redis time


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def quota(url: str, digest: str, *, limit: int, period: float, reserve: int = 0) -> RedisQuota:
    return RedisQuota.from_url(url, token_digest=digest, limit=limit, period=period, margin=0.1,
                               reserve=reserve)


async def test_a_hold_keeps_first_come_first_served(redis_url: str) -> None:
    q = quota(redis_url, uuid.uuid4().hex, limit=4, period=1.0)
    try:
        first = float(await q.acquire(lane="bulk"))
        q.settle()
        for _ in range(3):
            await q.acquire(lane="bulk")  # the window is full
        early = [asyncio.create_task(q.acquire(lane="bulk")) for _ in range(4)]  # next window
        await asyncio.sleep(0.05)
        # The first call's answer: Remaining 0, the server's reset in 1.5 s (whole seconds).
        q.observe(limit=4, remaining=0, reset_after=1.5, admitted_at=first)
        await q.flush()
        late = [asyncio.create_task(q.acquire(lane="bulk")) for _ in range(4)]
        early_slots = [float(s) for s in await asyncio.gather(*early)]
        late_slots = [float(s) for s in await asyncio.gather(*late)]
        # Today: early at first + 3.3, late at first + 2.2, nothing in [1.5, 2.2).
        assert max(early_slots) <= min(late_slots) + EPS
    finally:
        await q.aclose()


@pytest.mark.parametrize("stale_first", [True, False])
async def test_the_freshest_answer_decides_and_leaves_the_reserve_free(
    redis_url: str, stale_first: bool
) -> None:
    # 15 bulk calls admitted at once reach the server in some order. The answer of the call
    # admitted first, processed last, says 5 remain: read alone it must assume our 14 later
    # calls were not counted yet (-9: hold). The answer of the call admitted last says 5 remain
    # too, and nothing of ours came after it: the reserve is free. In whatever order the two
    # come back, the fresher one decides; the older one neither holds nor tightens.
    digest = uuid.uuid4().hex
    bot = quota(redis_url, digest, limit=20, period=2.0, reserve=5)
    bulk = quota(redis_url, digest, limit=20, period=2.0)
    try:
        await bot.announce()
        first = float(await bulk.acquire(lane="bulk"))
        bulk.settle()
        last = first
        for _ in range(14):
            last = float(await bulk.acquire(lane="bulk"))  # the reserve of 5 is left
        answers = [first, last] if stale_first else [last, first]
        for admitted_at in answers:
            bulk.observe(limit=20, remaining=5, reset_after=2.0, admitted_at=admitted_at)
            await bulk.flush()
        slot = float(await bot.acquire())  # interactive, within the reserve
        assert slot - first < 0.5  # in Redis time; held, it would be the reset, 2 s later
    finally:
        await bot.aclose()
        await bulk.aclose()


@pytest.mark.parametrize("answered", ["in order", "last first"])
async def test_a_burst_that_left_late_is_not_read_as_spent_until_the_servers_reset(
    redis_url: str, answered: str
) -> None:
    # benchmarks/lanes.py, issue 18: a window's 20 bulk calls were admitted together and left
    # a little late, one after another (their entries moved to when each left, STAMP), and
    # reached the server in that order: the k-th is answered "20 - k remaining". Each answer
    # agrees with the log. Read from the answered call's admission, its siblings that left
    # before it counted as "maybe not seen by the server yet": a budget below nothing, held
    # until the server's reset, 3 s in whole seconds where the log's next slot is 2.1 s away
    # (bursts every 3 s, a bot waiting 1.5 periods).
    q = quota(redis_url, uuid.uuid4().hex, limit=20, period=2.0)
    try:
        slots = [await q.acquire(lane="bulk")]
        q.settle()
        slots += [await q.acquire(lane="bulk") for _ in range(19)]
        await asyncio.sleep(0.03)  # they leave 30 ms late: more than a tenth of the margin
        for slot in slots:
            q.sent(slot)
        await q.flush()
        answers = list(enumerate(slots, 1))
        for k, slot in answers if answered == "in order" else answers[::-1]:
            q.observe(limit=20, remaining=20 - k, reset_after=3.0, admitted_at=slot)
            await q.flush()
        after = float(await q.acquire(lane="bulk"))
        assert after - float(slots[0]) < 2.1 + 0.2  # the log's slot; held, 3 s and more
    finally:
        await q.aclose()


async def test_a_waiter_a_hold_moves_past_its_max_wait_gives_up_and_its_slot_back(
    redis_url: str,
) -> None:
    digest = uuid.uuid4().hex
    q, other = (quota(redis_url, digest, limit=4, period=1.0) for _ in range(2))
    try:
        for _ in range(4):
            await q.acquire()
            q.settle()
        waiter = asyncio.create_task(q.acquire(max_wait=2.0))  # a slot 1.1 s away: reserved
        await asyncio.sleep(0.05)
        other.hold_until(3.0)  # another process's 429: the queue moves after it
        await other.flush()
        with pytest.raises(QuotaTimeoutError, match="nothing was sent"):
            await waiter
        await q.flush()
        async with aioredis.Redis.from_url(redis_url) as raw:
            assert await raw.zcard(f"ryze:{{{digest}}}:log") == 4  # its slot is gone
    finally:
        await q.aclose()
        await other.aclose()


@pytest.mark.parametrize("steps", range(8))
async def test_a_caller_cancelled_while_it_flushes_cancels_nobody_elses_write(
    redis_url: str, steps: int
) -> None:
    # A waiter cancelled while it waits gives its slot back in the background; the next
    # caller's flush awaits that write. Cancelling that caller must not cancel the write: the
    # slot would stay reserved for a window, for nothing.
    digest = uuid.uuid4().hex
    q = quota(redis_url, digest, limit=4, period=1.0)
    try:
        for _ in range(4):
            await q.acquire()
            q.settle()
        async with aioredis.Redis.from_url(redis_url) as raw:
            log = f"ryze:{{{digest}}}:log"
            waiter = asyncio.create_task(q.acquire())
            for _ in range(1000):
                if await raw.zcard(log) == 5:
                    break
                await asyncio.sleep(0.002)
            waiter.cancel()  # its give-back is written in the background...
            caller = asyncio.create_task(q.acquire())  # ...which this caller's flush awaits
            for _ in range(steps):  # the caller's cancel lands at each step of the write
                await asyncio.sleep(0)
            caller.cancel()
            await asyncio.gather(waiter, caller, return_exceptions=True)
            await q.flush()
            assert await raw.zcard(log) == 4  # the give-back was written all the same
    finally:
        await q.aclose()
