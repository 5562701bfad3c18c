"""Helpers for tests and benchmarks of the shared (Redis) quota: a throw-away redis-server, and
a worker process that places calls through it.

    python -m ryze_async.testing._shared_quota MODE REDIS_URL SERVER_URL DIGEST LIMIT PERIOD \
        MARGIN CALLS

runs one worker (`run_workers` builds the line): CALLS concurrent fake calls of a
``RyzeClient`` admitted by the shared quota (MODE ``redis``: ``quota_url=REDIS_URL``) or by the
process's own limiter (``local``), then prints one JSON line with the statuses it got. The
optional arguments that follow (`WorkerArgs`) choose the lane, the reserve and, for benchmarks,
a mode that runs for a duration: a campaign's queue kept CALLS deep, or a bot whose users ask
at random gaps (the JSON line then also holds each call's wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ryze_async import RyzeClient, normalize_number

from ._redis_server import REDIS_SERVER, RedisServer, free_port

__all__ = ["REDIS_SERVER", "RedisServer", "WorkerArgs", "admission_cost", "admission_times",
           "fast_path_and_search",
           "finish_worker", "free_port", "release_worker", "run_workers", "start_worker",
           "stop_worker", "worker_report"]


async def admission_cost(redis_url: str, digest: str, rounds: int = 200) -> float:
    """Median seconds of an uncontended acquire() (a fresh key, limit never reached)."""
    return statistics.median(await admission_times(redis_url, digest, rounds))


async def admission_times(redis_url: str, digest: str, rounds: int = 200) -> list[float]:
    """Seconds of each uncontended acquire() (a fresh key, limit never reached), the first
    tenth (connections opening, scripts loading) left out."""
    # The module itself loads without the 'redis' extra: benchmarks skip their Redis tables.
    from ryze_async import RedisQuota  # noqa: PLC0415 - redis only when measured

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
    return costs[rounds // 10:]


def fast_path_and_search(redis: Any, cap: int, offsets: list[int]) -> tuple[int, int]:
    """Both answers of the admission script for an interactive call at Redis's now, on a log of
    entries at ``offsets`` (microseconds from now; window 0.1 s), computed in one script call
    (one ``TIME``): whether the uncontended fast path (``room_at``) takes it, and the full
    search's (``first_fit``) slot, in microseconds from now. ``redis``: a sync redis-py client;
    the keys it uses are ``fast:0`` to ``fast:6``."""
    # The scripts are the quota's own text: the property is about them, not about a copy.
    from .._quota.redis import lua  # noqa: PLC0415 - redis only when asked

    script = lua._PREAMBLE + """
redis.call('DEL', log)
for i = 2, #ARGV do redis.call('ZADD', log, int(now + tonumber(ARGV[i])), 'e' .. i) end
local cap, window = tonumber(ARGV[1]), 100000
local room = 0
if room_at(now, cap, window) then room = 1 end
return {room, int(first_fit(now, redis.call('ZCARD', log), cap, window) - now)}
"""
    room, slot = redis.eval(script, 7, *(f"fast:{k}" for k in range(7)), cap, *offsets)
    return int(room), int(slot)


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
    #: Benchmarks: with `duration` > 0 the worker runs for that many seconds after "go".
    #: `gap` 0: `calls` tasks each place call after call (a campaign's queue, `calls` deep),
    #: until `duration` ends or `stop_worker`, then cancelled (a waiting call gives its slot
    #: back). `gap` > 0: a bot whose users ask at uniform(0, `gap`) s gaps (seeded by `seed`),
    #: each call its own task; the report then holds every call's wait, from asking to the
    #: call's return, in seconds.
    duration: float = 0.0
    gap: float = 0.0
    seed: int = 0

    def argv(self) -> list[str]:
        return [str(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def parse(cls, argv: list[str]) -> WorkerArgs:
        """The inverse of `argv`; arguments left off at the end keep their defaults."""
        # The annotations are strings here (postponed evaluation): map them to parsers.
        parsers: dict[str, Callable[[str], object]] = {
            "str": str, "int": int, "float": float, "bool": lambda text: text == "True"}
        return cls(*(parsers[str(f.type)](text)
                     for f, text in zip(fields(cls), argv, strict=False)))  # type: ignore[arg-type]


def run_workers(args: WorkerArgs, k: int, *, timeout: float = 120) -> list[int]:
    """Run `k` worker processes with `args` (blocking; call it off the event loop) and return
    every status they got. The children import this interpreter's ``ryze_async`` (PYTHONPATH)."""
    # Every worker begins at once, once all are loaded: a slow import must not pass for a slow
    # quota. They load side by side (one interpreter's start-up each, about 1 s).
    workers = [_spawn_worker(args) for _ in range(k)]
    try:
        for worker in workers:
            _wait_ready(worker)
    except BaseException:
        for worker in workers:
            worker.kill()
            worker.communicate()
        raise
    for worker in workers:
        release_worker(worker)
    return [status for worker in workers for status in finish_worker(worker, timeout=timeout)]


