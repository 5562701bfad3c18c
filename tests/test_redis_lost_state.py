"""Lost quota state never means over quota (issue 19), on real redis-servers.

The quota's keys can vanish or go back in time: FLUSHALL, an eviction, a restart without
persistence or from an older RDB snapshot, a failover to a replica that missed the last
writes. Each test spends a full window through two clients (two Redis pools, as two processes
have), loses the state, and calls again at once. The oracle is the fake server's record: never
more than the limit in any window of the period, sliding or fixed at any phase (`max_in_window`
counts every window that starts or ends at a request, which covers both), and no 429.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._redis_server import REDIS_SERVER, free_port
from ryze_async.testing._shared_quota import (
    WorkerArgs,
    release_worker,
    start_worker,
    stop_worker,
    worker_report,
)

from .server_thread import ServerThread

needs_redis = pytest.mark.skipif(not Path(REDIS_SERVER).exists(),
                                 reason="redis-server is not installed (apt install redis)")

LIMIT, PERIOD, MARGIN = 6, 1.0, 0.1
WINDOW = PERIOD + MARGIN
SECRET = "s3cret-redis-pw"


class Redis:
    """A redis-server of its own on a free loopback port, with its RDB file in `folder`
    (saved only by SAVE), that a test may kill -9 and start again from that file."""

    def __init__(self, folder: Path, *extra: str, password: str = "") -> None:
        self.folder, self.port, self.password = folder, free_port(), password
        self.extra = (*extra, "--requirepass", password) if password else extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it listens (bounded: 10 s). A port a kill freed may be taken
        for a moment as the local end of another connection (the port is in the ephemeral
        range): redis-server then cannot bind and exits, so it is started again."""
        deadline = time.monotonic() + 10
        while True:
            self.process = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(self.folder), "--dbfilename", "dump.rdb",
                 *self.extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._listening(self.process, deadline):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server never listened on port {self.port}")
            time.sleep(0.1)

    def _listening(self, process: subprocess.Popen[bytes], deadline: float) -> bool:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return process.poll() is None  # ours, not another that took the port
            except OSError:
                time.sleep(0.02)
        return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Redis]]:
    started: list[Redis] = []
    yield started
    for server in started:
        server.kill()


async def ready(url: str) -> aioredis.Redis:
    """A plain connection once the server answers PING (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        connection = aioredis.Redis.from_url(url)
        try:
            await connection.ping()
        except (OSError, RedisConnectionError):
            await connection.aclose()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            return connection


def client(server: FakeRyzeServer, url: str) -> RyzeClient:
    return RyzeClient("test-token", "my-instance", base_url=server.url, quota_url=url,
                      rate_limit=LIMIT, rate_period=PERIOD, rate_margin=MARGIN, max_retries=0)


async def calls(clients: list[RyzeClient], n: int, first: int) -> None:
    await asyncio.gather(*(clients[i % len(clients)].fake_call(f"55119{first + i:08d}")
                           for i in range(n)))


def check(server: FakeRyzeServer) -> None:
    record = list(server.requests)
    assert [r.status for r in record].count(429) == 0
    assert max_in_window([r.received_at for r in record], PERIOD) <= LIMIT


async def spend_a_window(clients: list[RyzeClient]) -> None:
    """Both clients call (each then remembers the quota's state), and a whole window is spent."""
    await calls(clients, 2, 0)  # the first is a fresh quota's probe
    await calls(clients, LIMIT, 100)


@pytest.mark.infra
@needs_redis
async def test_a_flush_mid_run_pauses_a_window_and_never_goes_over(
    tmp_path: Path, servers: list[Redis], caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis(tmp_path, password=SECRET)
    servers.append(redis)
    redis.start()
    raw = await ready(redis.url)
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, redis.url), client(server, redis.url)]
        try:
            await spend_a_window(clients)
            await raw.flushall()
            flushed = time.time()
            with caplog.at_level(logging.WARNING, logger="ryze_async.quota"):
                await asyncio.wait_for(calls(clients, LIMIT, 200), 30)
            check(server)
            after = [r.received_at for r in server.requests if r.received_at > flushed]
            assert min(after) - flushed <= WINDOW + 0.5  # a window's pause at most
        finally:
            for c in clients:
                await c.aclose()
            await raw.aclose()
    said = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(said) == 1, said  # once, by the process that saw it
    assert f"127.0.0.1:{redis.port}/0" in said[0]
    assert SECRET not in said[0]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


@pytest.mark.infra
@needs_redis
async def test_a_restart_from_an_older_snapshot_never_goes_over(
    tmp_path: Path, servers: list[Redis]
) -> None:
    redis = Redis(tmp_path)
    servers.append(redis)
    redis.start()
    raw = await ready(redis.url)
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, redis.url), client(server, redis.url)]
        try:
            await calls(clients, 2, 0)
            await raw.save()  # the snapshot: the log holds the two calls above
            await calls(clients, LIMIT - 2, 100)  # more traffic, never saved
            await raw.aclose()
            redis.kill()
            redis.start()  # from the saved RDB: the last LIMIT - 2 admissions are gone
            raw = await ready(redis.url)
            assert await raw.dbsize() > 0  # it did load the snapshot
            await asyncio.wait_for(calls(clients, LIMIT, 200), 30)
            check(server)
        finally:
            for c in clients:
                await c.aclose()
            await raw.aclose()


