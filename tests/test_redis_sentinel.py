"""The shared quota through Sentinel (issue 19): ``redis+sentinel://host:port,.../MASTER/DB``.

A real Sentinel set on loopback (`SentinelSet`: a master with a password, one replica, three
sentinels). Load runs while ``SENTINEL FAILOVER`` promotes the replica: the quota finds the
new master through the sentinels (the old one, now a replica, answers READONLY, which redis-py
takes as "ask the sentinels again"). A call that meets the switch fails closed, nothing sent;
the fake server's record is the oracle: never over the limit in any window, no 429, nobody
twice, and calls go on after the failover. The split brain of a failover (the old master, not
yet demoted, still admitting) is closed by ``min-replicas-to-write`` (`SentinelSet(guarded=
True)`); a quota on a master without it says so once. Over TLS (``rediss+sentinel://``: the
sentinels and the data nodes on TLS only, the sentinels with a password of their own, the docs'
ACL user on the data nodes, `redis_tls.tls_sentinels`): the same failover, and a wrong CA, a
certificate for another name, a missing or wrong sentinel password fail closed before anything
is sent, no password shown; so does a master name no sentinel knows, plain or over TLS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from ryze_async import InvalidRequestError, QuotaBackendError, RyzeClient
from ryze_async.testing._redis_server import SentinelSet, free_port

from .redis_tls import ACL_PASSWORD, SENTINEL_PASSWORD, TlsSentinels, tls_sentinels
from .server_thread import ServerThread
from .test_redis_cluster import LIMIT, PERIOD, calls, check, client, needs_redis

PASSWORD = "Sentinel-master-pw-5Jd0q"
SLOW_MARGIN = 0.3


def started(factory: pytest.TempPathFactory, *, guarded: bool = False) -> Iterator[SentinelSet]:
    with SentinelSet(factory.mktemp("sentinel"), password=PASSWORD, guarded=guarded) as ready:
        yield ready


@pytest.fixture
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    yield from started(tmp_path_factory)


async def failover_mid_run(sentinels: SentinelSet, url: str
                           ) -> tuple[int, int, list[BaseException | None]]:
    """Two clients through `url` place calls while the sentinels fail over; checked on the
    server's record: every call placed or failed closed, none twice, never over the limit,
    and some placed on the new master. (old master, new master, what each loaded call raised)."""
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        clients = [client(server, url) for _ in range(2)]
        try:
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
    assert all(isinstance(f, QuotaBackendError) for f in failures if f is not None)
    assert after == [None] * LIMIT
    check(server, 2 + failures.count(None) + LIMIT)
    assert any(r.received_at > promoted for r in server.requests)
    return old, new, failures


@pytest.mark.infra
@needs_redis
async def test_a_forced_failover_mid_run_reaches_the_new_master_and_stays_exact(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        old, new, failures = await failover_mid_run(sentinels, sentinels.url(
            auth=f":{PASSWORD}@"))
    assert (old, new) == (sentinels.master, sentinels.replica)
    for text in [caplog.text, *(str(f) for f in failures if f is not None)]:
        assert PASSWORD[4:12] not in text
    # Said once (two clients), naming the setting that closes the split brain.
    assert caplog.text.count("min-replicas-to-write is not set") == 1


@pytest.fixture
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    yield from started(tmp_path_factory, guarded=True)


@pytest.mark.infra
@needs_redis
async def test_an_old_master_not_yet_demoted_admits_nobody_once_its_replica_is_promoted(
    guarded: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    # Split brain (issue 19): after a promotion the sentinels leave the old master a master for
    # 8 to 10 s, and connections still open to it write there. One client keeps its
    # connections to the old master; one built after the promotion reaches the new one; both
    # burst at once, each against a log without the other's calls, and their epochs agree
    # (the replica was in sync). `min-replicas-to-write 1` (the setting the docs ask for) makes
    # the old master refuse writes once its replica left it: those calls fail closed. (So does
    # the new master until the old one is its replica: a set of one replica pauses then.)
    url = guarded.url(auth=f":{PASSWORD}@")
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        pinned, fresh = client(server, url), None
        try:
            assert await calls([pinned], LIMIT, 0) == [None] * LIMIT
            old = guarded.master_port()
            await asyncio.to_thread(guarded.promote)
            assert "role:master" in guarded.cli(old, "INFO", "replication")  # not demoted
            fresh = client(server, url)
            split = await asyncio.wait_for(calls([pinned, fresh], 2 * LIMIT, 100), 30)
            await asyncio.to_thread(guarded.await_demotion, old)
            after = await asyncio.wait_for(calls([pinned, fresh], LIMIT, 1000), 30)
        finally:
            for c in (pinned, fresh):
                if c is not None:
                    await c.aclose()
    assert all(isinstance(f, QuotaBackendError) for f in split if f is not None)
    assert after == [None] * LIMIT  # both clients, on the new master
    check(server, 2 * LIMIT + split.count(None))
    assert "min-replicas-to-write" not in caplog.text


@pytest.mark.infra
@needs_redis
async def test_a_wrong_master_password_fails_closed_before_anything_is_sent(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = PASSWORD[::-1]
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with pytest.raises(InvalidRequestError, match="password") as caught:
            async with client(server, sentinels.url(auth=f":{wrong}@")):
                pass
    assert not server.requests
    assert "redis+sentinel://127.0.0.1:" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), caplog.text):
        for secret in (PASSWORD, wrong):
            assert secret[4:10] not in text


@pytest.mark.infra
@needs_redis
async def test_a_master_name_no_sentinel_knows_fails_closed_as_a_setting(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    # Every sentinel answers, and none knows the name (a typo in the URL's path): that is a
    # setting to fix, not a Redis down to wait out, and it shows before anything is sent.
    typo = sentinels.url(auth=f":{PASSWORD}@").replace(f"/{sentinels.name}/", "/mymastr/")
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with pytest.raises(InvalidRequestError, match="no sentinel knows a master named "
                                                      "'mymastr'") as caught:
            async with client(server, typo):
                pass
    assert not server.requests
    assert caught.value.field == "quota_url"
    # Wider pieces: "entine" of the password is also in the word "sentinel".
    _no_part_of((PASSWORD,), _texts(caught.value, caplog), width=8)


@pytest.mark.infra
@needs_redis
async def test_a_failover_to_a_replica_that_missed_the_last_writes_never_goes_over(
    sentinels: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    # The replica stops following (its link cut, and its password for the master made wrong,
    # so it cannot reconnect): the admissions after that never reach it. Then the sentinels
    # promote it: its quota state is behind what the clients saw. (No split brain here: the
    # calls after the failover start once the old master is a replica.)
    url = sentinels.url(auth=f":{PASSWORD}@")
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD, window="sliding") as server:
        # After the pause, six calls leave at one slot and six a window later. When the fake
        # server still ran on the clients' loop, a stall of the loaded CI host over 0.1 s
        # between a request's write and its reading drew a 429 once in six runs (7 Dec 2026).
        # It runs on a thread of its own now (ServerThread); a stall of the whole process
        # still counts as the requests' way there, so this test keeps a slow network's
        # margin.
        clients = [RyzeClient("test-token", "my-instance", base_url=server.url, quota_url=url,
                              rate_limit=LIMIT, rate_period=PERIOD, rate_margin=SLOW_MARGIN,
                              max_retries=0) for _ in range(2)]
        try:
            with caplog.at_level(logging.WARNING, logger="ryze_async.quota"):
                assert await calls(clients, 2, 0) == [None, None]
                await asyncio.to_thread(_replica_caught_up, sentinels)
                await asyncio.to_thread(_cut_replica, sentinels)
                assert await calls(clients, LIMIT, 100) == [None] * LIMIT  # missed
                await asyncio.to_thread(sentinels.failover)
                failures = await asyncio.wait_for(calls(clients, 2 * LIMIT, 1000), 60)
        finally:
            for c in clients:
                await c.aclose()
    assert all(isinstance(f, QuotaBackendError) for f in failures if f is not None)
    check(server, 2 + LIMIT + failures.count(None))
    assert failures.count(None) >= LIMIT
    # The promoted replica was behind, and the clients saw it. (More than once is possible:
    # connections still open to the old master write there until the sentinels demote it,
    # and each switch between the two is one more loss, one more window of pause.)
    lost = [r.getMessage() for r in caplog.records if "was lost" in r.getMessage()]
    assert lost
    assert PASSWORD[4:12] not in caplog.text


@pytest.fixture(scope="module")
def tls_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSentinels]:
    with tls_sentinels(tmp_path_factory.mktemp("sentinel-tls")) as ready:
        yield ready


def _no_part_of(secrets: tuple[str, ...], texts: list[str], *, width: int = 6) -> None:
    for text in texts:
        for secret in secrets:
            for start in range(len(secret) - width + 1):
                assert secret[start:start + width] not in text, text


def _texts(caught: BaseException, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What a refusal shows: its message and repr, those of its chain, and the log."""
    texts = [caplog.text]
    exc: BaseException | None = caught
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return texts