def start_worker(args: WorkerArgs) -> subprocess.Popen[str]:
    """Start one worker and wait until it is loaded (its client open); `release_worker` starts
    its calls."""
    worker = _spawn_worker(args)
    _wait_ready(worker)
    return worker


def _spawn_worker(args: WorkerArgs) -> subprocess.Popen[str]:
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    command = [sys.executable, "-m", "ryze_async.testing._shared_quota", *args.argv()]
    return subprocess.Popen(  # noqa: S603 - our own module
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )


def _wait_ready(worker: subprocess.Popen[str]) -> None:
    """Until the worker says it is loaded (its client open); killed if it never does."""
    if worker.stdout is None or worker.stdout.readline().strip() != "ready":
        worker.kill()
        raise RuntimeError("a quota worker did not start")


def release_worker(worker: subprocess.Popen[str]) -> None:
    if worker.stdin is not None:
        worker.stdin.write("go\n")
        worker.stdin.flush()


def stop_worker(worker: subprocess.Popen[str]) -> None:
    """End a campaign loop (`WorkerArgs.duration`) before its duration is over."""
    if worker.stdin is not None and not worker.stdin.closed:
        with contextlib.suppress(BrokenPipeError):  # it has ended already
            worker.stdin.write("stop\n")
            worker.stdin.flush()


def finish_worker(worker: subprocess.Popen[str], *, timeout: float = 120) -> list[int]:
    """The statuses a released worker got, once it is done."""
    statuses: list[int] = worker_report(worker, timeout=timeout)["statuses"]
    return statuses


def worker_report(worker: subprocess.Popen[str], *, timeout: float = 120) -> dict[str, list[Any]]:
    """A released worker's whole report, once it is done: ``statuses``, and ``waits``
    (seconds, one per call) from a bot that ran for a duration."""
    out, _ = worker.communicate(timeout=timeout)
    if worker.returncode != 0:
        raise RuntimeError(f"a quota worker exited with {worker.returncode}")
    report: dict[str, list[Any]] = json.loads(out)
    return report


async def _campaign_loop(args: WorkerArgs, one: Callable[[int], Awaitable[int]]) -> list[int]:
    """`args.calls` tasks placing call after call for `args.duration` s: a full bulk queue."""
    statuses: list[int] = []
    # Checked before every call as well as cancelling the senders: a cancel that some layer
    # turned into a failed call (`one` reports those) must not keep a sender calling forever.
    stopping = asyncio.Event()

    async def sender(index: int) -> None:
        for n in range(index, 2**31, args.calls):  # each task its own numbers
            if stopping.is_set():
                return
            statuses.append(await one(n))

    tasks = [asyncio.create_task(sender(i)) for i in range(args.calls)]
    # "stop" (or the parent closing stdin) ends the loop early; the reading thread ends with
    # stdin, which `worker_report` closes.
    stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    await asyncio.wait([stop], timeout=args.duration)
    stopping.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return statuses


async def _bot_loop(args: WorkerArgs, one: Callable[[int], Awaitable[int]],
                    ) -> tuple[list[int], list[float]]:
    """Users ask at seeded random gaps for `args.duration` s, each call its own task."""
    rng = random.Random(args.seed)
    loop = asyncio.get_running_loop()
    end = loop.time() + args.duration

    async def user(index: int) -> tuple[int, float]:
        began = time.perf_counter()
        status = await one(index)
        return status, time.perf_counter() - began

    users: list[asyncio.Task[tuple[int, float]]] = []
    while True:
        await asyncio.sleep(rng.uniform(0, args.gap))
        if loop.time() >= end:
            break
        users.append(asyncio.create_task(user(len(users))))
    done = await asyncio.gather(*users)
    return [status for status, _ in done], [wait for _, wait in done]


async def _worker(args: WorkerArgs) -> dict[str, list[Any]]:
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
        if args.duration > 0 and args.gap > 0:
            statuses, waits = await _bot_loop(args, one)
            return {"statuses": statuses, "waits": waits}
        if args.duration > 0:
            statuses = await _campaign_loop(args, one)
        elif args.sequential:
            statuses = [await one(i) for i in range(args.calls)]
        else:
            statuses = list(await asyncio.gather(*(one(i) for i in range(args.calls))))
    return {"statuses": statuses}


def main(argv: list[str]) -> None:
    report = asyncio.run(_worker(WorkerArgs.parse(argv)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
