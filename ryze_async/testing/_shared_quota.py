"""Helpers for tests and benchmarks of the shared (Redis) quota: a throw-away redis-server, and
a worker process that places calls through it.

    python -m ryze_async.testing._shared_quota MODE REDIS_URL SERVER_URL DIGEST LIMIT PERIOD \
        MARGIN CALLS START_AT

runs one worker (`worker_command` builds the line): CALLS concurrent fake calls, each admitted
by the shared quota (MODE ``redis``) or by the process's own limiter (``local``, today's
behaviour), then prints one JSON line with the statuses it got.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Self

from ryze_async import RyzeClient, normalize_number
from ryze_async._quota._redis import quota_from_url

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A redis-server on a free loopback port, no persistence; killed on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed binary, our own arguments
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def admission_cost(redis_url: str, digest: str, rounds: int = 200) -> float:
    """Median seconds of an uncontended acquire() (a fresh key, limit never reached)."""
    quota = quota_from_url(
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

    def argv(self) -> list[str]:
        return [str(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def parse(cls, argv: list[str]) -> WorkerArgs:
        mode, redis_url, server_url, digest, limit, period, margin, calls = argv
        return cls(mode, redis_url, server_url, digest, int(limit), float(period), float(margin),
                   int(calls))


def run_workers(args: WorkerArgs, k: int, *, timeout: float = 120) -> list[int]:
    """Run `k` worker processes with `args` (blocking; call it off the event loop) and return
    every status they got. The children import this interpreter's ``ryze_async`` (PYTHONPATH)."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    command = [sys.executable, "-m", "ryze_async.testing._shared_quota", *args.argv()]
    workers = [
        subprocess.Popen(  # noqa: S603 - our own module
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        for _ in range(k)
    ]
    # Every worker begins at once, once all are loaded: a slow import must not pass for a slow
    # quota.
    for worker in workers:
        if worker.stdout is None or worker.stdout.readline().strip() != "ready":
            raise RuntimeError("a quota worker did not start")
    for worker in workers:
        if worker.stdin is not None:
            worker.stdin.write("go\n")
            worker.stdin.flush()
    statuses: list[int] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=timeout)
        if worker.returncode != 0:
            raise RuntimeError(f"a quota worker exited with {worker.returncode}")
        statuses += json.loads(out)["statuses"]
    return statuses


async def _worker(args: WorkerArgs) -> dict[str, object]:
    shared = args.mode == "redis"
    quota = quota_from_url(
        args.redis_url, token_digest=args.digest, limit=args.limit, period=args.period,
        margin=args.margin,
    ) if shared else None
    client = RyzeClient(
        "test-token", "my-instance", base_url=args.server_url, max_retries=0,
        rate_limit=None if shared else args.limit, rate_period=args.period,
        rate_margin=args.margin,
    )

    async def one(i: int) -> int:
        if quota is not None:
            await quota.acquire()
        try:
            result = await client.fake_call(f"55119{i:08d}")
        except Exception as exc:  # reported to the parent, not raised
            return int(getattr(exc, "status", 0) or 0)
        finally:
            if quota is not None:
                quota.settle()
        return 200 if result.success else 0

    # Warm what a first call loads lazily (phone metadata): on a loaded host a cold first burst
    # reaches the server later after its admission than the margin allows for.
    normalize_number("5511987654321")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go", once every worker is ready
    try:
        statuses = await asyncio.gather(*(one(i) for i in range(args.calls)))
    finally:
        await client.aclose()
        if quota is not None:
            await quota.aclose()
    return {"statuses": statuses}


def main(argv: list[str]) -> None:
    report = asyncio.run(_worker(WorkerArgs.parse(argv)))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