@pytest.mark.infra
@needs_redis
async def test_over_tls_a_forced_failover_mid_run_reaches_the_new_master_and_stays_exact(
    tls_set: TlsSentinels, caplog: pytest.LogCaptureFixture
) -> None:
    # rediss+sentinel://ryze:PASS@.../mymaster/0?ssl_ca_certs=CA&sentinel_password=...: TLS
    # to the sentinels (with their own password) and to each master, as the docs' ACL user.
    sentinels = tls_set.sentinels
    with caplog.at_level(logging.DEBUG):
        old, new, failures = await failover_mid_run(sentinels, tls_set.url())
    assert {old, new} == {sentinels.master, sentinels.replica}
    _no_part_of((ACL_PASSWORD, SENTINEL_PASSWORD),
                [caplog.text, *(str(f) for f in failures if f is not None)])
    # The sentinels reached each other all along, over TLS with their own password (`sentinel
    # sentinel-pass`): more than down-after-milliseconds passed, and none calls another down.
    assert [_peer_flags(sentinels, port) for port in sentinels.sentinels] == [["sentinel"] * 2] * 3


def _peer_flags(sentinels: SentinelSet, port: int) -> list[str]:
    """The flags the sentinel on `port` gives each other sentinel (``s_down``: unreachable)."""
    words = sentinels.sentinel_cli("SENTINEL", "SENTINELS", sentinels.name, port=port).split()
    return [value for key, value in zip(words[::2], words[1::2], strict=False) if key == "flags"]


