"""Lanes and the interactive reserve on the shared Redis quota (issue 11), on a real redis-server.

Redis TIME is real time: these tests check where slots were placed (stamped by Redis) and what
the fake server recorded, not how long anything took. Two `RedisQuota` objects have two
connection pools, as two processes have; the last test runs two real processes.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis

from ryze_async import QuotaTimeoutError, RedisQuota, RyzeClient
from ryze_async.testing import FakeRyzeServer, RedisServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._shared_quota import (
    REDIS_SERVER,
    WorkerArgs,
    finish_worker,
    release_worker,
    start_worker,
)

pytestmark = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed (apt install redis)"
)

LIMIT, PERIOD, MARGIN, RESERVE = 10, 1.0, 0.1, 3
WINDOW = PERIOD + MARGIN
EPS = 2e-6  # slots are whole microseconds of Redis time
QUEUED = 40  # bulk reservations waiting: four windows and more of traffic




@pytest.fixture
def digest() -> str:
    return uuid.uuid4().hex


def quota(url: str, digest: str, reserve: int = 0) -> RedisQuota:
    return RedisQuota.from_url(url, token_digest=digest, limit=LIMIT, period=PERIOD,
                               margin=MARGIN, reserve=reserve)


async def log_of(raw: aioredis.Redis, digest: str) -> dict[str, float]:
    """The shared log: reservation id -> slot (Unix seconds of Redis time)."""
    entries = await raw.zrange(f"ryze:{{{digest}}}:log", 0, -1, withscores=True)
    return {member.decode(): score / 1e6 for member, score in entries}


async def queue_bulk(quota: RedisQuota, raw: aioredis.Redis, digest: str, n: int,
                     ) -> list[asyncio.Task[float]]:
    """`n` bulk acquires, returned once every one holds its reservation in the log."""
    before = len(await log_of(raw, digest))
    tasks = [asyncio.create_task(quota.acquire(lane="bulk")) for _ in range(n)]
    for _ in range(1000):  # a bounded wait on a condition, not on time
        if len(await log_of(raw, digest)) >= before + n:
            return tasks
        await asyncio.sleep(0.005)
    raise AssertionError("the bulk reservations never all reached the log")


async def cancel(tasks: list[asyncio.Task[float]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def settled(quota: RedisQuota) -> float:
    """One admission that also ends a fresh quota's probe: the burst may follow."""
    slot = await quota.acquire()
    quota.settle()
    return float(slot)


