"""Issue 9.1 wired: ``RyzeClient(quota_url=...)``, ``RYZE_QUOTA_URL`` and ``--quota-url``.

Real processes, a real redis-server (``ryze_async.testing.RedisServer``) and strict fake servers
on loopback; the fake server's own record is the oracle: never more than the quota in any
window, no 429, nothing sent while the shared quota is down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import asyncio as aioredis

from ryze_async import InvalidRequestError, QuotaBackendError, RyzeClient
from ryze_async.testing import FakeRyzeServer, RedisServer
from ryze_async.testing._quota_sim import max_in_window
from ryze_async.testing._shared_quota import REDIS_SERVER

from .cli_helpers import run_cli

pytestmark = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason="redis-server is not installed (apt install redis)"
)

ROOT = Path(__file__).resolve().parent.parent
LIMIT, PERIOD = 4, 0.5
PASSWORD = "s3cret-pw-9f8e7d"
TOKENS = {"inst-a": "tok-AAAA-0123456789abcdef", "inst-b": "tok-BBBB-0123456789abcdef"}



@pytest.fixture
async def fresh_redis() -> AsyncIterator[RedisServer]:
    """A Redis of the test's own (its keys are the test's alone)."""
    with RedisServer() as server:
        yield server


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    return {**clean, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


async def _cli_processes(commands: list[list[str]]) -> list[tuple[int, str]]:
    """Run ``python -m ryze_async COMMAND`` for each command at once: (exit code, output)."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ryze_async", *command, env=_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        for command in commands
    ]
    results = []
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        results.append((proc.returncode or 0, out.decode()))
    return results


def _assert_within_quota(server: FakeRyzeServer, expected: int) -> None:
    arrivals = [r.received_at for r in server.requests if r.route in ("fake", "audio")]
    assert len(arrivals) == expected
    assert [r.status for r in server.requests].count(429) == 0
    assert max_in_window(arrivals, PERIOD) <= LIMIT


def _numbers_file(path: Path, first: int, count: int) -> Path:
    path.write_text("number\n" + "".join(f"55119{i:08d}\n" for i in range(first, first + count)),
                    encoding="utf-8")
    return path


def _quota_args(redis_url: str, server: FakeRyzeServer) -> list[str]:
    return ["--quota-url", redis_url, "--base-url", server.url, "--rate-limit", str(LIMIT),
            "--rate-period", str(PERIOD)]


@pytest.mark.parametrize("window", ["fixed", "sliding"])
async def test_campaign_processes_on_one_token_share_the_quota(
    redis_server: RedisServer, tmp_path: Path, window: Literal["fixed", "sliding"]
) -> None:
    k, each = 3, 8
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, window=window) as server:
        commands = [
            ["campaign", str(_numbers_file(tmp_path / f"n{i}.csv", i * each, each)), "--fake",
             "--journal", str(tmp_path / f"j{i}.db"), "--token", "test-token",
             "--instance", "my-instance", "--max-retries", "0",
             *_quota_args(redis_server.url, server)]
            for i in range(k)
        ]
        results = await _cli_processes(commands)
    for code, out in results:
        assert code == 0, out
        assert "shared through Redis" in out
    _assert_within_quota(server, k * each)
    assert len({r.json["number"] for r in server.placed_calls}) == k * each


@pytest.mark.parametrize("window", ["fixed", "sliding"])
async def test_fake_call_processes_on_one_token_share_the_quota(
    redis_server: RedisServer, window: Literal["fixed", "sliding"]
) -> None:
    k = 4
    async with FakeRyzeServer(rate_limit=1, rate_period=PERIOD, window=window) as server:
        commands = [
            ["fake-call", f"55119{i:08d}", "--token", "test-token", "--instance", "my-instance",
             "--quota-url", redis_server.url, "--base-url", server.url, "--rate-limit", "1",
             "--rate-period", str(PERIOD)]
            for i in range(k)
        ]
        results = await _cli_processes(commands)
    assert [code for code, _ in results] == [0] * k, results
    arrivals = [r.received_at for r in server.requests]
    assert len(arrivals) == k
    assert [r.status for r in server.requests].count(429) == 0
    assert max_in_window(arrivals, PERIOD) <= 1


