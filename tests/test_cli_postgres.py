"""Several ``ryze-async campaign`` processes on one PostgreSQL campaign, end to end: real
subprocesses, a real PostgreSQL (``pg_cluster.py``) and the fake server, whose own record
(``server.requests``) is the oracle: nobody is called twice, nobody outside the list is called.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

from .cli_helpers import run_cli

asyncpg = pytest.importorskip("asyncpg")

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "s3cr3t-token-VALUE-never-printed"
PASSWORD = "hunter2-Db-Pass"  # trust authentication accepts it; it must never be printed
PIPE = asyncio.subprocess.PIPE


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


@pytest.fixture
def campaign() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    """The cluster's URL with a password in it (trust accepts any): proves it is never shown."""
    scheme, rest = pg_dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


def env_for(server: FakeRyzeServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
    return env


def inputs(tmp_path: Path, count: int) -> tuple[list[str], Path, Path]:
    valid = [f"55119{i:08d}" for i in range(count)]
    numbers_csv = tmp_path / "numbers.csv"
    numbers_csv.write_text("number\n" + "\n".join(valid) + "\n")
    audio = tmp_path / "message.wav"
    audio.write_bytes(wav_tone(0.1))
    return valid, numbers_csv, audio


def campaign_cmd(numbers_csv: Path, audio: Path, dsn: str, campaign: str,
                 *extra: str) -> list[str]:
    return [sys.executable, "-m", "ryze_async", "campaign", str(numbers_csv), "--media",
            str(audio), "--journal", dsn, "--campaign", campaign, "--rate-limit", "10",
            "--rate-period", "1", "--concurrency", "2", "--json", *extra]


async def start(cmd: list[str], server: FakeRyzeServer) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*cmd, env=env_for(server), stdout=PIPE,
                                                stderr=PIPE)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, dict[str, Any], str]:
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode() + err.decode()
    assert TOKEN not in text
    assert PASSWORD not in text
    assert proc.returncode is not None
    return proc.returncode, json.loads(out.decode().strip().splitlines()[-1]), err.decode()


async def rows(dsn: str, campaign: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(
            "SELECT number, state, owner FROM ryze_numbers WHERE campaign = $1 AND valid",
            campaign))
    finally:
        await conn.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str, limit: float = 60) -> None:
    """Poll a condition on real records (server, journal) until it holds."""
    deadline = time.monotonic() + limit
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def pid_of(owner: str) -> int:
    return int(owner.split(":")[-2])  # host:pid:random


async def test_three_workers_one_killed_then_rerun_call_nobody_twice(
    server: FakeRyzeServer, dsn: str, campaign: str, tmp_path: Path
) -> None:
    valid, numbers_csv, audio = inputs(tmp_path, 80)
    cmd = campaign_cmd(numbers_csv, audio, dsn, campaign)
    doomed = await start(cmd, server)
    await server.wait_for_requests(3)
    server.fail_next(Fault.HANG, times=2)  # only ``doomed`` runs: its two calls hang

    async def doomed_stuck() -> bool:
        hung = sum(r.status is None for r in server.requests)
        sending = [r for r in await rows(dsn, campaign) if r["state"] == "sending"]
        return hung == 2 and len(sending) == 2 and {pid_of(r["owner"]) for r in sending} == {
            doomed.pid}

    await until(doomed_stuck, "two calls of the first worker hung in flight")
    others = [await start(cmd, server) for _ in range(2)]
    before = len(server.requests)
    await server.wait_for_requests(before + 6)  # the other two are placing calls: mid-run
    doomed.kill()
    await doomed.wait()
    assert doomed.returncode == -signal.SIGKILL
    hung = {r.json["number"] for r in server.requests if r.status is None}
    # Its lease ends on the database's clock: age it there instead of waiting 30 s.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE ryze_numbers SET lease_until = clock_timestamp() - interval '1 s' "
            "WHERE campaign = $1 AND owner LIKE $2", campaign, f"%:{doomed.pid}:%")
    finally:
        await conn.close()
    for proc in others:
        code, summary, _ = await finish(proc)
        assert code == 1  # two numbers are unknown
        assert summary["pending"] == 0
    # The rerun: nothing left to call, nobody called again, the same counts.
    code, summary, _ = await finish(await start(cmd, server))
    assert code == 1
    assert (summary["placed"], summary["unknown"], summary["failed"], summary["pending"]) == (
        78, 2, 0, 0)
    called = Counter(r.json["number"] for r in server.requests)
    assert called == Counter(valid)  # every number reached the server exactly once
    final = {r["number"]: r["state"] for r in await rows(dsn, campaign)}
    assert {n for n, s in final.items() if s == "unknown"} == hung
    assert set(final.values()) <= {"placed", "failed", "unknown"}


async def test_two_workers_both_place_calls_and_report_reads_while_they_run(
    server: FakeRyzeServer, dsn: str, campaign: str, tmp_path: Path
) -> None:
    valid, numbers_csv, audio = inputs(tmp_path, 60)
    cmd = campaign_cmd(numbers_csv, audio, dsn, campaign)
    workers = [await start(cmd, server) for _ in range(2)]
    await server.wait_for_requests(5)
    code, out, err = await run_cli(["report", dsn, "--campaign", campaign, "--json"],
                                   env_for(server))
    still_running = any(w.returncode is None for w in workers)
    assert code == 0, err
    assert PASSWORD not in out + err
    live = json.loads(out)  # stdout is exactly one JSON object
    assert {"total", "placed", "failed", "unknown", "pending", "workers"} <= live.keys()
    assert live["placed"] >= 1
    assert still_running  # the report read the journal while the workers ran
    results = [await finish(w) for w in workers]
    assert [code for code, _, _ in results] == [0, 0]
    assert all(s["placed"] == 60 and s["pending"] == 0 for _, s, _ in results)
    assert Counter(r.json["number"] for r in server.requests) == Counter(valid)
    by_worker = Counter(pid_of(r["owner"]) for r in await rows(dsn, campaign))
    assert set(by_worker) == {w.pid for w in workers}  # both placed calls
    assert sum(by_worker.values()) == 60
    out_csv = tmp_path / "out.csv"
    code, out, err = await run_cli(["report", dsn, "--campaign", campaign, "--csv",
                                    str(out_csv)], env_for(server))
    assert code == 0, err
    assert "placed          60" in out
    assert PASSWORD not in out + err
    assert len(out_csv.read_text().splitlines()) == 61  # a header and every number


async def test_interrupted_worker_gives_its_claims_back_and_a_rerun_finishes(
    server: FakeRyzeServer, dsn: str, campaign: str, tmp_path: Path
) -> None:
    valid, numbers_csv, audio = inputs(tmp_path, 40)
    cmd = campaign_cmd(numbers_csv, audio, dsn, campaign)
    proc = await start(cmd, server)
    await server.wait_for_requests(5)
    proc.send_signal(signal.SIGINT)
    code, summary, _ = await finish(proc)
    assert code == 130
    assert summary["pending"] > 0
    left = Counter(r["state"] for r in await rows(dsn, campaign))
    assert left["claimed"] == left["sending"] == 0  # nothing held by a worker that left
    code, summary, _ = await finish(await start(cmd, server))
    assert code == 0
    assert summary["placed"] == 40
    assert Counter(r.json["number"] for r in server.requests) == Counter(valid)
