"""Redis admission cost: one uncontended `RedisQuota.acquire()` beside the tools users would pick.

The same redis-server (started here, loopback), the same quota (100 per 60 s, so the log holds
what a real token's does), measured interleaved: for each round every tool gets a fresh key
and 90 admissions in turn, so the machine's load hits all of them alike. Reported: p50 and p99
in microseconds of

- ``RedisQuota.acquire()`` (+ ``settle()``): one EVALSHA, Redis ``TIME`` as the clock, lanes,
  the lost-state epoch, server feedback;
- PyrateLimiter's ``RedisBucket`` (``Limiter.try_acquire_async``): one EVALSHA;
- ``limits``' moving window (``MovingWindowRateLimiter.hit``): one EVALSHA;
- a redis-py PING: the round trip every tool pays (the floor).

Target (issue 18): RedisQuota's p50 within 1.2x of PyrateLimiter's. What each script costs
inside Redis (``INFO commandstats``, usec per EVALSHA) is printed too: it is the part the
round trip does not explain.

    python benchmarks/redis_admission.py          # 20 rounds x 90 admissions per tool
    python benchmarks/redis_admission.py --quick  # 4 rounds; functional (CI)
    python benchmarks/redis_admission.py --quick --parts  # and each part of the script priced

``--parts`` prices each command of the admission script's common path (and what it replaced)
on a real quota's keys, a log of 90 entries: each repeated 200 times inside one ``EVAL``, the
cost of an empty loop taken off, so the figures are warm (a single admission pays more).

Needs redis-server on PATH, the ``redis`` extra, ``pyrate-limiter`` and ``limits`` (dev).
Exits 1 if the target is missed (full mode only: ``--quick`` is too short to judge).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from _report import finish, machine, ruled
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
from redis import asyncio as aioredis

from ryze_async import RedisQuota
from ryze_async.testing import RedisServer

LIMIT, PERIOD, PER_ROUND = 100, 60.0, 90
MAX_RATIO = 1.2
Admit = Callable[[], Awaitable[object]]


class Tools:
    """Each tool on a fresh key of `LIMIT` per minute, rebuilt every round."""

    def __init__(self, url: str, raw: aioredis.Redis) -> None:
        self.url, self.raw = url, raw
        self.quota: RedisQuota | None = None
        self.window = MovingWindowRateLimiter(RedisStorage(url, implementation="redispy"))

    async def fresh(self, round_no: int) -> dict[str, Admit]:
        if self.quota is not None:
            await self.quota.aclose()
        quota = self.quota = RedisQuota.from_url(self.url, token_digest=uuid.uuid4().hex,
                                                 limit=LIMIT, period=PERIOD, margin=1.0)
        await quota.acquire()  # a fresh quota's first admission is its probe: not measured
        quota.settle()
        bucket = await RedisBucket.init([Rate(LIMIT, Duration.MINUTE)], self.raw,
                                        f"pyrate-{uuid.uuid4().hex}")
        pyrate = Limiter(bucket)
        item, key = RateLimitItemPerMinute(LIMIT), f"limits-{uuid.uuid4().hex}"

        async def ryze() -> None:
            await quota.acquire()
            quota.settle()

        async def pyrate_bucket() -> None:
            assert await pyrate.try_acquire_async("k", blocking=False)

        async def moving_window() -> None:
            assert await self.window.hit(item, key)

        return {"RedisQuota.acquire()": ryze, "PyrateLimiter RedisBucket": pyrate_bucket,
                "limits moving window": moving_window, "redis-py PING (floor)": self.raw.ping}

    async def close(self) -> None:
        if self.quota is not None:
            await self.quota.aclose()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


async def run(rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    samples: dict[str, list[float]] = {}
    with RedisServer() as server:
        async with aioredis.Redis.from_url(server.url) as raw:
            tools = Tools(server.url, raw)
            try:
                for round_no in range(rounds):
                    for name, admit in (await tools.fresh(round_no)).items():
                        for _ in range(PER_ROUND):
                            started = time.perf_counter()
                            await admit()
                            samples.setdefault(name, []).append(time.perf_counter() - started)
                inside = await script_costs(raw, await tools.fresh(rounds))
            finally:
                await tools.close()
    return samples, inside


async def script_costs(raw: aioredis.Redis, tools: dict[str, Admit]) -> dict[str, float]:
    """Microseconds inside Redis per EVALSHA, tool by tool (``INFO commandstats``)."""
    costs = {}
    for name, admit in tools.items():
        if "PING" in name:
            continue
        await raw.config_resetstat()
        for _ in range(PER_ROUND // 3):
            await admit()
        costs[name] = float((await raw.info("commandstats"))["cmdstat_evalsha"]["usec_per_call"])
    return costs


_ZREM = "redis.call('ZREM', log, 'x' .. i)"
# ADMIT's commands on its common path (free room, nothing queued, no probe, no reserve), as
# lua.ADMIT runs them, then what issue 18 replaced (`before:`).
PARTS = {
    "TIME": "x = redis.call('TIME')",
    "HMGET conf (strictest limit)": "x = redis.call('HMGET', conf_k, 'limit', 'window', 'exp')",
    "ZREMRANGEBYSCORE log (prune)": "x = redis.call('ZREMRANGEBYSCORE', log, '-inf', int(now - w))",
    "HMGET epoch (lost state)": "x = redis.call('HMGET', epoch_k, 'gen', 'seq', 'paused', 'exp')",
    "PTTL probe": "x = redis.call('PTTL', probe_k)",
    "GET blocked (a hold)": "x = redis.call('GET', blocked_k)",
    "HMGET budget": "x = redis.call('HMGET', budget_k, 'n', 'until')",
    "ZCOUNT log (now, +inf] (queued?)": "x = redis.call('ZCOUNT', log, '(' .. int(now), '+inf')",
    "ZCARD log (room?)": "x = redis.call('ZCARD', log)",
    # Taken out again at once (the log stays at 90); `_ZREM`'s cost is taken off.
    "ZADD log (the entry)": "redis.call('ZADD', log, int(now + i), 'x' .. i) " + _ZREM,
    "PTTL log": "x = redis.call('PTTL', log)",
    "HINCRBY epoch seq": "x = redis.call('HINCRBY', epoch_k, 'seq', 0)",
    "the argument: one string.match":
        "x = {string.match(ARGV[1], '^' .. string.rep('(%S+) ', 12) .. '(%S+)$')}",
    "the answer: one string.format":
        "x = string.format('%d %.0f %.0f %d %.0f %.0f %d', 0, 0, now, 0, 1, 9, 0)",
    "before: ZRANGE log -1 -1 WITHSCORES": "x = redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')",
    "before: ZCOUNT over the window": "x = redis.call('ZCOUNT', log, int(now - w + 1), '+inf')",
    "before: ZRANGEBYSCORE reserves":
        "x = redis.call('ZRANGEBYSCORE', reserves_k, '(' .. int(now), '+inf')",
    "before: PEXPIRE log": "x = redis.call('PEXPIRE', log, 120000)",
    "before: the argument by gmatch":
        "x = {} for f in string.gmatch(ARGV[1], '%S+') do x[#x + 1] = f end",
}
_LOOP = """
local log, blocked_k, budget_k, conf_k, probe_k = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local reserves_k, epoch_k = KEYS[6], KEYS[7]
local tm = redis.call('TIME')
local now, w = tonumber(tm[1]) * 1000000 + tonumber(tm[2]), 61000000
local function int(x) return string.format('%.0f', x) end
local x
for i = 1, 200 do
"""


async def parts(url: str) -> dict[str, float]:
    """Each part's warm cost in microseconds (see ``--parts``), median of 7 runs."""
    quota = RedisQuota.from_url(url, token_digest=uuid.uuid4().hex, limit=LIMIT, period=PERIOD,
                                margin=1.0)
    try:
        for _ in range(PER_ROUND):
            await quota.acquire()
            quota.settle()
        keys, arg = quota._keys, "100 61000000 0 i1 -1 60000 0 interactive q 30000 1000000 1 9"
        async with aioredis.Redis.from_url(url) as raw:
            runs: dict[str, list[float]] = {}
            for _ in range(7):
                for name, lua in {"": "", "ZREM": _ZREM, **PARTS}.items():
                    await raw.config_resetstat()
                    await raw.eval(_LOOP + lua + "\nend", 7, *keys, arg)
                    stats = await raw.info("commandstats")
                    runs.setdefault(name, []).append(stats["cmdstat_eval"]["usec"] / 200)
    finally:
        await quota.aclose()
    costs = {name: statistics.median(us) for name, us in runs.items()}
    empty = costs.pop("")
    zrem = costs.pop("ZREM")
    costs["ZADD log (the entry)"] -= zrem - empty
    return {name: us - empty for name, us in costs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4 rounds; functional")
    parser.add_argument("--parts", action="store_true",
                        help="also price each command of the script's common path (warm)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(machine(f"Python {sys.version.split()[0]}"))
    samples, inside = asyncio.run(run(4 if args.quick else 20))
    print(f"\nuncontended admission on one redis-server, {LIMIT} per {PERIOD:g} s, fresh key "
          f"per round, {PER_ROUND} admissions per tool per round, interleaved")
    for line in ruled(f"{'tool':28} {'p50 us':>8} {'p99 us':>8} {'p50 / PyrateLimiter':>20}"):
        print(line)
    anchor = percentile(samples["PyrateLimiter RedisBucket"], 0.5)
    for name, values in samples.items():
        p50 = percentile(values, 0.5)
        print(f"{name:28} {p50:8.0f} {percentile(values, 0.99):8.0f} {p50 / anchor:20.2f}")
    print("\ninside Redis, per EVALSHA (INFO commandstats):")
    for name, us in inside.items():
        print(f"  {name:28} {us:8.1f} us")
    if args.parts:
        print_parts()
    ratio = percentile(samples["RedisQuota.acquire()"], 0.5) / anchor
    failures = [] if args.quick or ratio <= MAX_RATIO else [
        f"RedisQuota p50 {ratio:.2f}x PyrateLimiter's (target <= {MAX_RATIO}x)"]
    return finish(started, args.quick, failures,
                  f"RedisQuota p50 within {MAX_RATIO}x of PyrateLimiter's", sep="; ")


def print_parts() -> None:
    with RedisServer() as server:
        costs = asyncio.run(parts(server.url))
    print("\nthe script's common path, part by part (warm: 200 in one EVAL, empty loop off):")
    for name, us in costs.items():
        print(f"  {name:40} {us:6.2f} us")


if __name__ == "__main__":
    sys.exit(main())