async def test_a_sender_pool_shares_each_token_quota_and_places_each_number_once(
    fresh_redis: RedisServer, tmp_path: Path
) -> None:
    senders = tmp_path / "senders.csv"
    senders.write_text("instance,token\n" + "".join(f"{k},{v}\n" for k, v in TOKENS.items()),
                       encoding="utf-8")
    senders.chmod(0o600)
    count = 24
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, token=TOKENS["inst-a"],
                              tokens=list(TOKENS.values()), instances=list(TOKENS)) as server:
        # Two processes, two journals, one pool of senders: each token's quota is shared.
        # Concurrency 2: with 6, a loaded 2-core host delayed some sends (the journal's fsync
        # between admission and first byte) past the 0.1 s margin of this sped-up quota.
        commands = [
            ["campaign", str(_numbers_file(tmp_path / f"n{i}.csv", i * count, count)),
             "--fake", "--journal", str(tmp_path / f"j{i}.db"), "--senders", str(senders),
             "--concurrency", "2", "--max-retries", "0", *_quota_args(fresh_redis.url, server)]
            for i in range(2)
        ]
        results = await _cli_processes(commands)
    for code, out in results:
        assert code == 0, out
        for token in TOKENS.values():
            assert token not in out
    placed = [r.json["number"] for r in server.placed_calls]
    assert sorted(placed) == sorted(set(placed))
    assert len(placed) == 2 * count
    assert [r.status for r in server.requests].count(429) == 0
    for instance in TOKENS:  # one token per instance: each its own shared quota
        arrivals = [r.received_at for r in server.requests if r.instance == instance]
        assert arrivals
        assert max_in_window(arrivals, PERIOD) <= LIMIT, sorted(arrivals)
    async with aioredis.Redis.from_url(fresh_redis.url) as raw:
        logs = [k.decode() async for k in raw.scan_iter("ryze:{*}:*")]
    assert len({key.split(":")[1] for key in logs}) == 2  # two quotas, named by hashes
    for token in TOKENS.values():
        assert all(token not in key for key in logs)


async def test_the_environment_variable_chooses_the_shared_quota(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RYZE_QUOTA_URL", fresh_redis.url)
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server, \
            RyzeClient("test-token", "my-instance", base_url=server.url, rate_limit=LIMIT,
                       rate_period=PERIOD) as client:
        await client.fake_call("5511900000000")
        assert "test-token" not in repr(client)
    async with aioredis.Redis.from_url(fresh_redis.url) as raw:
        keys = [k.decode() async for k in raw.scan_iter("ryze:*")]
    assert any(key.endswith(":log") for key in keys)
    assert all("test-token" not in key for key in keys)


async def test_aclose_closes_the_redis_connections(fresh_redis: RedisServer) -> None:
    async def clients(raw: aioredis.Redis) -> int:
        listed = await raw.execute_command("CLIENT", "LIST")
        return len([line for line in listed.decode().splitlines() if line])

    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server, \
            aioredis.Redis.from_url(fresh_redis.url) as raw:
        alone = await clients(raw)
        client = RyzeClient("test-token", "my-instance", base_url=server.url, rate_limit=LIMIT,
                            rate_period=PERIOD, quota_url=fresh_redis.url)
        # A view made before the first call (as a campaign's bulk view is) uses the client's
        # quota: it opened no connections of its own that the client's aclose would miss.
        bulk = client.with_options(priority="bulk")
        await bulk.fake_call("5511900000000")
        await client.fake_call("5511900000001")
        assert await clients(raw) > alone
        await client.aclose()
        assert await clients(raw) == alone


@pytest.mark.infra
async def test_redis_stopped_mid_campaign_fails_closed_nothing_sent(tmp_path: Path) -> None:
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with RedisServer() as redis_server:
            args = ["campaign", str(_numbers_file(tmp_path / "n.csv", 0, 3)), "--fake",
                    "--journal", str(tmp_path / "j.db"), "--token", "test-token",
                    "--instance", "my-instance", *_quota_args(redis_server.url, server)]
            code, out, err = await run_cli(args, {})
            assert code == 0, out + err
            assert len(server.requests) == 3
        # Redis is gone now: the rerun with more numbers sends nothing and stops (exit 3).
        args[1] = str(_numbers_file(tmp_path / "n.csv", 0, 6))
        code, out, err = await run_cli(args, {})
    assert code == 3, out + err
    assert "QuotaBackendError" in out + err
    assert "quota backend Redis at 127.0.0.1" in out + err
    assert len(server.requests) == 3  # the server's record: unchanged
    conn = sqlite3.connect(tmp_path / "j.db")
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM numbers GROUP BY state"))
    finally:
        conn.close()
    assert states == {"placed": 3, "pending": 3}


@pytest.mark.infra
async def test_redis_killed_while_calls_wait_fails_them_all_closed() -> None:
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server:
        with RedisServer() as redis_server:
            client = RyzeClient("test-token", "my-instance", base_url=server.url,
                                rate_limit=LIMIT, rate_period=PERIOD, quota_url=redis_server.url)
            calls = [asyncio.create_task(client.fake_call(f"55119{i:08d}"))
                     for i in range(3 * LIMIT)]
            await server.wait_for_requests(LIMIT)  # one window's burst out; the rest wait
            redis_server.stop()  # killed while the others sleep towards reserved slots
            results = await asyncio.gather(*calls, return_exceptions=True)
            await client.aclose()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, QuotaBackendError) for r in failed), failed
    # The server's record: the placed calls and nothing else. A call whose slot came as Redis
    # died may have left (its reservation was in Redis); those sleeping towards the next
    # windows, at least one window's worth, failed closed.
    assert len(server.requests) == len(results) - len(failed)
    assert len(failed) >= LIMIT


