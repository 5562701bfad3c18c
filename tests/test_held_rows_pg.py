"""Held numbers on the PostgreSQL journal (#10): a hold gives the claim back, so a worker that
stops outside the window (exit 4) or dies leaves nothing claimed, and the next worker calls
those numbers when their window opens without waiting for a lease to end. The fake server's
record is the oracle: each number called exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .test_held_rows import (
    MONDAY_NY,
    MONDAY_SP,
    NY,
    SP,
    TOKEN,
    WINDOW,
    calls,
    moving_clock,
    sigkill,
    start_waiting_driver,
)

asyncpg = pytest.importorskip("asyncpg")
PIPE = asyncio.subprocess.PIPE

#: The PostgreSQL journal's schema of the release before ``not_before``, verbatim.
SCHEMA_BEFORE_HOLDS = """
CREATE TABLE IF NOT EXISTS ryze_campaigns (
    campaign          text PRIMARY KEY,
    kind              text,
    media             text,
    instance          text,
    ingest_pass       integer NOT NULL DEFAULT 0,
    sweep_due         boolean NOT NULL DEFAULT false,
    ingest_duplicates bigint NOT NULL DEFAULT 0,
    ingest_offset     bigint NOT NULL DEFAULT 0,
    ingest_line       bigint NOT NULL DEFAULT 0,
    ingest_digest     text NOT NULL DEFAULT '',
    elapsed           double precision NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS ryze_numbers (
    campaign    text NOT NULL REFERENCES ryze_campaigns ON DELETE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    number      text NOT NULL,
    key         text,
    valid       boolean NOT NULL,
    state       text NOT NULL CHECK (state IN
                ('pending','claimed','sending','placed','failed','unknown','skipped')),
    line        bigint,
    call_id     text,
    http_status integer,
    error       text,
    attempt_at  timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    seen        integer NOT NULL DEFAULT 0,
    owner       text,
    lease_until timestamptz,
    sender      text,
    PRIMARY KEY (campaign, id),
    UNIQUE (campaign, key)
);
CREATE INDEX IF NOT EXISTS ryze_numbers_pending ON ryze_numbers (campaign, id)
    WHERE state = 'pending' AND valid;
CREATE INDEX IF NOT EXISTS ryze_numbers_leased ON ryze_numbers (campaign, lease_until)
    WHERE state IN ('claimed', 'sending');
"""



@pytest.fixture
def campaign() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def rows(dsn: str, campaign: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(
            "SELECT number, state, owner, not_before FROM ryze_numbers "
            "WHERE campaign = $1 AND valid", campaign))
    finally:
        await conn.close()


def closed_window_now() -> str:
    """A one-minute window twelve hours from now in São Paulo: closed now, every day."""
    at = datetime.now(UTC).astimezone(ZoneInfo("America/Sao_Paulo")) + timedelta(hours=12)
    at = at.replace(second=0, microsecond=0)
    if (at + timedelta(minutes=1)).date() != at.date():
        pytest.skip("the window would cross midnight")
    return f"{at:%H:%M}-{at + timedelta(minutes=1):%H:%M}"


async def test_exit_outside_window_leaves_nothing_claimed_and_the_next_worker_calls_them(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str, tmp_path: Path,
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(token=TOKEN, rate_limit=None)
    numbers = tmp_path / "n.csv"
    numbers.write_text("number\n" + "\n".join(SP) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)

    async def worker(window: str, *extra: str) -> tuple[int, dict[str, Any]]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ryze_async", "campaign", str(numbers), "--fake",
            "--journal", pg_dsn, "--campaign", campaign, "--json", "--call-window", window,
            *extra, env=env, stdout=PIPE, stderr=PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None, err
        return proc.returncode, json.loads(out.decode().strip().splitlines()[-1])

    code, summary = await worker(closed_window_now(), "--exit-outside-window")
    assert (code, summary["stop_reason"], summary["pending"]) == (4, "outside_window", 4)
    left = await rows(pg_dsn, campaign)
    assert {(r["state"], r["owner"]) for r in left} == {("pending", None)}
    assert all(r["not_before"] is not None for r in left)
    assert server.requests == []
    # A second worker whose window is open now (a change of the campaign's recorded rules,
    # on purpose: #15) calls them at once, each exactly once.
    code, summary = await worker("00:00-24:00", "--change-rules")
    assert (code, summary["placed"], summary["pending"]) == (0, 4, 0)
    assert calls(server) == Counter(SP)


async def test_a_worker_killed_while_holding_leaves_no_claim_and_the_next_calls_at_once(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str,
) -> None:
    clock = [moving_clock(MONDAY_SP)]
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: clock[0]().timestamp())
    proc = await start_waiting_driver(server, pg_dsn, [*SP, *NY], campaign=campaign)
    await sigkill(proc)
    assert server.requests == []
    left = await rows(pg_dsn, campaign)
    # Nothing claimed by the dead worker: no lease to wait for.
    assert {(r["state"], r["owner"]) for r in left} == {("pending", None)}
    assert {r["number"]: r["not_before"] for r in left} == {
        **dict.fromkeys(SP, MONDAY_SP), **dict.fromkeys(NY, MONDAY_NY)}

    async def rerun(at: datetime) -> Any:
        clock[0] = moving_clock(at)
        async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                              rate_limit=None) as client:
            # Well inside the 30 s lease a claimed row would wait for.
            return await asyncio.wait_for(Campaign(
                client, None, journal=pg_dsn, campaign=campaign, fake=True, now=clock[0],
                call_windows=WINDOW, exit_outside_window=True).run(), 15)

    s = await rerun(MONDAY_SP + timedelta(minutes=5))
    assert (s.stop_reason, s.placed, s.pending) == ("outside_window", 4, 4)
    assert calls(server) == Counter(SP)
    s = await rerun(MONDAY_NY + timedelta(minutes=5))
    assert (s.stop_reason, s.placed, s.pending) == ("completed", 8, 0)
    assert calls(server) == Counter([*SP, *NY])  # each exactly once
    for r in server.requests:
        at = datetime.fromtimestamp(r.received_at, UTC)
        assert at >= (MONDAY_SP if r.json["number"] in SP else MONDAY_NY), r.json["number"]


async def test_a_database_of_the_previous_schema_migrates_and_holds(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str,
) -> None:
    """Tables made by the previous release (no ``not_before``, an index of every pending
    row): the first worker adds the column, swaps the index, and holds rows in it."""
    admin = await asyncpg.connect(pg_dsn)
    database = f"old_{uuid.uuid4().hex[:8]}"
    try:
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + "/" + database
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA_BEFORE_HOLDS)
        await conn.execute("INSERT INTO ryze_campaigns (campaign, kind, media) "
                           "VALUES ($1, 'fake', '')", campaign)
        await conn.executemany(
            "INSERT INTO ryze_numbers (campaign, number, key, valid, state, line) "
            "VALUES ($1, $2, $2, true, 'pending', $3)",
            [(campaign, n, i + 2) for i, n in enumerate([*SP, *NY])])
    finally:
        await conn.close()
    server: FakeRyzeServer = await ryze_server_factory(token=TOKEN, rate_limit=None)

    async def run(at: datetime) -> Any:
        async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                              rate_limit=None) as client:
            return await Campaign(client, None, journal=dsn, campaign=campaign, fake=True,
                                  now=moving_clock(at), call_windows=WINDOW,
                                  exit_outside_window=True).run()

    s = await run(MONDAY_SP + timedelta(minutes=5))
    assert (s.stop_reason, s.placed, s.pending) == ("outside_window", 4, 4)
    conn = await asyncpg.connect(dsn)
    try:
        held = {r["number"]: r["not_before"] for r in await conn.fetch(
            "SELECT number, not_before FROM ryze_numbers WHERE state = 'pending'")}
        indexes = {r[0] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'ryze_numbers'")}
    finally:
        await conn.close()
    assert held == dict.fromkeys(NY, MONDAY_NY)
    assert "ryze_numbers_pending" not in indexes
    assert {"ryze_numbers_ready", "ryze_numbers_held"} <= indexes
    s = await run(MONDAY_NY + timedelta(minutes=5))
    assert (s.stop_reason, s.placed, s.pending) == ("completed", 8, 0)
    assert calls(server) == Counter([*SP, *NY])
