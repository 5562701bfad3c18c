"""Shared quota benchmark: k processes on one token, each limiter against strict fake servers.

k = 1, 2, 4, 8 worker processes split 56 calls on one token against a strict FakeRyzeServer
(fixed window, then sliding) at a sped-up quota of 20 per 6 s, where the library's own margin
(0.1 s) is the real margin ratio (period/60, as 1 s is to 60 s). Each worker is a `RyzeClient`
that admits either through the shared Redis quota (``quota_url=``, one redis-server started
here) or through its own in-process limiter (no ``quota_url``). Reported from the server's own
record: 429s (over-quota requests, target 0 for Redis), the most requests accepted in any 6 s
window, and the time from the first arrival to the last against the ideal (a burst of 20, then
20 per window:
(ceil(56/20) - 1) x 6 s = 12 s, target <= 1.03x). Then the cost of one uncontended admission
beside the in-process limiter (target: one Redis round trip, under 300 us on loopback).

    python benchmarks/shared_quota.py          # k = 1, 2, 4, 8, both windows (~3 min)
    python benchmarks/shared_quota.py --quick  # k = 2, sliding, 40 calls; functional

Needs redis-server on PATH and the `redis` extra. Exits 1 if the shared quota draws a 429, or
(full mode only) accepts more than 20 in some 6 s window by the server's arrival stamps, takes
more than 1.03x the ideal time, or more than 300 us per admission. Arrival stamps carry the
machine's scheduling delays: on a loaded 2-core host a delayed burst can crowd the next window
by the server's clock although every admission was a full window apart in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
import uuid
from dataclasses import dataclass

from _report import finish, machine, ruled
from redis import asyncio as aioredis

from ryze_async import QuotaLimiter
from ryze_async.testing import FakeRyzeServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._shared_quota import RedisServer, WorkerArgs, admission_cost, run_workers

LIMIT, PERIOD = 20, 6.0
MARGIN = PERIOD / 60  # = default_margin(PERIOD): the library's margin, at the real ratio
MAX_TIME_RATIO = 1.03
MAX_ADMISSION_US = 300.0


@dataclass(frozen=True)
class Row:
    mode: str
    window: str
    k: int
    calls: int
    refused: int
    most: int
    ratio: float


async def one_run(redis_url: str, mode: str, window: str, k: int, calls: int) -> Row:
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window=window) as server:  # type: ignore[arg-type]
        orders = WorkerArgs(mode, redis_url, server.url, uuid.uuid4().hex, LIMIT, PERIOD, MARGIN,
                            calls // k)
        await asyncio.to_thread(run_workers, orders, k)
        records = server.requests
    accepted = [r.received_at for r in records if r.status == 200]
    arrivals = sorted(r.received_at for r in records)
    ideal = (math.ceil(calls / LIMIT) - 1) * PERIOD
    return Row(mode, window, k, len(records), sum(r.status == 429 for r in records),
               max_in_window(accepted, PERIOD), (arrivals[-1] - arrivals[0]) / ideal)


async def costs_us(redis_url: str) -> dict[str, float]:
    local = QuotaLimiter(10**9, PERIOD)
    samples = []
    for _ in range(2000):
        started = time.perf_counter()
        await local.acquire()
        samples.append(time.perf_counter() - started)
    async with aioredis.Redis.from_url(redis_url) as raw:
        pings = []
        for _ in range(500):
            started = time.perf_counter()
            await raw.ping()
            pings.append(time.perf_counter() - started)
    return {
        "in-process QuotaLimiter.acquire()": statistics.median(samples) * 1e6,
        "redis-py PING round trip (floor)": statistics.median(pings[50:]) * 1e6,
        "RedisQuota.acquire() (one EVALSHA)": await admission_cost(redis_url, uuid.uuid4().hex,
                                                                   rounds=500) * 1e6,
    }


def check(rows: list[Row], costs: dict[str, float], quick: bool) -> list[str]:
    failures = []
    for row in rows:
        if row.mode != "redis":
            continue
        name = f"redis {row.window} k={row.k}"
        if row.refused:
            failures.append(f"{name}: {row.refused} 429s")
        if not quick and row.most > LIMIT:
            failures.append(f"{name}: {row.most} accepted in one {PERIOD:g} s window")
        if not quick and row.ratio > MAX_TIME_RATIO:
            failures.append(f"{name}: {row.ratio:.3f}x ideal time")
    cost = costs["RedisQuota.acquire() (one EVALSHA)"]
    if not quick and cost > MAX_ADMISSION_US:
        failures.append(f"admission {cost:.0f} us")
    return failures


async def run(quick: bool) -> tuple[list[Row], dict[str, float]]:
    calls = 40 if quick else 56
    plan = (
        [("redis", "sliding", 2), ("local", "sliding", 2)] if quick else
        [("redis", w, k) for w in ("fixed", "sliding") for k in (1, 2, 4, 8)]
        + [("local", w, k) for w in ("fixed", "sliding") for k in (1, 4)]
    )
    with RedisServer() as redis_server:
        rows = [await one_run(redis_server.url, *step, calls) for step in plan]
        return rows, await costs_us(redis_server.url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="k = 2, sliding window")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(machine(f"Python {sys.version.split()[0]}"))
    rows, costs = asyncio.run(run(args.quick))
    print(f"\nquota {LIMIT}/{PERIOD:g} s, margin {MARGIN * 1000:.0f} ms, strict servers; "
          "429s are final (max_retries=0)")
    for line in ruled(f"{'limiter':8} {'window':8} {'k':>2} {'requests':>8} {'429s':>5} "
                      f"{'max/6s':>6} {'x ideal':>7}"):
        print(line)
    for r in rows:
        ratio = f"{r.ratio:7.3f}" if r.mode == "redis" or not r.refused else "      -"
        print(f"{r.mode:8} {r.window:8} {r.k:2d} {r.calls:8d} {r.refused:5d} {r.most:6d} {ratio}")
    print("\nuncontended admission, median:")
    for name, us in costs.items():
        print(f"  {name:36} {us:8.1f} us")
    failures = check(rows, costs, args.quick)
    return finish(started, args.quick, failures, "the shared quota: 0 429s, never over the limit",
                  sep="; ")


if __name__ == "__main__":
    sys.exit(main())
