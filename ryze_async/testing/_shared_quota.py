"""Helpers for tests and benchmarks of the shared (Redis) quota: a throw-away redis-server, and
a worker process that places calls through it.

    python -m ryze_async.testing._shared_quota REDIS_URL SERVER_URL DIGEST LIMIT PERIOD CALLS

runs one worker: CALLS concurrent fake calls, each admitted by the shared quota first, then
prints one JSON line: the statuses it got and the median cost of an uncontended acquire().
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from types import TracebackType
from typing import Self

from ryze_async import RyzeClient
from ryze_async._limiter import default_margin
from ryze_async._redis_quota import quota_from_url

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


async def _worker(
    redis_url: str, server_url: str, digest: str, *, limit: int, period: float, calls: int
) -> dict[str, object]:
    quota = quota_from_url(
        redis_url, token_digest=digest, limit=limit, period=period, margin=default_margin(period)
    )
    client = RyzeClient("test-token", "my-instance", base_url=server_url, rate_limit=None,
                        max_retries=0)

    async def one(i: int) -> int:
        await quota.acquire()
        try:
            result = await client.fake_call(f"55119{i:08d}")
        except Exception as exc:  # reported to the parent, not raised
            return int(getattr(exc, "status", 0) or 0)
        finally:
            quota.settle()
        return 200 if result.success else 0

    try:
        statuses = await asyncio.gather(*(one(i) for i in range(calls)))
    finally:
        await client.aclose()
        await quota.aclose()
    return {"statuses": statuses}


def main(argv: list[str]) -> None:
    redis_url, server_url, digest, limit, period, calls = argv
    report = asyncio.run(
        _worker(redis_url, server_url, digest, limit=int(limit), period=float(period),
                calls=int(calls))
    )
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