async def test_an_interactive_call_goes_within_the_reserve_ahead_of_queued_bulk(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    bulk, bot = quota(redis_server.url, digest), quota(redis_server.url, digest, RESERVE)
    try:
        await bot.announce()  # the bot's reserve is in force before the campaign queues
        await settled(bulk)
        queued = await queue_bulk(bulk, raw, digest, QUEUED)
        bulk_slots = sorted((await log_of(raw, digest)).values())
        asked = await redis_now(raw)
        admission = await bot.acquire()
        bot.settle()
        assert float(admission) - asked < WINDOW / 2  # now, not a window later
        later = [s for s in bulk_slots if s > admission]
        assert len(later) >= QUEUED - 2 * LIMIT  # ahead of all but the first windows' bulk
        slots = sorted((await log_of(raw, digest)).values())
        assert max_in_window(slots, WINDOW - EPS) <= LIMIT  # every lane: never over the limit
        assert max_in_window(bulk_slots, PERIOD - EPS) == LIMIT - RESERVE  # bulk left the reserve
        await cancel(queued)
    finally:
        await bulk.aclose()
        await bot.aclose()


async def test_without_a_reserve_an_interactive_call_goes_ahead_of_another_processes_bulk(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    # Issue 18: the other process's bulk reservations that have not been sent yet move back, in
    # their order, each to a slot no earlier than it had; the bot waits a window at most.
    bulk, bot = quota(redis_server.url, digest), quota(redis_server.url, digest)
    try:
        await settled(bulk)
        queued = await queue_bulk(bulk, raw, digest, QUEUED)
        before = await log_of(raw, digest)
        asked = await redis_now(raw)
        ahead = sorted((s, m) for m, s in before.items() if s > asked)
        admission = await bot.acquire()
        bot.settle()
        after = await log_of(raw, digest)
        assert float(admission) - asked <= WINDOW + EPS
        assert float(admission) <= ahead[0][0] + EPS  # not behind the queue: at its head
        order = [m for _, m in ahead]
        assert all(after[m] >= before[m] - EPS for m in order)  # never earlier
        assert all(after[a] <= after[b] + EPS for a, b in itertools.pairwise(order))
        assert sum(after[m] > before[m] + EPS for m in order) >= QUEUED - 2 * LIMIT  # moved
        assert max_in_window(sorted(after.values()), WINDOW - EPS) <= LIMIT
        await cancel(queued)
    finally:
        await bulk.aclose()
        await bot.aclose()


async def test_a_bulk_call_moved_past_its_max_wait_gives_up_having_sent_nothing(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    # The window fills in two bursts 0.3 s apart: the hurried bulk call holds the slot the
    # first frees, and only it fits its max_wait. An interactive call of another process takes
    # that slot; moved to the next one (0.3 s later), the bulk call re-checks its max_wait.
    bulk, bot = quota(redis_server.url, digest), quota(redis_server.url, digest)
    try:
        first = await settled(bulk)
        await asyncio.sleep(0.3)
        for _ in range(LIMIT - 1):
            await settled(bulk)
        asked = await redis_now(raw)
        max_wait = first + WINDOW - asked + 0.15
        hurried = asyncio.create_task(bulk.acquire(lane="bulk", max_wait=max_wait))
        queued = [hurried, *await queue_bulk(bulk, raw, digest, LIMIT)]
        admission = await bot.acquire()
        assert float(admission) == pytest.approx(first + WINDOW, abs=0.05)
        with pytest.raises(QuotaTimeoutError):
            await asyncio.wait_for(hurried, 5)
        await bulk.flush()
        log = await log_of(raw, digest)
        assert sum(m.startswith("b") for m in log) == LIMIT  # its reservation is gone
        assert max_in_window(sorted(log.values()), WINDOW - EPS) <= LIMIT
        await cancel(queued)
    finally:
        await bulk.aclose()
        await bot.aclose()


async def test_with_a_reserve_bulk_alone_takes_what_the_reserve_leaves_unused(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    # Issue 18: a reserve of r costs bulk r slots per period, not more: bulk keeps the reserve
    # free in the last `period` before each slot (so an interactive call waits a margin at
    # most) and takes the reserved slots of a window's oldest margin when nobody used them.
    bulk, bot = quota(redis_server.url, digest), quota(redis_server.url, digest, RESERVE)
    try:
        await bot.announce()
        await settled(bulk)
        queued = await queue_bulk(bulk, raw, digest, 140)
        log = await log_of(raw, digest)
        slots = sorted(log.values())
        assert max_in_window(slots, WINDOW - EPS) <= LIMIT
        bulk_slots = sorted(s for m, s in log.items() if m.startswith("b"))
        assert max_in_window(bulk_slots, PERIOD - EPS) <= LIMIT - RESERVE
        per_period = (len(slots) - 1) * PERIOD / (slots[-1] - slots[0])
        assert per_period >= 0.97 * (LIMIT - RESERVE), per_period
        await cancel(queued)
    finally:
        await bulk.aclose()
        await bot.aclose()


async def test_the_larger_reserve_wins_and_ends_when_its_client_closes(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    bulk = quota(redis_server.url, digest)
    small, large = quota(redis_server.url, digest, 2), quota(redis_server.url, digest, 5)
    try:
        await small.announce()
        await large.announce()
        await settled(bulk)
        queued = await queue_bulk(bulk, raw, digest, 20)
        first = sorted((await log_of(raw, digest)).values())
        assert max_in_window(first, PERIOD - EPS) == LIMIT - 5
        await cancel(queued)
        await bulk.flush()
        await large.aclose()  # its reserve goes with it; the smaller one still holds
        kept = await log_of(raw, digest)
        queued = await queue_bulk(bulk, raw, digest, 20)
        added = sorted(s for m, s in (await log_of(raw, digest)).items() if m not in kept)
        assert max_in_window(sorted([*kept.values(), *added]), PERIOD - EPS) == LIMIT - 2
        await cancel(queued)
    finally:
        await bulk.aclose()
        await small.aclose()
        await large.aclose()


async def test_interactive_slots_fill_free_gaps_and_never_break_the_limit(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    # Interactive calls beyond the reserve take the first slot where every window around it
    # has room, which may be between bulk reservations, never over the limit.
    bulk, bot = quota(redis_server.url, digest), quota(redis_server.url, digest, RESERVE)
    try:
        await bot.announce()
        await settled(bulk)
        queued = await queue_bulk(bulk, raw, digest, 25)
        waiters = [asyncio.create_task(bot.acquire()) for _ in range(12)]
        for _ in range(1000):
            if len(await log_of(raw, digest)) == 1 + 25 + 12:
                break
            await asyncio.sleep(0.005)
        log = await log_of(raw, digest)
        slots = sorted(log.values())
        assert len(slots) == 1 + 25 + 12
        assert max_in_window(slots, WINDOW - EPS) <= LIMIT
        last_bulk = max(s for m, s in log.items() if m.startswith("b"))
        bot_slots = [s for m, s in log.items() if m.startswith("i")][1:]  # [0]: the probe
        assert sum(s < last_bulk for s in bot_slots) >= 9  # beside the bulk, not behind it
        await cancel([*waiters, *queued])
    finally:
        await bulk.aclose()
        await bot.aclose()


@pytest.mark.parametrize("reserve", [RESERVE, 0])
async def test_two_processes_a_bot_goes_ahead_of_a_campaigns_queue(
    redis_server: RedisServer, raw: aioredis.Redis, reserve: int
) -> None:
    # Process 1: a campaign-like client (bulk lane) with 40 calls at once. Process 2: a bot with
    # interactive_reserve=3 (or none: issue 18), whose three users ask at once when the queue is
    # full. They once went after all 40; the bound below leaves room for a slow bot process (a
    # loaded CI machine), not for the queue.
    await raw.flushall()
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        common = ("redis", redis_server.url, server.url, "unused", LIMIT, PERIOD, MARGIN)
        bulk_args = WorkerArgs(*common, QUEUED, priority="bulk")
        bot_args = WorkerArgs(*common, 3, reserve=reserve, first=10_000)
        bot = await asyncio.to_thread(start_worker, bot_args)
        campaign = await asyncio.to_thread(start_worker, bulk_args)
        release_worker(campaign)
        for _ in range(2000):  # until the campaign's calls hold their reservations
            keys = [k async for k in raw.scan_iter("ryze:{*}:log")]
            if keys and await raw.zcard(keys[0]) >= QUEUED:
                break
            await asyncio.sleep(0.005)
        release_worker(bot)
        statuses = (await asyncio.to_thread(finish_worker, bot)
                    + await asyncio.to_thread(finish_worker, campaign))
        record = list(server.requests)
    assert statuses == [200] * (QUEUED + 3), statuses
    assert [r.status for r in record].count(429) == 0
    assert max_in_window([r.received_at for r in record], PERIOD) <= LIMIT
    order = ["bot" if b"5511900010" in r.body else "bulk" for r in record]
    assert order.count("bot") == 3
    # Each bot call reached the server ahead of most of the campaign's queue.
    for position in (i for i, who in enumerate(order) if who == "bot"):
        assert order[position:].count("bulk") >= QUEUED // 4


def test_a_reserve_must_leave_bulk_a_slot(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="reserve"):
        RedisQuota.from_url(redis_server.url, token_digest="d", limit=LIMIT, period=PERIOD,
                            reserve=LIMIT)


async def test_a_client_with_a_reserve_announces_it_when_entered(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    await raw.flushall()
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server, \
            RyzeClient("test-token", "my-instance", base_url=server.url,
                       quota_url=redis_server.url, interactive_reserve=RESERVE,
                       rate_limit=LIMIT, rate_period=PERIOD):
        keys = [k.decode() async for k in raw.scan_iter("ryze:{*}:reserves")]
        assert len(keys) == 1
        (member,) = await raw.zrange(keys[0], 0, -1)
        assert member.decode().startswith(f"{RESERVE}:")
    assert not [k async for k in raw.scan_iter("ryze:{*}:reserves")]  # closed: it is gone


# -- The placement, against an oracle: every op sequence keeps the bounds, and an interactive
# reservation takes the earliest slot that keeps every window within the limit.

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SLOW_PERIOD, SMALL = 60.0, 4  # windows of 61 s: Redis time barely moves during an example
SLOW_WINDOW = SLOW_PERIOD + 1.0

Op = tuple[str, int]
OPS = st.lists(
    st.one_of(st.tuples(st.sampled_from(["bulk", "interactive"]), st.integers(1, 4)),
              st.tuples(st.just("cancel"), st.integers(0, 50))),
    min_size=1, max_size=12,
)


def fits(entries: list[float], slot: float) -> bool:
    return max_in_window(sorted([*entries, slot]), SLOW_WINDOW - EPS) <= SMALL


async def redis_now(raw: aioredis.Redis) -> float:
    secs, micros = await raw.time()
    return float(secs) + micros / 1e6


async def check_interactive(quota: RedisQuota, raw: aioredis.Redis, digest: str,
                            ) -> asyncio.Task[float]:
    """One interactive reservation, checked against the oracle."""
    before = await log_of(raw, digest)
    started = await redis_now(raw)
    task = asyncio.create_task(quota.acquire())
    for _ in range(1000):
        after = await log_of(raw, digest)
        if len(after) > len(before):
            break
        await asyncio.sleep(0.002)
    answered = await redis_now(raw)
    (member,) = set(after) - set(before)
    # Bulk reservations not sent yet move back behind it (issue 18): it fits among the rest.
    slot = after[member]
    entries = [s for m, s in before.items() if m.startswith("i") or s <= started]
    moved = sorted((s, m) for m, s in before.items() if m.startswith("b") and s > started)
    assert all(after[m] >= s - EPS for s, m in moved if m in after)
    assert slot >= started - EPS
    assert fits(entries, slot)
    earlier = [c for c in [answered, *(e + SLOW_WINDOW for e in entries)]
               if answered <= c < slot - EPS]
    assert not [c for c in earlier if fits(entries, c)], (slot, earlier)
    return task


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, reserve=st.integers(0, SMALL - 1))
async def test_placement_keeps_every_bound_and_finds_the_earliest_fit(
    redis_server: RedisServer, raw: aioredis.Redis, ops: list[Op], reserve: int
) -> None:
    digest = uuid.uuid4().hex
    quota = RedisQuota.from_url(redis_server.url, token_digest=digest, limit=SMALL,
                                period=SLOW_PERIOD, margin=1.0, reserve=reserve)
    tasks: list[asyncio.Task[float]] = []
    try:
        slot = await quota.acquire()
        quota.settle()
        assert float(slot) > 0
        for kind, k in ops:
            if kind == "cancel":
                live = [t for t in tasks if not t.done()]
                if live:
                    await cancel([live[k % len(live)]])
                    await quota.flush()
            elif kind == "bulk":
                tasks += await queue_bulk(quota, raw, digest, k)
            else:
                for _ in range(k):
                    tasks.append(await check_interactive(quota, raw, digest))
            log = await log_of(raw, digest)
            assert max_in_window(sorted(log.values()), SLOW_WINDOW - EPS) <= SMALL
            bulk = sorted(s for m, s in log.items() if m.startswith("b"))
            assert max_in_window(bulk, SLOW_PERIOD - EPS) <= SMALL - reserve
    finally:
        await cancel(tasks)
        await quota.aclose()


async def test_in_one_process_an_interactive_call_goes_before_its_own_queued_bulk(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    # No reserve: in one process, an interactive call that must wait takes the earliest slot
    # this process's bulk calls hold, as with the local limiter.
    shared = quota(redis_server.url, digest)
    try:
        for _ in range(LIMIT):
            await settled(shared)
        queued = await queue_bulk(shared, raw, digest, 20)
        waiting = sorted((await log_of(raw, digest)).values())[LIMIT:]
        interactive = asyncio.create_task(shared.acquire())
        admission = await interactive
        assert float(admission) == pytest.approx(waiting[0], abs=EPS)  # the first queued slot
        done = [float(await task) for task in queued[:LIMIT - 1]]  # bulk goes on behind it
        assert min(done) > float(admission)
        slots = sorted((await log_of(raw, digest)).values())
        assert max_in_window(slots, WINDOW - EPS) <= LIMIT  # the log's times are unchanged
        await cancel(queued)
    finally:
        await shared.aclose()


async def test_a_bulk_call_with_a_deadline_is_never_moved_past_it(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    shared = quota(redis_server.url, digest)
    try:
        first = await settled(shared)
        for _ in range(LIMIT - 1):
            await settled(shared)
        hurried = asyncio.create_task(shared.acquire(lane="bulk", max_wait=WINDOW * 1.5))
        queued = [hurried, *await queue_bulk(shared, raw, digest, LIMIT + 1)]
        interactive = await shared.acquire()  # a window later than the hurried call's slot
        assert float(await hurried) - first < WINDOW * 1.5  # kept its slot: its deadline holds
        assert float(interactive) - first < WINDOW * 1.5  # it took another bulk call's slot
        await cancel(queued)
    finally:
        await shared.aclose()


async def test_at_the_real_quota_200_queued_bulk_calls_leave_the_bot_its_reserve(
    redis_server: RedisServer, raw: aioredis.Redis, digest: str
) -> None:
    # Issue 11's setting: 100 calls a minute, 200 bulk calls queued (two minutes of traffic) by
    # one process, a bot with interactive_reserve=5 in another: the bot goes at once, five
    # times in a window, and no window of the log holds more than 100.
    period, limit, reserve = 60.0, 100, 5
    window = period + 1.0  # the default margin at 60 s
    bulk, bot = (RedisQuota.from_url(redis_server.url, token_digest=digest, limit=limit,
                                     period=period, reserve=r) for r in (0, reserve))
    try:
        await bot.announce()
        await settled(bulk)
        queued = await queue_bulk(bulk, raw, digest, 200)
        asked = await redis_now(raw)
        slots = []
        for _ in range(reserve):
            slots.append(float(await bot.acquire()))
            bot.settle()
        assert max(slots) - asked < 1.0  # all five at once, not a window later
        log = await log_of(raw, digest)
        assert max_in_window(sorted(log.values()), window - EPS) <= limit
        bulk_slots = sorted(s for m, s in log.items() if m.startswith("b"))
        assert max_in_window(bulk_slots, period - EPS) <= limit - reserve
        assert sum(s > max(slots) for s in bulk_slots) >= 200 - limit  # ahead of the queue
        await cancel(queued)
    finally:
        await bulk.aclose()
        await bot.aclose()
