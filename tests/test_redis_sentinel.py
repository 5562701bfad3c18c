"""The shared quota through Sentinel (issue 19): ``redis+sentinel://host:port,.../MASTER/DB``.

A real Sentinel set on loopback (`SentinelSet`: a master with a password, one replica, three
sentinels). Load runs while ``SENTINEL FAILOVER`` promotes the replica: the quota finds the
new master through the sentinels (the old one, now a replica, answers READONLY, which redis-py
takes as "ask the sentinels again"). A call that meets the switch fails closed, nothing sent;
the fake server's record is the oracle: never over the limit in any window, no 429, nobody
twice, and calls go on after the failover.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from ryze_async import InvalidRequestError, QuotaBackendError
from ryze_async.testing import FakeRyzeServer
from ryze_async.testing._redis_server import SentinelSet

from .test_redis_cluster import LIMIT, PERIOD, calls, check, client, needs_redis

PASSWORD = "Sentinel-master-pw-5Jd0q"


@pytest.fixture
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    with SentinelSet(tmp_path_factory.mktemp("sentinel"), password=PASSWORD) as started:
        yield started


@pytest.mark.infra
@needs_redis
async def test_a_forced_failover_mid_run_reaches_the_new_master_and_stays_exact(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    url = sentinels.url(auth=f":{PASSWORD}@")
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, url) for _ in range(2)]
        try:
            with caplog.at_level(logging.WARNING):
                assert await calls(clients, 2, 0) == [None, None]
                load = asyncio.ensure_future(calls(clients, 4 * LIMIT, 100))
                await asyncio.wait_for(server.wait_for_requests(LIMIT), 30)
                old = sentinels.master_port()
                new = await asyncio.to_thread(sentinels.failover)
                promoted = time.time()
                failures = await asyncio.wait_for(load, 60)
                after = await calls(clients, LIMIT, 1000)  # all of them on the new master
        finally:
            for c in clients:
                await c.aclose()
    assert (old, new) == (sentinels.master, sentinels.replica)
    assert all(isinstance(f, QuotaBackendError) for f in failures if f is not None)
    assert after == [None] * LIMIT
    check(server, 2 + failures.count(None) + LIMIT)
    assert any(r.received_at > promoted for r in server.requests)
    for text in [caplog.text, *(str(f) for f in failures if f is not None)]:
        assert PASSWORD[4:12] not in text


@pytest.mark.infra
@needs_redis
async def test_a_wrong_master_password_fails_closed_before_anything_is_sent(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = PASSWORD[::-1]
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with pytest.raises(InvalidRequestError, match="password") as caught:
            async with client(server, sentinels.url(auth=f":{wrong}@")):
                pass
    assert not server.requests
    assert "redis+sentinel://127.0.0.1:" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), caplog.text):
        for secret in (PASSWORD, wrong):
            assert secret[4:10] not in text
