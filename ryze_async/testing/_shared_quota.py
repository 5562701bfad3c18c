"""Helpers for tests and benchmarks of the shared (Redis) quota: a throw-away redis-server, and
a worker process that places calls through it.

    python -m ryze_async.testing._shared_quota MODE REDIS_URL SERVER_URL DIGEST LIMIT PERIOD \
        MARGIN CALLS

runs one worker (`run_workers` builds the line): CALLS concurrent fake calls of a
``RyzeClient`` admitted by the shared quota (MODE ``redis``: ``quota_url=REDIS_URL``) or by the
process's own limiter (``local``), then prints one JSON line with the statuses it got.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from ryze_async import RedisQuota, RyzeClient, normalize_number

from ._redis_server import REDIS_SERVER, RedisServer, free_port

__all__ = ["REDIS_SERVER", "RedisServer", "WorkerArgs", "admission_cost", "finish_worker",
           "free_port", "release_worker", "run_workers", "start_worker"]


async def admission_cost(redis_url: str, digest: str, rounds: int = 200) -> float:
    """Median seconds of an uncontended acquire() (a fresh key, limit never reached)."""
    quota = RedisQuota.from_url(
        redis_url, token_digest=digest + "-cost", limit=10**9, period=60.0, margin=1.0
    )
    quota.settle()
    costs = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            await quota.acquire()
            costs.append(time.perf_counter() - started)
            quota.settle()
    finally:
        await quota.aclose()
    return statistics.median(costs[rounds // 10:])


@dataclass(frozen=True)
class WorkerArgs:
    """One worker's orders: `mode` ``redis`` (the shared quota) or ``local`` (its own limiter)."""

    mode: str
    redis_url: str
    server_url: str
    digest: str
    limit: int
    period: float
    margin: float
    calls: int
    #: The client's lane and reserve (issue 11), and the first number's index (numbers are
    #: ``55119`` and eight digits: workers with different ``first`` call different numbers).
    priority: str = "interactive"
    reserve: int = 0
    first: int = 0
    #: ``True``: the calls go one after the other (a bot's users), not all at once.
    sequential: bool = False

    def argv(self) -> list[str]:
        return [str(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def parse(cls, argv: list[str]) -> WorkerArgs:
        mode, redis_url, server_url, digest, limit, period, margin, calls, *lanes = argv
        priority, reserve, first, sequential = lanes or ["interactive", "0", "0", "False"]
        return cls(mode, redis_url, server_url, digest, int(limit), float(period), float(margin),
                   int(calls), priority, int(reserve), int(first), sequential == "True")


def run_workers(args: WorkerArgs, k: int, *, timeout: float = 120) -> list[int]:
    """Run `k` worker processes with `args` (blocking; call it off the event loop) and return
    every status they got. The children import this interpreter's ``ryze_async`` (PYTHONPATH)."""
    # Every worker begins at once, once all are loaded: a slow import must not pass for a slow
    # quota.
    workers = [start_worker(args) for _ in range(k)]
    for worker in workers:
        release_worker(worker)
    return [status for worker in workers for status in finish_worker(worker, timeout=timeout)]


def start_worker(args: WorkerArgs) -> subprocess.Popen[str]:
    """Start one worker and wait until it is loaded (its client open); `release_worker` starts
    its calls."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    command = [sys.executable, "-m", "ryze_async.testing._shared_quota", *args.argv()]
    worker = subprocess.Popen(  # noqa: S603 - our own module
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    if worker.stdout is None or worker.stdout.readline().strip() != "ready":
        worker.kill()
        raise RuntimeError("a quota worker did not start")
    return worker


def release_worker(worker: subprocess.Popen[str]) -> None:
    if worker.stdin is not None:
        worker.stdin.write("go\n")
        worker.stdin.flush()


def finish_worker(worker: subprocess.Popen[str], *, timeout: float = 120) -> list[int]:
    """The statuses a released worker got, once it is done."""
    out, _ = worker.communicate(timeout=timeout)
    if worker.returncode != 0:
        raise RuntimeError(f"a quota worker exited with {worker.returncode}")
    statuses: list[int] = json.loads(out)["statuses"]
    return statuses


async def _worker(args: WorkerArgs) -> dict[str, object]:
    # MODE redis: the public way, RyzeClient(quota_url=...); the quota is keyed by the server's
    # origin (a fresh port per run) and token. MODE local: each process's own limiter.
    client = RyzeClient(
        "test-token", "my-instance", base_url=args.server_url, max_retries=0,
        rate_limit=args.limit, rate_period=args.period, rate_margin=args.margin,
        quota_url=args.redis_url if args.mode == "redis" else None,
        priority="bulk" if args.priority == "bulk" else "interactive",
        interactive_reserve=args.reserve,
    )

    async def one(i: int) -> int:
        try:
            result = await client.fake_call(f"55119{args.first + i:08d}")
        except Exception as exc:  # reported to the parent, not raised
            return int(getattr(exc, "status", 0) or 0)
        return 200 if result.success else 0

    # Warm what a first call loads lazily (phone metadata): on a loaded host a cold first burst
    # reaches the server later after its admission than the margin allows for.
    normalize_number("5511987654321")
    async with client:  # a reserve is in force from here, before the first call
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # "go", once every worker is ready
        if args.sequential:
            statuses = [await one(i) for i in range(args.calls)]
        else:
            statuses = list(await asyncio.gather(*(one(i) for i in range(args.calls))))
    return {"statuses": statuses}


def main(argv: list[str]) -> None:
    report = asyncio.run(_worker(WorkerArgs.parse(argv)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
