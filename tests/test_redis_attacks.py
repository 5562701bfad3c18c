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


async def test_an_announcement_lapses_30_s_after_its_last_renewal(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Attack: a process that announced a reserve is SIGKILLed, so nobody withdraws it. The
    # stored expiry (Redis time) says when it stops holding slots back; no 30 s wait.
    digest = uuid.uuid4().hex
    bot = quota(redis_server.url, digest, reserve=2)
    try:
        await bot.announce()
        now = await redis_now(raw)
        ((member, lapses),) = await raw.zrange(f"ryze:{{{digest}}}:reserves", 0, -1,
                                               withscores=True)
        assert member.decode().startswith("2:")
        assert 29.5 <= lapses / 1e6 - now <= 30.0
        # A lapsed announcement (its expiry passed) is no longer in force: bulk fills the window.
        await raw.zadd(f"ryze:{{{digest}}}:reserves", {b"3:dead": now * 1e6 - 1})
        await bot._keeper.stop()  # the live one withdrawn: only the dead one is left
        bulk = quota(redis_server.url, digest)
        try:
            slots = [float(await bulk.acquire(lane="bulk"))]
            bulk.settle()
            slots += [float(await bulk.acquire(lane="bulk")) for _ in range(LIMIT - 1)]
            assert max(slots) - min(slots) < MARGIN  # all four in the window: no reserve held
        finally:
            await bulk.aclose()
    finally:
        await bot.aclose()


async def test_a_server_limit_below_the_reserve_leaves_bulk_a_slot_and_keeps_the_bound(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Attack: the bot announced reserve 5 of 10; the server then says its limit is 3.
    digest = uuid.uuid4().hex
    bot = quota(redis_server.url, digest, reserve=5, limit=10)
    bulk = quota(redis_server.url, digest, limit=10)
    try:
        await bot.announce()
        bulk.observe(limit=3, remaining=None, reset_after=None)
        await bulk.flush()
        first = float(await bulk.acquire(lane="bulk"))
        bulk.settle()
        tasks = [asyncio.create_task(bulk.acquire(lane="bulk")) for _ in range(3)]
        tasks += [asyncio.create_task(bot.acquire()) for _ in range(3)]
        for _ in range(1000):
            if await raw.zcard(f"ryze:{{{digest}}}:log") == 7:
                break
            await asyncio.sleep(0.002)
        entries = await raw.zrange(f"ryze:{{{digest}}}:log", 0, -1, withscores=True)
        slots = sorted(s / 1e6 for _, s in entries)
        assert len(slots) == 7
        assert slots[0] == pytest.approx(first, abs=EPS)
        assert max_in_window(slots, PERIOD + MARGIN - EPS) <= 3
        bulk_slots = sorted(s / 1e6 for m, s in entries if m.startswith(b"b"))
        assert max_in_window(bulk_slots, PERIOD + MARGIN - EPS) <= 1  # 3 - min(5, 3 - 1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await bot.aclose()
        await bulk.aclose()


# -- Random sequences of admissions (both lanes, two "processes"), cancels, holds and answers
# (random Remaining, reset, admitted_at), the log's any-window bound checked after each step.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SLOW_PERIOD, SMALL = 60.0, 4
SLOW_WINDOW = SLOW_PERIOD + 1.0
STEP = st.one_of(
    st.tuples(st.sampled_from(["bulk", "interactive"]), st.integers(0, 1), st.integers(1, 4)),
    st.tuples(st.just("cancel"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("hold"), st.integers(0, 1), st.integers(0, 150)),
    st.tuples(st.just("answer"), st.integers(0, 1), st.integers(0, 10_000)),
)


async def log_entries(raw: aioredis.Redis, digest: str) -> list[tuple[bytes, float]]:
    entries = await raw.zrange(f"ryze:{{{digest}}}:log", 0, -1, withscores=True)
    return [(m, s / 1e6) for m, s in entries]


async def until_logged(raw: aioredis.Redis, digest: str, tasks: list[asyncio.Task[float]],
                       members: int) -> None:
    for _ in range(500):
        if len(await log_entries(raw, digest)) >= members or any(t.done() for t in tasks):
            return
        await asyncio.sleep(0.002)


async def step(quotas: list[RedisQuota], raw: aioredis.Redis, digest: str,
               tasks: list[asyncio.Task[float]], kind: str, who: int, k: int) -> None:
    q = quotas[who]
    if kind in ("bulk", "interactive"):
        for _ in range(k):
            before = len(await log_entries(raw, digest))
            task = asyncio.create_task(q.acquire(lane="bulk" if kind == "bulk" else
                                                 "interactive"))
            tasks.append(task)
            await until_logged(raw, digest, [task], before + 1)
    elif kind == "cancel":
        live = [t for t in tasks if not t.done()]
        if live:
            live[k % len(live)].cancel()
            await asyncio.gather(live[k % len(live)], return_exceptions=True)
    elif kind == "hold":
        q.hold_until(k)
    else:
        slots = [s for _, s in await log_entries(raw, digest)]
        at = slots[k % len(slots)] if slots and k % 3 else None
        q.observe(limit=SMALL, remaining=k % (SMALL + 1), reset_after=(k // 7) % 120,
                  admitted_at=at)
    await q.flush()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=10), reserve=st.integers(0, SMALL - 1))
async def test_no_mix_of_lanes_holds_answers_and_cancels_breaks_the_bound(
    redis_server: RedisServer, raw: aioredis.Redis, steps: list[tuple[str, int, int]],
    reserve: int,
) -> None:
    digest = uuid.uuid4().hex
    quotas = [RedisQuota.from_url(redis_server.url, token_digest=digest, limit=SMALL,
                                  period=SLOW_PERIOD, margin=1.0, reserve=r)
              for r in (0, reserve)]
    tasks: list[asyncio.Task[float]] = []
    try:
        await quotas[1].announce()
        await quotas[0].acquire()
        quotas[0].settle()
        for kind, who, k in steps:
            await step(quotas, raw, digest, tasks, kind, who, k)
            entries = await log_entries(raw, digest)
            assert max_in_window([s for _, s in entries], SLOW_WINDOW - EPS) <= SMALL, steps
            bulk = [s for m, s in entries if m.startswith(b"b")]
            assert max_in_window(bulk, SLOW_WINDOW - EPS) <= SMALL - reserve, steps
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for q in quotas:
            await q.aclose()
