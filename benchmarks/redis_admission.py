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

Needs redis-server on PATH, the ``redis`` extra, ``pyrate-limiter`` and ``limits`` (dev).
Exits 1 if the target is missed (full mode only: ``--quick`` is too short to judge).
"""

from __future__ import annotations

import argparse
import asyncio
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4 rounds; functional")
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
    ratio = percentile(samples["RedisQuota.acquire()"], 0.5) / anchor
    failures = [] if args.quick or ratio <= MAX_RATIO else [
        f"RedisQuota p50 {ratio:.2f}x PyrateLimiter's (target <= {MAX_RATIO}x)"]
    return finish(started, args.quick, failures,
                  f"RedisQuota p50 within {MAX_RATIO}x of PyrateLimiter's", sep="; ")


if __name__ == "__main__":
    sys.exit(main())