@pytest.mark.infra
@needs_redis
@pytest.mark.parametrize(("case", "expected"), [
    ("other CA", "certificate"),
    ("by another name", "certificate"),
    ("no sentinel password", "sentinel_password"),
    ("wrong sentinel password", "sentinel_password"),
    ("a master no sentinel knows", "no sentinel knows a master named 'mymastr'"),
])
async def test_over_tls_a_wrong_setting_fails_closed_before_anything_is_sent(
    tls_set: TlsSentinels, caplog: pytest.LogCaptureFixture, case: str, expected: str
) -> None:
    wrong = SENTINEL_PASSWORD[::-1]
    url = {
        "other CA": tls_set.url(ca=tls_set.pki.other_ca),
        "by another name": tls_set.url(host="localhost"),  # the certificate names 127.0.0.1
        "no sentinel password": tls_set.url(sentinel_password=None),
        "wrong sentinel password": tls_set.url(sentinel_password=wrong),
        "a master no sentinel knows": tls_set.url().replace(
            f"/{tls_set.sentinels.name}/", "/mymastr/"),
    }[case]
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with caplog.at_level(logging.DEBUG), pytest.raises(InvalidRequestError) as caught:
            async with client(server, url):
                pass
    assert not server.requests
    assert expected in str(caught.value)
    assert "rediss+sentinel://ryze@" in str(caught.value)
    _no_part_of((ACL_PASSWORD, SENTINEL_PASSWORD, wrong), _texts(caught.value, caplog))


async def test_sentinels_down_at_the_start_are_no_refused_setting(
    caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens: each sentinel is asked again for why (a refused certificate or password
    # would be a setting), and a refused connection is none. As with a Redis down, the client
    # is built and its first admission fails closed, nothing sent.
    hosts = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    url = (f"rediss+sentinel://ryze:{ACL_PASSWORD}@{hosts}/mymaster/0"
           f"?sentinel_password={SENTINEL_PASSWORD}")
    async with ServerThread(rate_limit=LIMIT, rate_period=PERIOD) as server, \
            client(server, url) as down:
        failures = await asyncio.wait_for(calls([down], 1, 0), 30)
    assert [type(f) for f in failures] == [QuotaBackendError]
    assert not server.requests
    # What a person reads: the master not found and why, not redis-py's repr of every
    # sentinel's connection (about 1,600 characters each); those stay in the cause.
    message = str(failures[0])
    assert "No master found for 'mymaster'" in message
    assert "could not be reached" in message
    assert len(message) < 400, message
    # Wider pieces: the cause quotes redis-py's repr of each sentinel ("redis-py" holds
    # "edis-p", a piece of "Acl-Redis-pw-...").
    _no_part_of((ACL_PASSWORD, SENTINEL_PASSWORD),
                [caplog.text, message, str(failures[0].__cause__)], width=8)


def _cut_replica(sentinels: SentinelSet) -> None:
    """The replica loses its master and cannot come back (bounded: 10 s)."""
    sentinels.cli(sentinels.replica, "CONFIG", "SET", "masterauth", "not-the-password")
    sentinels.cli(sentinels.replica, "CLIENT", "KILL", "TYPE", "master")
    deadline = time.monotonic() + 10
    while "master_link_status:down" not in sentinels.cli(sentinels.replica, "INFO",
                                                          "replication"):
        if time.monotonic() > deadline:
            raise AssertionError("the replica's link to its master never went down")
        time.sleep(0.05)


def _replica_caught_up(sentinels: SentinelSet) -> None:
    """Until the replica's offset is the master's (bounded: 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        master = sentinels.cli(sentinels.master, "INFO", "replication")
        replica = sentinels.cli(sentinels.replica, "INFO", "replication")
        offsets = [next(line.split(":")[1] for line in text.split()
                        if line.startswith(key))
                   for text, key in ((master, "master_repl_offset"),
                                     (replica, "slave_repl_offset"))]
        if offsets[0] == offsets[1]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the replica never caught up: {offsets}")
        time.sleep(0.05)