@pytest.mark.infra
@needs_redis
async def test_a_promoted_replica_that_missed_the_last_writes_never_goes_over(
    tmp_path: Path, servers: list[Redis]
) -> None:
    # A failover: the replica stops following (the network between them is cut, here by
    # REPLICAOF NO ONE) before the last writes reach it, and the clients are switched to it.
    # Clients find it by their URL: here new clients with the replica's URL, as a process
    # builds after a DNS or configuration switch; each process remembers the quota's state
    # for the token, whichever client and Redis it reaches it through.
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    primary = Redis(tmp_path / "p", "--repl-diskless-sync-delay", "0")
    servers.append(primary)
    primary.start()
    replica = Redis(tmp_path / "r", "--replicaof", "127.0.0.1", str(primary.port))
    servers.append(replica)
    replica.start()
    raw_primary, raw_replica = await ready(primary.url), await ready(replica.url)
    for _ in range(500):  # until the replica follows (bounded: 10 s)
        if (await raw_replica.info("replication"))["master_link_status"] == "up":
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the replica never synced with its primary")
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, primary.url), client(server, primary.url)]
        moved: list[RyzeClient] = []
        try:
            await calls(clients, 2, 0)
            for _ in range(500):  # until the replica has the first writes (bounded: 10 s)
                if await raw_replica.dbsize() >= await raw_primary.dbsize() > 0:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the replica never got the first writes")
            await raw_replica.execute_command("REPLICAOF", "NO", "ONE")
            await calls(clients, LIMIT - 2, 100)  # the last writes: the replica misses them
            (log,) = [k async for k in raw_primary.scan_iter("ryze:{*}:log")]
            kept, lost = await raw_replica.zcard(log), await raw_primary.zcard(log)
            assert 0 < kept < lost  # the replica has a log, behind: no fresh quota's probe
            moved = [client(server, replica.url), client(server, replica.url)]
            await asyncio.wait_for(calls(moved, LIMIT, 200), 30)
            check(server)
        finally:
            for c in [*clients, *moved]:
                await c.aclose()
            await raw_primary.aclose()
            await raw_replica.aclose()


@pytest.mark.infra
@needs_redis
async def test_two_processes_through_a_restart_from_an_older_snapshot_never_go_over(
    tmp_path: Path, servers: list[Redis]
) -> None:
    # Two worker processes, each keeping 2 x LIMIT calls queued, each with its own memory of
    # the quota. Mid-run: SAVE, a window more of traffic, kill -9, start again from the file.
    # Calls that meet the dead Redis fail closed (nothing sent); the others go on after it.
    redis = Redis(tmp_path)
    servers.append(redis)
    redis.start()
    raw = await ready(redis.url)
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        common = ("redis", redis.url, server.url, "unused", LIMIT, PERIOD, MARGIN)
        workers = await asyncio.gather(*(asyncio.to_thread(start_worker, WorkerArgs(
            *common, 2 * LIMIT, priority="bulk", first=k * 10_000, duration=60))
            for k in range(2)))
        try:
            for worker in workers:
                release_worker(worker)
            await asyncio.wait_for(server.wait_for_requests(LIMIT), 30)
            await raw.save()
            await asyncio.wait_for(server.wait_for_requests(2 * LIMIT), 30)
            await raw.aclose()
            redis.kill()
            redis.start()
            raw = await ready(redis.url)
            sent = len(server.requests)
            await asyncio.wait_for(server.wait_for_requests(sent + 2 * LIMIT), 30)
        finally:
            for worker in workers:
                stop_worker(worker)
            reports = [await asyncio.to_thread(worker_report, w, timeout=60) for w in workers]
            await raw.aclose()
    statuses = [s for report in reports for s in report["statuses"]]
    assert statuses.count(200) >= 4 * LIMIT
    assert set(statuses) <= {200, 0}  # 0: refused by the quota while Redis was down
    check(server)


@pytest.mark.infra
@needs_redis
async def test_a_process_unaware_of_a_loss_cannot_hide_it_from_the_one_that_saw_it(
    tmp_path: Path, servers: list[Redis]
) -> None:
    # A restart from an older snapshot drops two of A's admissions. Process B, which never saw
    # them, then admits first: the epoch's count climbs back to what A last saw, so the count
    # alone shows A nothing. The server reports no quota it would enforce (rate_limit=None:
    # its X-RateLimit-Remaining cannot help), so only the quota can keep the window.
    period = 5.0  # room for a restart and a worker's start inside one window
    redis = Redis(tmp_path)
    servers.append(redis)
    redis.start()
    raw = await ready(redis.url)
    async with ServerThread(rate_limit=None) as server:
        a = RyzeClient("test-token", "my-instance", base_url=server.url, quota_url=redis.url,
                       rate_limit=LIMIT, rate_period=period, rate_margin=MARGIN, max_retries=0)
        try:
            await a.fake_call("5511900000000")  # a fresh quota's probe: the epoch's first
            await raw.save()
            await calls([a], 2, 100)  # never saved: A saw the count at 3
            await raw.aclose()
            redis.kill()
            redis.start()
            raw = await ready(redis.url)
            unaware = await asyncio.to_thread(start_worker, WorkerArgs(
                "redis", redis.url, server.url, "unused", LIMIT, period, MARGIN, 2,
                first=10_000))
            release_worker(unaware)
            report = await asyncio.to_thread(worker_report, unaware, timeout=60)
            assert report["statuses"] == [200, 200]  # the count is back at 3
            await asyncio.wait_for(calls([a], 3, 200), 3 * period)
        finally:
            await a.aclose()
            await raw.aclose()
        arrivals = [r.received_at for r in server.requests]
    assert len(arrivals) == 8
    assert max_in_window(arrivals, period) <= LIMIT
