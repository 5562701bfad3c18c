"""Shared fixtures: a client factory bound to a fake server, closed at teardown; a plain aiohttp
session for the tests that talk to the fake server without the client; a guard that keeps
every test in this process on loopback; and slow connections (`slow_connects`)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer, RedisServer
from ryze_async.testing._redis_server import REDIS_SERVER

from .infra import (
    mark_edge_modules,
    mark_infra_by_fixture,
    spawns_of_unmarked_tests,
    track_current_test,
)

ClientFactory = Callable[..., RyzeClient]

pytest_runtest_setup = track_current_test
pytest_runtest_call = track_current_test


# The costliest property tests (campaigns or clients against the fake server in every example)
# try half their examples, at least 10, unless RYZE_FULL_EXAMPLES=1, which .ci/run sets: CI's
# runs try every one, the quick loop stays quick. Each test writes its full count:
# ``@settings(max_examples=examples(80))``.
FULL_EXAMPLES = os.environ.get("RYZE_FULL_EXAMPLES") == "1"


def examples(full: int) -> int:
    """Hypothesis's ``max_examples`` for a property test whose full count is ``full``."""
    return full if FULL_EXAMPLES else max(10, full // 2)


# Test files go to RAM when the machine has a tmpfs with room and TMPDIR does not say otherwise:
# every journal commit fsyncs (the journal's durability), and on a disk those waits add up to
# more real time than any other wait of the quick loop. No test can observe an fsync: the crash
# tests kill a process, which leaves the page cache, and hence every committed write, in place.
_TMPFS = Path("/dev/shm")  # noqa: S108 - only a root: pytest and mkdtemp make fresh 0700 dirs
_TMPFS_ROOM = 1 << 30  # a small /dev/shm (a container's 64 MB) stays unused


def pytest_configure(config: pytest.Config) -> None:
    if "TMPDIR" in os.environ or not _TMPFS.is_dir() or not os.access(_TMPFS, os.W_OK | os.X_OK):
        return
    room = os.statvfs(_TMPFS)
    if room.f_bavail * room.f_frsize >= _TMPFS_ROOM:
        tempfile.tempdir = str(_TMPFS)  # tmp_path's root and every tempfile in the tests


@pytest.hookimpl(tryfirst=True)  # before -m "not infra" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_infra_by_fixture(items)
    mark_edge_modules(items)


@pytest.fixture(autouse=True)
def _collector_off_the_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Real-time tests (infra) run with the heap of the tests before them frozen (`gc.freeze`):
    a full collection then walks only what this test made.

    A test worker's heap grows over hundreds of tests; its full collections took 100-330 ms in
    the edge run (gc.callbacks, measured), some during the Redis Cluster tests. A fake server
    in this process, the oracle, would stamp a request that arrived during one that late, and
    the next use of its slot, on time, less than a period after it: a 429 where the client
    kept the margin (CI: `test_three_clients_share_the_quota_on_a_cluster`, margin 0.1 s).
    Unfrozen at teardown, the old heap is collected as before, in the tests without a clock.
    """
    if request.node.get_closest_marker("infra") is None:
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture(autouse=True)
def _no_unmarked_child_process() -> Iterator[None]:
    """Fail a test without the infra marker that started a child process even if the code
    under test swallowed the error raised at that place."""
    before = len(spawns_of_unmarked_tests)
    yield
    if started := spawns_of_unmarked_tests[before:]:
        pytest.fail(f"a test without the 'infra' marker started child processes: {started}")


def _loopback(host: object) -> bool:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that would resolve or connect to anything but loopback.

    A bug that sent a request to the default base URL (the real RyzeAPI) would otherwise place a
    real call; here it fails before a DNS query or a SYN leaves the machine.
    """
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"tests reach loopback only, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def refuse_remote(address: Any) -> None:
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise ConnectionRefusedError(f"tests reach loopback only, not {address[0]!r}")

    def connect(self: socket.socket, address: Any) -> None:
        refuse_remote(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse_remote(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """``make_client(server, **overrides)``: a client for ``server``, closed after the test."""
    clients: list[RyzeClient] = []

    def factory(server: FakeRyzeServer, **overrides: Any) -> RyzeClient:
        settings: dict[str, Any] = {
            "token": "test-token",
            "instance": "my-instance",
            "base_url": server.url,
            "rate_limit": None,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        }
        settings.update(overrides)
        client = RyzeClient(**settings)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A throw-away redis-server on a free loopback port, one per test module (infra)."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (apt install redis)")
    with RedisServer() as server:
        yield server


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain redis-py connection to `redis_server`, to read what the quota wrote."""
    aioredis = pytest.importorskip("redis.asyncio", reason="the shared quota needs 'redis'")
    async with aioredis.Redis.from_url(redis_server.url) as connection:
        yield connection


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A throw-away PostgreSQL cluster (``pg_cluster.py``), one per test process (each
    pytest-xdist worker starts its own); skipped where there is no PostgreSQL or asyncpg."""
    pytest.importorskip("asyncpg")
    from .pg_cluster import PostgresUnavailableError, pg_cluster

    try:
        with pg_cluster() as dsn:
            yield dsn
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))


def slow_connects(monkeypatch: pytest.MonkeyPatch, delays: Sequence[float]) -> list[float]:
    """The n-th connection takes ``delays[n % len(delays)]`` seconds of the loop's time to be
    made (a far server, a SYN lost once, a loop busy connecting 500 others): time between the
    quota's check before the send and the request leaving, where no check can see it. Returns
    the loop times the connections were asked for."""
    real = aiohttp.TCPConnector.connect
    asked: list[float] = []

    async def connect(self: aiohttp.TCPConnector, *args: Any, **kwargs: Any) -> Any:
        delay = delays[len(asked) % len(delays)]
        asked.append(asyncio.get_running_loop().time())
        if delay:
            await asyncio.sleep(delay)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "connect", connect)
    return asked
