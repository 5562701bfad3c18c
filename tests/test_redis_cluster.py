"""The shared quota on a Redis Cluster (issue 19): ``redis+cluster://host:port,host:port/0``.

A real local cluster of three masters (`LocalCluster`). Every key of one token carries one hash
tag, so each script runs on the node that owns the token's slot; the slot moves mid-run
(MOVED and ASK, which redis-py follows) and the scripts are flushed mid-run (NOSCRIPT, which
redis-py answers by loading the script again). The fake server's record is the oracle: never
over the limit in any window, no 429, nobody called twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from ryze_async import InvalidRequestError, QuotaBackendError, RyzeClient
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._redis_server import REDIS_SERVER, LocalCluster

from .redis_tls import ACL_PASSWORD, TlsCluster, tls_cluster
from .server_thread import ServerThread

needs_redis = pytest.mark.skipif(not Path(REDIS_SERVER).exists(),
                                 reason="redis-server is not installed (apt install redis)")

LIMIT, PERIOD, MARGIN = 6, 1.0, 0.1


@pytest.fixture(scope="module")
def started_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def cluster(started_cluster: LocalCluster) -> LocalCluster:
    for port in started_cluster.ports:
        started_cluster.cli(port, "FLUSHALL")
    return started_cluster


def client(server: ServerThread, url: str) -> RyzeClient:
    # Each fake server has a port of its own: each test's quota its own keys (and slot).
    return RyzeClient("test-token", "my-instance", base_url=server.url, quota_url=url,
                      rate_limit=LIMIT, rate_period=PERIOD, rate_margin=MARGIN, max_retries=0)


async def calls(clients: list[RyzeClient], n: int, first: int) -> list[BaseException | None]:
    """`n` calls spread over `clients`, all at once; what each raised (None: placed)."""
    async def one(i: int) -> BaseException | None:
        try:
            await clients[i % len(clients)].fake_call(f"55119{first + i:08d}")
        except (QuotaBackendError, InvalidRequestError) as exc:
            return exc
        return None

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def check(server: ServerThread, placed: int) -> None:
    record = list(server.requests)
    assert [r.status for r in record].count(429) == 0
    assert max_in_window([r.received_at for r in record], PERIOD) <= LIMIT
    numbers = Counter(r.json["number"] for r in server.placed_calls)
    assert len(numbers) == placed
    assert max(numbers.values()) == 1  # nobody twice


def token_slot(cluster: LocalCluster) -> int:
    """The slot of the quota's keys (found on whichever node holds them; each test starts
    on an empty cluster)."""
    for port in cluster.ports:
        keys = cluster.cli(port, "--scan", "--pattern", "ryze:*").split()
        if keys:
            slots = {int(cluster.cli(port, "CLUSTER", "KEYSLOT", key)) for key in keys}
            assert len(slots) == 1, slots  # one hash tag: one slot
            return slots.pop()
    raise AssertionError("no quota key on any node")


@pytest.mark.parametrize("url", [
    "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/0",
    "rediss+cluster://ryze:pw-8Kq2@localhost:7000/0?ssl_cert_reqs=required",
    "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0",
    "redis+sentinel://ryze:pw-8Kq2@127.0.0.1:26379/mymaster",
])
def test_the_cluster_and_sentinel_url_forms_are_taken(url: str) -> None:
    RyzeClient("test-token", "i", quota_url=url)


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+cluster://ryze:pw-8Kq2@127.0.0.1:7000/3", "database 0 only"),
    ("redis+cluster://ryze:pw-8Kq2@127.0.0.1:7000,127.0.0.1/0", "HOST:PORT"),
    ("redis+cluster://ryze:pw-8Kq2@127.0.0.1:7000,127.0.0.1:99999/0", "HOST:PORT"),
    ("redis+cluster://ryze:pw-8Kq2@/0", "no host"),
    ("redis+sentinel://ryze:pw-8Kq2@127.0.0.1:26379", "names no master"),
    ("redis+sentinel://ryze:pw-8Kq2@127.0.0.1:26379/m/x", "names no master"),
    ("redis+cluster://ryze:pw-8Kq2@127.0.0.1:7000/0?ssl_ca_certs=/etc/hosts", "rediss"),
])
def test_a_bad_cluster_or_sentinel_url_is_refused_at_construction(url: str, expected: str) -> None:
    with pytest.raises(InvalidRequestError, match=expected) as refused:
        RyzeClient("test-token", "i", quota_url=url)
    assert "8Kq2" not in str(refused.value)


@pytest.mark.infra
@needs_redis
async def test_three_clients_share_the_quota_on_a_cluster(cluster: LocalCluster) -> None:
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, cluster.url()) for _ in range(3)]
        try:
            failures = await asyncio.wait_for(calls(clients, 3 * LIMIT, 0), 60)
        finally:
            for c in clients:
                await c.aclose()
    assert failures == [None] * (3 * LIMIT)
    check(server, 3 * LIMIT)
    token_slot(cluster)  # every key of the token in one slot


def redirects(cluster: LocalCluster) -> Counter[str]:
    """The MOVED, ASK and TRYAGAIN answers every node gave since its stats were reset."""
    said: Counter[str] = Counter()
    for port in cluster.ports:
        for line in cluster.cli(port, "INFO", "errorstats").splitlines():
            if line.startswith("errorstat_"):
                name, _, count = line.removeprefix("errorstat_").partition(":count=")
                said[name] += int(count.strip())
    return said


@pytest.mark.infra
@needs_redis
async def test_the_token_slot_moving_mid_run_stays_exact(cluster: LocalCluster) -> None:
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, cluster.url()) for _ in range(2)]
        try:
            assert await calls(clients, 2, 0) == [None, None]
            slot = token_slot(cluster)
            source = cluster.owner(slot)
            target = next(p for p in cluster.ports if p != source)
            load = asyncio.ensure_future(calls(clients, 4 * LIMIT, 100))
            await asyncio.wait_for(server.wait_for_requests(LIMIT), 30)
            for port in cluster.ports:
                cluster.cli(port, "CONFIG", "RESETSTAT")
            # Held longer than a window in the migrating state: waiters that wake meet ASK.
            await asyncio.to_thread(cluster.move_slot, slot, target, hold=1.5 * PERIOD)
            failures = await asyncio.wait_for(load, 60)
            assert cluster.owner(slot) == target
        finally:
            for c in clients:
                await c.aclose()
    said = redirects(cluster)  # the nodes' own count of what they answered
    assert said["MOVED"] > 0, said
    assert said["ASK"] > 0, said
    # A node answers TRYAGAIN to a script while the slot moves (some of its keys never
    # exist): tried again past redis-py's 16 redirects, every call was placed, once.
    assert said["TRYAGAIN"] > 0, said
    assert failures == [None] * (4 * LIMIT)
    check(server, 2 + 4 * LIMIT)


@pytest.mark.infra
@needs_redis
async def test_a_script_flush_mid_run_loads_the_scripts_again(cluster: LocalCluster) -> None:
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, cluster.url()) for _ in range(2)]
        flushed = threading.Event()

        def flush_all() -> None:
            for port in cluster.ports:
                cluster.cli(port, "SCRIPT", "FLUSH")
            flushed.set()

        try:
            assert await calls(clients, 2, 0) == [None, None]
            load = asyncio.ensure_future(calls(clients, 3 * LIMIT, 100))
            await asyncio.wait_for(server.wait_for_requests(LIMIT), 30)
            await asyncio.to_thread(flush_all)
            failures = await asyncio.wait_for(load, 60)
        finally:
            for c in clients:
                await c.aclose()
    assert flushed.is_set()
    assert failures == [None] * (3 * LIMIT)
    check(server, 2 + 3 * LIMIT)
    owner = cluster.owner(token_slot(cluster))
    assert "number_of_cached_scripts:0" not in cluster.cli(owner, "INFO", "memory")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    with tls_cluster(tmp_path_factory.mktemp("tls-cluster")) as started:
        yield started


@pytest.mark.infra
@needs_redis
async def test_the_quota_on_a_tls_cluster_as_the_acl_user(tls: TlsCluster) -> None:
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, tls.url()) for _ in range(2)]
        try:
            failures = await asyncio.wait_for(calls(clients, 2 * LIMIT, 0), 60)
        finally:
            for c in clients:
                await c.aclose()
    assert failures == [None] * (2 * LIMIT)
    check(server, 2 * LIMIT)


@pytest.mark.infra
@needs_redis
async def test_a_wrong_password_on_a_tls_cluster_fails_closed_and_shows_none_of_it(
    tls: TlsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = ACL_PASSWORD[::-1]
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with pytest.raises(InvalidRequestError) as caught:
            async with client(server, tls.url(password=wrong)):
                pass
    assert not server.requests
    assert "rediss+cluster://ryze@127.0.0.1:" in str(caught.value)
    texts = [caplog.text]
    exc: BaseException | None = caught.value
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    for text in texts:
        for secret in (ACL_PASSWORD, wrong):
            for start in range(len(secret) - 5):
                assert secret[start:start + 6] not in text


@pytest.mark.parametrize("password", ["Pw-7hQx93kZ", "s3c:r3tPassW", "p%40ssW0rd%3Aq", "9182/7364"])
@pytest.mark.parametrize("url", [
    "redis+cluster://u:{pw}@127.0.0.1:7000,127.0.0.1:notaport/0",
    "redis+cluster://u:{pw}@127.0.0.1:7000/5",
    "rediss+cluster://u:{pw}@127.0.0.1:7000/0?ssl_ca_certs=/nonexistent.pem",
    "redis+sentinel://u:{pw}@127.0.0.1:26379",
    "redis+sentinel://127.0.0.1:26379?sentinel_password={pw}",
    "redis+sentinel://u:{pw}@127.0.0.1:26379/m/0?ssl_ca_certs=/etc/hosts",
])
def test_a_refused_cluster_or_sentinel_url_shows_no_part_of_its_password(
    url: str, password: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        RyzeClient("test-token", "i", quota_url=url.format(pw=password))
    for secret in {password, unquote(password)}:
        for start in range(len(secret) - 3):
            assert secret[start:start + 4] not in str(refused.value), refused.value
