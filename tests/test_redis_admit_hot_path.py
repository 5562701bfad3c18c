"""(#18) The Redis admission's hot path on a real redis-server: an uncontended admission runs
only the commands its answer needs (counted by Redis itself, ``INFO commandstats``), and the
admission script of the previous release, run beside this one on one token (a rolling
upgrade), never lets the two admit over the limit in any window."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis

from ryze_async import RedisQuota
from ryze_async.testing import RedisServer
from ryze_async.testing._quota_sim import max_in_window

LIMIT, PERIOD, MARGIN, RESERVE = 5, 0.5, 0.1, 2
WINDOW = PERIOD + MARGIN
EPS = 2e-6  # slots are whole microseconds of Redis time
ADMISSIONS = 20
OLD_ADMIT = (Path(__file__).parent / "fixtures" / "admit_before_18.lua").read_text()


async def admit(quota: RedisQuota, lane: str = "interactive") -> float:
    admission = await quota.acquire(lane=lane)  # type: ignore[arg-type]
    quota.settle()
    return float(admission)


async def warm_then_count(quota: RedisQuota, raw: aioredis.Redis) -> dict[str, Any]:
    """Redis's command counts over `ADMISSIONS` admissions, after the probe, its end and the
    scripts' first load."""
    for _ in range(3):
        await admit(quota)
    await quota.flush()
    await raw.config_resetstat()
    for _ in range(ADMISSIONS):
        await quota.acquire()
    stats: dict[str, Any] = await raw.info("commandstats")
    return stats


async def test_an_uncontended_admission_runs_only_the_commands_its_answer_needs(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    quota = RedisQuota.from_url(redis_server.url, token_digest=uuid.uuid4().hex, limit=100,
                                period=60.0, margin=1.0)
    try:
        stats = await warm_then_count(quota, raw)
    finally:
        await quota.aclose()
    calls = {name.removeprefix("cmdstat_"): s["calls"] for name, s in stats.items()}
    calls.pop("config|resetstat", None)
    assert calls.pop("evalsha") == ADMISSIONS  # one round trip each, the script cached
    # No reserve is announced and nothing is queued: the reserves are not read, nor the log's
    # entries (a count in the window and whether anything is queued after now are enough).
    assert "zrangebyscore" not in calls
    assert "zrange" not in calls
    assert calls.get("zcount", 0) <= ADMISSIONS
    # TIME; the conf, the epoch, the probe, the hold, the budget; pruning and counting the
    # log; the entry, the log's TTL, the epoch's count and its ring entry (issue 19: who took
    # that count). (+4: the conf's TTL and the log's, written once a second, may each fall
    # due once.)
    assert sum(calls.values()) <= 13 * ADMISSIONS + 4, calls


@pytest.mark.parametrize("old_lane", ["bulk", "interactive"])
async def test_the_previous_releases_admission_beside_this_one_never_goes_over_the_limit(
    redis_server: RedisServer, old_lane: str
) -> None:
    """A rolling upgrade: processes of the old and the new version admit on one token at once,
    each with its own script text (the keys and what they hold are the same), in both lanes and
    with a reserve announced: every window holds at most the limit."""
    digest = uuid.uuid4().hex
    old, new = (RedisQuota.from_url(redis_server.url, token_digest=digest, limit=LIMIT,
                                    period=PERIOD, margin=MARGIN, reserve=reserve)
                for reserve in (0, RESERVE))
    old._admit = old._redis.register_script(OLD_ADMIT)
    new_lane = "interactive" if old_lane == "bulk" else "bulk"
    try:
        async with asyncio.timeout(30):
            slots = await asyncio.gather(*(
                admit(quota, lane) for _ in range(2 * LIMIT)
                for quota, lane in ((old, old_lane), (new, new_lane))))
    finally:
        await old.aclose()
        await new.aclose()
    assert len(slots) == 4 * LIMIT
    assert max_in_window(slots, WINDOW - EPS) <= LIMIT


async def test_the_logs_ttl_is_written_only_once_it_runs_short_and_never_shortened(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """The log outlives its last entry by a window and the idle TTL (60 s): an admission reads
    its TTL and writes it (PEXPIRE) only when it would end more than a second too early."""
    digest = uuid.uuid4().hex
    log, full = f"ryze:{{{digest}}}:log", round(WINDOW * 1000) + 60_000
    quota = RedisQuota.from_url(redis_server.url, token_digest=digest, limit=LIMIT,
                                period=PERIOD, margin=MARGIN)
    try:
        await admit(quota)
        assert full - 1000 < await raw.pttl(log) <= full
        await raw.pexpire(log, 10 * full)  # longer than needed (say, reservations far ahead)
        await admit(quota)
        assert await raw.pttl(log) > full  # not shortened
        await raw.pexpire(log, full - 1500)  # run short by more than a second: due
        await admit(quota)
        assert full - 1000 < await raw.pttl(log) <= full
    finally:
        await quota.aclose()


async def test_a_bulk_admission_reads_the_logs_last_entry_once_with_a_reserve(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """The bulk rule places a slot twice (the limit, then the limit less the reserve): the
    second placement starts after every entry already, so the last entry is read once."""
    quota = RedisQuota.from_url(redis_server.url, token_digest=uuid.uuid4().hex, limit=100,
                                period=60.0, margin=1.0, reserve=RESERVE)
    try:
        for _ in range(3):
            await admit(quota, "bulk")
        await quota.flush()
        await raw.config_resetstat()
        for _ in range(ADMISSIONS):
            await quota.acquire(lane="bulk")
        stats = await raw.info("commandstats")
    finally:
        await quota.aclose()
    assert stats["cmdstat_evalsha"]["calls"] == ADMISSIONS
    assert stats["cmdstat_zrange"]["calls"] == ADMISSIONS  # 20 entries: none a window back


async def test_an_admission_renews_its_reserves_announcement_only_once_a_second(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """Every admission of a quota with a reserve keeps its announcement alive, but writes it
    (prune, add, expire) only once a second of it has run out: a read otherwise."""
    digest = uuid.uuid4().hex
    quota = RedisQuota.from_url(redis_server.url, token_digest=digest, limit=100, period=60.0,
                                margin=1.0, reserve=RESERVE)
    reserves = f"ryze:{{{digest}}}:reserves"
    try:
        stats = await warm_then_count(quota, raw)
        # Run down by more than a second (a renewal missed): the next admission writes it.
        ((member, lapses),) = await raw.zrange(reserves, 0, -1, withscores=True)
        await raw.zadd(reserves, {member: lapses - 1_500_000})
        await admit(quota)
        assert await raw.zscore(reserves, member) > lapses
    finally:
        await quota.aclose()
    # One entry each in the log; the announcement's at most once (when a second has run out).
    assert stats["cmdstat_zadd"]["calls"] <= ADMISSIONS + 1
    assert stats["cmdstat_zremrangebyscore"]["calls"] <= ADMISSIONS + 1
