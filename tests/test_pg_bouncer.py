"""The PostgreSQL journal through PgBouncer in transaction pooling mode (issue 19).

A real PgBouncer (``pgbouncer.py``) with its default settings but ``pool_mode = transaction``
and two server connections shared by every worker's connections, in front of a database whose
default is ``synchronous_commit = off`` (the journal must not rely on the server's default, nor
on any session state: a startup parameter, a prepared statement, a session ``SET``). The
oracle is the fake server's record: everybody called exactly once, nobody lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ryze_async._campaign.journal.postgres.store import PgStore
from ryze_async.testing import FakeRyzeServer, wav_tone

from .cli_helpers import run_cli
from .pg_cluster import PostgresUnavailableError

asyncpg = pytest.importorskip("asyncpg")
pytestmark = pytest.mark.infra

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "s3cr3t-token-VALUE-never-printed"
PASSWORD = "Bouncer-pw-4711-never-shown"
PIPE = asyncio.subprocess.PIPE
DATABASE = "bounced"


async def _prepare_database(pg_dsn: str) -> str:
    """A database of its own whose default durability is off: direct DSN."""
    admin = await asyncpg.connect(pg_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await admin.execute(f"CREATE DATABASE {DATABASE}")
        await admin.execute(f"ALTER DATABASE {DATABASE} SET synchronous_commit = off")
    finally:
        await admin.close()
    return urlunsplit(urlsplit(pg_dsn)._replace(path=f"/{DATABASE}"))


@pytest.fixture(scope="module")
def direct(pg_dsn: str) -> str:
    return asyncio.run(_prepare_database(pg_dsn))


@pytest.fixture(scope="module")
def bounced(direct: str) -> Iterator[str]:
    from .pgbouncer import pgbouncer

    try:
        with pgbouncer(direct, DATABASE, PASSWORD, pool_size=2) as dsn:
            yield dsn
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


@pytest.fixture
def campaign() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


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


def campaign_cmd(numbers_csv: Path, audio: Path, dsn: str, campaign: str) -> list[str]:
    return [sys.executable, "-m", "ryze_async", "campaign", str(numbers_csv), "--media",
            str(audio), "--journal", dsn, "--campaign", campaign, "--rate-limit", "20",
            "--rate-period", "1", "--concurrency", "3", "--json"]


async def start(cmd: list[str], server: FakeRyzeServer) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*cmd, env=env_for(server), stdout=PIPE,
                                                stderr=PIPE)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, dict[str, Any], str]:
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    text = out.decode() + err.decode()
    assert TOKEN not in text
    assert PASSWORD not in text
    assert proc.returncode is not None
    last = (out.decode().strip().splitlines() or [""])[-1]
    # A worker that failed may end on a progress line: its exit code and stderr tell why.
    return proc.returncode, json.loads(last) if last.startswith("{") else {}, err.decode()


async def states(direct: str, campaign: str) -> Counter[str]:
    conn = await asyncpg.connect(direct)
    try:
        return Counter(r["state"] for r in await conn.fetch(
            "SELECT state FROM ryze_numbers WHERE campaign = $1 AND valid", campaign))
    finally:
        await conn.close()


@pytest.fixture
async def sending_audit(direct: str) -> AsyncIterator[Callable[[], Awaitable[list[str]]]]:
    """What ``synchronous_commit`` was in the transaction of each ``-> sending`` update,
    as the server saw it (a trigger), for the durability check."""
    conn = await asyncpg.connect(direct)
    await conn.execute("""
        CREATE TABLE IF NOT EXISTS sending_audit (id bigint, sync text);
        CREATE OR REPLACE FUNCTION audit_sending() RETURNS trigger AS $$
        BEGIN
          INSERT INTO sending_audit VALUES (NEW.id, current_setting('synchronous_commit'));
          RETURN NEW;
        END $$ LANGUAGE plpgsql;""")

    async def read() -> list[str]:
        return [r["sync"] for r in await conn.fetch("SELECT sync FROM sending_audit")]

    try:
        yield read
    finally:
        await conn.execute("DROP TRIGGER IF EXISTS audit_sending ON ryze_numbers; "
                           "DROP TABLE sending_audit")
        await conn.close()


async def test_a_sending_mark_through_pgbouncer_is_durable_though_the_default_is_off(
    bounced: str, direct: str, campaign: str,
    sending_audit: Callable[[], Awaitable[list[str]]],
) -> None:
    journal = await asyncio.wait_for(PgStore.open(bounced, campaign=campaign), 30)
    try:
        conn = await asyncpg.connect(direct)
        try:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"  # the default
            await conn.execute(
                "CREATE OR REPLACE TRIGGER audit_sending AFTER UPDATE OF state ON ryze_numbers "
                "FOR EACH ROW WHEN (NEW.state = 'sending') EXECUTE FUNCTION audit_sending()")
        finally:
            await conn.close()
        await journal.ingest([(1, "+4930001"), (2, "+4930002"), (3, "+4930003")],
                             position=(30, 3, "d3"), normalize=str)
        rows = await journal.claim(3)
        for row_id, _, _ in rows:
            await asyncio.wait_for(journal.mark_sending(row_id), 30)
            journal.record(row_id, "placed", call_id=f"c{row_id}", status=200)
        await journal.flush()
        assert (await journal.counts()).placed == 3
    finally:
        await journal.close()
    audit = await sending_audit()
    assert len(audit) == 3
    assert set(audit) == {"on"}  # each mark committed with a flush to disk


async def test_three_workers_through_pgbouncer_call_everybody_exactly_once(
    bounced: str, direct: str, server: FakeRyzeServer, campaign: str, tmp_path: Path
) -> None:
    valid, numbers_csv, audio = inputs(tmp_path, 60)
    cmd = campaign_cmd(numbers_csv, audio, bounced, campaign)
    workers = [await start(cmd, server) for _ in range(3)]
    results = [await finish(w) for w in workers]
    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    assert all(s["placed"] == 60 and s["pending"] == 0 for _, s, _ in results)
    assert Counter(r.json["number"] for r in server.requests) == Counter(valid)
    assert all(r.status == 200 for r in server.requests)
    assert await states(direct, campaign) == Counter(placed=60)
    code, out, err = await run_cli(["report", bounced, "--campaign", campaign, "--json"],
                                   env_for(server))
    assert code == 0, err
    assert PASSWORD not in out + err
    assert json.loads(out)["placed"] == 60


async def test_an_interrupted_campaign_resumes_through_pgbouncer(
    bounced: str, direct: str, server: FakeRyzeServer, campaign: str, tmp_path: Path
) -> None:
    valid, numbers_csv, audio = inputs(tmp_path, 40)
    cmd = campaign_cmd(numbers_csv, audio, bounced, campaign)
    first = await start(cmd, server)
    await asyncio.wait_for(server.wait_for_requests(5), 60)
    first.send_signal(signal.SIGINT)
    code, summary, err = await finish(first)
    assert code == 130, err
    called = len(server.requests)
    assert summary["placed"] == called < 40
    # The dry run reads the journal read-only, through the pooler too.
    code, out, err = await run_cli([*cmd[3:-1], "--dry-run"], env_for(server))
    assert code == 0, err
    assert PASSWORD not in out + err
    assert len(server.requests) == called  # a dry run sends nothing
    rerun = [await start(cmd, server) for _ in range(2)]
    results = [await finish(w) for w in rerun]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    assert Counter(r.json["number"] for r in server.requests) == Counter(valid)
    assert await states(direct, campaign) == Counter(placed=40)
