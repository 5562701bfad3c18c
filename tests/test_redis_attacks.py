"""Attacks on the shared Redis quota's lanes and reserve (issue 11), on a real redis-server.

Each test states the attack; the oracle is Redis's own record (the log, and Redis TIME at the
moment each admission was handed to its caller, i.e. when it would be sent), never a duration.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis

from ryze_async import QuotaTimeoutError, RedisQuota, RyzeClient
from ryze_async.testing import FakeRyzeServer, Fault, RedisServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._shared_quota import REDIS_SERVER, WorkerArgs, release_worker, start_worker

pytestmark = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed (apt install redis)"
)

LIMIT, PERIOD, MARGIN = 4, 1.0, 0.1
EPS = 2e-6




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
        # 3 - min(5, 3 - 1) in any period (issue 18: the window's oldest margin may hold more)
        assert max_in_window(bulk_slots, PERIOD - EPS) <= 1
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
            assert max_in_window(bulk, SLOW_PERIOD - EPS) <= SMALL - reserve, steps
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for q in quotas:
            await q.aclose()


async def test_a_process_killed_with_queued_reservations_and_a_reserve_stops_nobody(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Attack: SIGKILL a process that holds 12 queued bulk reservations and announced a reserve.
    # Its slots stay reserved until they pass and its reserve holds until it lapses; the
    # survivors still get through, never over the limit in any window of the server's record.
    await raw.flushall()
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        args = WorkerArgs("redis", redis_server.url, server.url, "unused", LIMIT, PERIOD,
                          MARGIN, 12, priority="bulk", reserve=2)
        doomed = await asyncio.to_thread(start_worker, args)
        release_worker(doomed)
        try:
            for _ in range(2000):
                keys = [k async for k in raw.scan_iter("ryze:{*}:log")]
                if keys and await raw.zcard(keys[0]) >= 12:
                    break
                await asyncio.sleep(0.005)
        finally:
            doomed.kill()
            await asyncio.to_thread(doomed.communicate)  # reaped, its pipes closed
        (reserves,) = [k async for k in raw.scan_iter("ryze:{*}:reserves")]
        assert await raw.zcard(reserves) == 1  # the dead one's: it lapses on its own
        async with RyzeClient("test-token", "my-instance", base_url=server.url,
                              quota_url=redis_server.url, rate_limit=LIMIT, rate_period=PERIOD,
                              priority="bulk") as survivor:
            results = await asyncio.wait_for(asyncio.gather(
                *(survivor.fake_call(f"55119{i:08d}") for i in range(6)),
                survivor.with_options(priority="interactive").fake_call("5511900000099"),
            ), timeout=30)
        record = list(server.requests)
    assert len(results) == 7
    assert [r.status for r in record].count(429) == 0
    assert max_in_window([r.received_at for r in record], PERIOD) <= LIMIT


async def test_a_redis_flushed_under_a_sleeping_waiter_neither_hangs_nor_loses_it(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Attack: FLUSHALL (a restarted Redis without persistence) while a call sleeps towards its
    # slot. Its reservation is gone: on waking it reserves again, once, and goes.
    digest = uuid.uuid4().hex
    q = quota(redis_server.url, digest)
    try:
        for _ in range(LIMIT):
            await q.acquire()
            q.settle()
        waiter = asyncio.create_task(q.acquire())
        for _ in range(1000):
            if await raw.zcard(f"ryze:{{{digest}}}:log") == LIMIT + 1:
                break
            await asyncio.sleep(0.002)
        await raw.flushall()
        admission = await asyncio.wait_for(waiter, timeout=10)
        q.settle()
        log = await raw.zrange(f"ryze:{{{digest}}}:log", 0, -1, withscores=True)
        assert [(m.decode(), s / 1e6) for m, s in log] == [(admission.member,
                                                            pytest.approx(float(admission)))]
    finally:
        await q.aclose()


@pytest.mark.parametrize("lane", ["bulk", "interactive"])
async def test_max_wait_zero_on_a_full_window_reserves_nothing(
    redis_server: RedisServer, raw: aioredis.Redis, lane: str
) -> None:
    digest = uuid.uuid4().hex
    q = quota(redis_server.url, digest, reserve=1)
    try:
        for _ in range(LIMIT):
            await q.acquire()
            q.settle()
        with pytest.raises(QuotaTimeoutError, match="nothing was sent"):
            await q.acquire(lane=lane, max_wait=0)  # type: ignore[arg-type]
        with pytest.raises(QuotaTimeoutError):
            await q.acquire(lane=lane, max_wait=-5)  # type: ignore[arg-type]
        assert await raw.zcard(f"ryze:{{{digest}}}:log") == LIMIT
    finally:
        await q.aclose()


async def test_a_server_limit_lowered_moves_the_queued_reservations_to_fit_it(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Attack: 20 bulk calls queued under limit 10 (two windows of 10), then the server says
    # its limit is 3. Reservations placed under the old limit must not all go: each window
    # ahead would send 10 into a limit of 3 (429s, and the bound broken).
    digest = uuid.uuid4().hex
    q = quota(redis_server.url, digest, limit=10)
    tasks: list[asyncio.Task[float]] = []
    try:
        await q.acquire(lane="bulk")
        q.settle()
        for _ in range(9):
            await q.acquire(lane="bulk")  # the first window is full: sent
        tasks += [asyncio.create_task(q.acquire(lane="bulk")) for _ in range(20)]
        for _ in range(1000):
            if await raw.zcard(f"ryze:{{{digest}}}:log") == 30:
                break
            await asyncio.sleep(0.002)
        said = await redis_now(raw)
        q.observe(limit=3, remaining=None, reset_after=None)
        await q.flush()
        entries = await raw.zrange(f"ryze:{{{digest}}}:log", 0, -1, withscores=True)
        assert len(entries) == 30  # nothing lost
        queued = sorted(s / 1e6 for _, s in entries if s / 1e6 > said)
        assert len(queued) == 20
        assert max_in_window(queued, PERIOD + MARGIN - EPS) <= 3
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await q.aclose()


@pytest.mark.parametrize("longer", [False, True])
async def test_a_stricter_newcomer_moves_the_queued_reservations_to_fit_it(
    redis_server: RedisServer, raw: aioredis.Redis, longer: bool
) -> None:
    # Attack: two clients of one token disagree. 20 bulk calls queued by a client with limit
    # 10; then a client with limit 3 (or a window three times as long) joins: the strictest
    # wins, for the reservations already queued too.
    digest = uuid.uuid4().hex
    q = quota(redis_server.url, digest, limit=10)
    strict = RedisQuota.from_url(redis_server.url, token_digest=digest,
                                 limit=10 if longer else 3, period=3 * PERIOD if longer else
                                 PERIOD, margin=3 * MARGIN if longer else MARGIN)
    window = (3 if longer else 1) * (PERIOD + MARGIN)
    tasks: list[asyncio.Task[float]] = []
    try:
        await q.acquire(lane="bulk")
        q.settle()
        tasks += [asyncio.create_task(q.acquire(lane="bulk")) for _ in range(20)]
        for _ in range(1000):
            if await raw.zcard(f"ryze:{{{digest}}}:log") == 21:
                break
            await asyncio.sleep(0.002)
        joined = await redis_now(raw)  # the first window's ten went at once: sent
        tasks.append(asyncio.create_task(strict.acquire(lane="bulk")))
        for _ in range(1000):
            if await raw.zcard(f"ryze:{{{digest}}}:log") == 22:
                break
            await asyncio.sleep(0.002)
        entries = await raw.zrange(f"ryze:{{{digest}}}:log", 0, -1, withscores=True)
        assert len(entries) == 22
        limit = 10 if longer else 3
        queued = sorted(s / 1e6 for _, s in entries if s / 1e6 > joined)
        assert len(queued) == 12  # the first window's ten were sent, not queued
        assert max_in_window(queued, window - EPS) <= limit
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await q.aclose()
        await strict.aclose()


async def test_no_part_of_the_token_is_in_any_redis_key_or_value(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    # Every key the lanes added (reserves, budget, blocked, conf, probe), with a 429's hold and
    # X-RateLimit answers written: no fragment of the token, in keys or in values.
    # Every 4-character piece holds a letter no hex digest or Redis timestamp has: an all-digit
    # piece ("9876") once matched a slot's microseconds by chance.
    token = "Sekr3tTokenXyzw-q9k8"
    await raw.flushall()
    async with FakeRyzeServer(token=token, rate_limit=LIMIT, rate_period=PERIOD) as server:
        server.fail_next(Fault.RATE_LIMITED)
        async with RyzeClient(token, "my-instance", base_url=server.url,
                              quota_url=redis_server.url, rate_limit=LIMIT, rate_period=PERIOD,
                              interactive_reserve=1) as client:
            await client.fake_call("5511900000001")  # 429, held, then sent again
            await client.with_options(priority="bulk").fake_call("5511900000002")
            seen: list[bytes] = []
            async for key in raw.scan_iter("*"):
                seen.append(key)
                kind = (await raw.type(key)).decode()
                if kind == "zset":
                    seen += [m for m, _ in await raw.zrange(key, 0, -1, withscores=True)]
                elif kind == "hash":
                    for field, value in (await raw.hgetall(key)).items():
                        seen += [field, value]
                elif kind == "string":
                    seen.append(await raw.get(key))
    assert len(seen) > 4
    fragments = {token[i:i + 4] for i in range(len(token) - 3)}
    for item in seen:
        text = item.decode("latin-1")
        assert not [f for f in fragments if f in text], text