async def test_a_password_in_the_quota_url_never_shows(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # nothing listens on port 1
    caplog.set_level(logging.DEBUG)
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD) as server:
        client = RyzeClient("test-token", "my-instance", base_url=server.url, quota_url=url)
        try:
            with pytest.raises(QuotaBackendError) as caught:
                await client.fake_call("5511900000000")
        finally:
            await client.aclose()
        code, out, err = await run_cli(
            ["fake-call", "5511900000000", "--token", "test-token", "--instance", "x",
             "--base-url", server.url], {"RYZE_QUOTA_URL": url})
    assert not server.requests
    assert code != 0
    assert "quota backend Redis at 127.0.0.1:1/0" in out + err
    texts = [out, err, repr(client), caplog.text]
    exc: BaseException | None = caught.value
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    for text in texts:
        assert PASSWORD not in text
    for bad in ("http://:pw-x1@host/0", f"redis//:{PASSWORD}@host"):
        with pytest.raises(InvalidRequestError, match="quota_url") as refused:
            RyzeClient("test-token", "i", quota_url=bad)
        assert PASSWORD not in str(refused.value)
        assert "pw-x1" not in str(refused.value)


@pytest.mark.infra
def test_redis_is_imported_only_for_a_quota_url_and_missing_it_is_clear() -> None:
    code = (
        "import sys\n"
        "from ryze_async import InvalidRequestError, RyzeClient\n"
        "RyzeClient('test-token', 'i')\n"
        "assert 'redis' not in sys.modules, 'redis imported without a quota_url'\n"
        "sys.modules['redis'] = None  # as if the extra were not installed\n"
        "try:\n"
        "    RyzeClient('test-token', 'i', quota_url='redis://127.0.0.1:6379/0')\n"
        "except InvalidRequestError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                          text=True, check=True, timeout=60)
    assert 'pip install "ryze-async[redis]"' in done.stdout


def test_quota_url_without_a_client_side_quota_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="rate_limit=None"):
        RyzeClient("test-token", "i", rate_limit=None, quota_url="redis://127.0.0.1:6379/0")


async def test_for_sender_carries_the_quota_url(fresh_redis: RedisServer) -> None:
    async with FakeRyzeServer(rate_limit=LIMIT, rate_period=PERIOD, token=TOKENS["inst-a"],
                              tokens=list(TOKENS.values()), instances=list(TOKENS)) as server, \
            RyzeClient(TOKENS["inst-a"], "inst-a", base_url=server.url,
                       quota_url=fresh_redis.url) as client, \
            client.for_sender(TOKENS["inst-b"], "inst-b") as other:
        await other.fake_call("5511900000000")
    async with aioredis.Redis.from_url(fresh_redis.url) as raw:
        assert [k async for k in raw.scan_iter("ryze:{*}:log")]
