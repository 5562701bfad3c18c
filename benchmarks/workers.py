"""The PostgreSQL journal as the queue of many workers: durable claim+record pairs per second.

Each worker is its own process with its own ``PgStore`` (two connections: commits and its
heartbeat) on one campaign in a throw-away PostgreSQL 15 cluster on loopback (``fsync=on``,
``synchronous_commit=on``: every commit is durable), started by ``tests/pg_cluster.py``. The
parent ingests the numbers; then k = 1, 2, 4 workers run at once, each as the dispatcher would:
a feeder claims pages of pending numbers (``FOR UPDATE SKIP LOCKED``) into a queue, and C
tasks each await ``mark_sending`` (durable, group-committed) before a simulated request (one
event-loop turn), then queue the outcome with ``record``; timed from the first worker's start
to the last worker's final ``flush``. C = 1 is the floor (one commit per call, nothing to
share); C = 32 is the campaign's default concurrency.

Target (issue 9): the journal never limits a pool of 100 instances at 100 calls/min each, i.e.
>= 200 durable claim+record pairs per second per worker, and the total grows with workers.

    python benchmarks/workers.py            # full run, about a minute on 2 cores
    python benchmarks/workers.py --quick    # CI smoke: functional checks only

Every mode checks, never timings: each number was claimed and placed by exactly one worker and
every number is placed. The kill -9 run and its duplicate count belong to the end-to-end test of
the CLI once ``--journal postgresql://`` is wired (see docs/scaling-out.md); it is not run here.
Exit 1 on a failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _report import finish, machine, ruled

from ryze_async._campaign.journal.postgres.store import PgStore
from tests.pg_cluster import PostgresUnavailableError, pg_cluster

TARGET_PER_WORKER = 200


def same(raw: str) -> str:
    return raw


async def child(dsn: str, campaign: str, concurrency: int) -> dict[str, Any]:
    journal = await PgStore.open(dsn, campaign=campaign)
    print("ready", flush=True)
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=concurrency * 2)
    placed: list[int] = []

    async def feeder() -> None:
        while rows := await journal.claim(max(concurrency, 8)):
            for row_id, _, _ in rows:
                await queue.put(row_id)
        for _ in range(concurrency):
            await queue.put(None)

    async def worker() -> None:
        while (row_id := await queue.get()) is not None:
            await journal.mark_sending(row_id, sender="bench")
            await asyncio.sleep(0)  # the request
            journal.record(row_id, "placed", call_id=f"c{row_id}", status=200)
            placed.append(row_id)

    # Everyone starts together (the parent's "go" once every worker is connected).
    await asyncio.to_thread(sys.stdin.readline)
    started = time.time()
    await asyncio.gather(feeder(), *(worker() for _ in range(concurrency)))
    await journal.flush()
    ended = time.time()
    await journal.close()
    return {"placed": placed, "started": started, "ended": ended}


async def load(dsn: str, campaign: str, n: int) -> None:
    journal = await PgStore.open(dsn, campaign=campaign)
    try:
        for start in range(1, n + 1, 1000):
            entries = [(i, f"+4930{i:07d}") for i in range(start, min(n, start + 999) + 1)]
            last = entries[-1][0]
            await journal.ingest(entries, position=(last, last, ""), normalize=same)
    finally:
        await journal.close()


async def counts(dsn: str, campaign: str) -> tuple[int, int]:
    journal = await PgStore.open(dsn, campaign=campaign, read_only=True)
    try:
        c = await journal.counts()
    finally:
        await journal.close()
    return c.placed, c.pending


def run(dsn: str, workers: int, concurrency: int, n: int) -> tuple[float, list[str]]:
    """k worker processes on one campaign of ``n`` numbers; (pairs/s, failed checks)."""
    campaign = f"bench-{uuid.uuid4().hex[:8]}"
    asyncio.run(load(dsn, campaign, n))
    procs = [subprocess.Popen([sys.executable, __file__, "--child", dsn, campaign,
                               str(concurrency)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
             for _ in range(workers)]
    for proc in procs:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        results.append(json.loads(out))
    ids = [i for r in results for i in r["placed"]]
    elapsed = max(r["ended"] for r in results) - min(r["started"] for r in results)
    failures = []
    if len(ids) != len(set(ids)):
        failures.append(f"k={workers}: {len(ids) - len(set(ids))} numbers placed twice")
    if asyncio.run(counts(dsn, campaign)) != (n, 0) or len(set(ids)) != n:
        failures.append(f"k={workers}: not every number placed once")
    if workers > 1 and sum(1 for r in results if r["placed"]) < workers:
        failures.append(f"k={workers}: a worker placed nothing")
    return len(ids) / elapsed, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few hundred numbers")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        dsn, campaign, concurrency = args.child
        print(json.dumps(asyncio.run(child(dsn, campaign, int(concurrency)))))
        return 0
    started = time.perf_counter()
    try:
        cluster = pg_cluster()
        dsn = cluster.__enter__()
    except PostgresUnavailableError as exc:
        print(f"SKIP: {exc}")
        return 0
    failures: list[str] = []
    try:
        print(machine(f"Python {platform.python_version()}", "PostgreSQL on loopback, fsync on"))
        print(*ruled(f"{'workers':>7} {'C':>3} {'numbers':>8} {'pairs/s':>9} "
                     f"{'per worker':>11}  target >= {TARGET_PER_WORKER}/s per worker"), sep="\n")
        for concurrency in (32,) if args.quick else (1, 32):
            for workers in (1, 2, 4):
                per = (100 if args.quick else 1500) * (1 if concurrency == 1 else 4)
                rate, failed = run(dsn, workers, concurrency, per * workers)
                failures += failed
                print(f"{workers:>7} {concurrency:>3} {per * workers:>8,} {rate:>9,.0f} "
                      f"{rate / workers:>11,.0f}")
    finally:
        cluster.__exit__(None, None, None)
    return finish(started, args.quick, failures,
                  "every number claimed and placed by exactly one worker", sep="; ")


if __name__ == "__main__":
    sys.exit(main())
