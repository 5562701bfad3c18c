"""The PostgreSQL journal against a real PostgreSQL (a throw-away cluster, ``pg_cluster.py``):
many workers on one campaign, each number claimed once, leases on the database's clock."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg")

from ryze_async import (  # noqa: E402
    ClaimLostError,
    JournalConnectionLostError,
    JournalError,
    JournalMismatchError,
)
from ryze_async._campaign.journal import CampaignIdentity  # noqa: E402
from ryze_async._campaign.journal.postgres import LEASE_LOST  # noqa: E402
from ryze_async._campaign.journal.postgres.store import PgStore  # noqa: E402

from .pg_worker import identity, numbers  # noqa: E402

WORKER = str(Path(__file__).with_name("pg_worker.py"))
Opener = Callable[..., Awaitable[PgStore]]


@pytest.fixture
def campaign() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def open_journal(pg_dsn: str, campaign: str) -> AsyncIterator[Opener]:
    opened: list[PgStore] = []

    async def opener(**kw: Any) -> PgStore:
        kw.setdefault("campaign", campaign)
        journal = await PgStore.open(pg_dsn, **kw)
        opened.append(journal)
        return journal

    yield opener
    for journal in opened:
        await journal.close()


async def sql(dsn: str, query: str, *args: object) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def expire(dsn: str, campaign: str, owner: str) -> None:
    """Age a worker's leases past their end on the database's clock (no sleeping)."""
    await sql(dsn, "UPDATE ryze_numbers SET lease_until = clock_timestamp() - interval '1 s' "
              "WHERE campaign = $1 AND owner = $2", campaign, owner)


async def states(dsn: str, campaign: str) -> dict[int, str]:
    rows = await sql(dsn, "SELECT id, state FROM ryze_numbers WHERE campaign = $1", campaign)
    return {r["id"]: r["state"] for r in rows}


async def run_worker(*args: str) -> Any:
    """Run ``pg_worker.py`` in its own process; its JSON line."""
    proc = await asyncio.create_subprocess_exec(sys.executable, WORKER, *args,
                                                stdout=subprocess.PIPE)
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    return json.loads(out)


async def feed(journal: PgStore, entries: list[tuple[int, str]], batch: int) -> None:
    for start in range(0, len(entries), batch):
        chunk = entries[start:start + batch]
        last = chunk[-1][0]
        await journal.ingest(chunk, position=(last * 10, last, f"d{last}"), normalize=identity)


def bad_or_same(raw: str) -> str:
    if raw.startswith("x"):
        raise ValueError("not a number")
    return raw


# -- ingestion ----------------------------------------------------------------------------------

async def test_three_workers_ingest_each_number_once(open_journal: Opener, pg_dsn: str,
                                                     campaign: str) -> None:
    entries = numbers(300)
    entries[10] = (11, entries[3][1])  # a real duplicate in the input
    entries[20] = (21, "x-not-a-number")
    workers = [await open_journal() for _ in range(3)]

    async def one(journal: PgStore, batch: int) -> None:
        for start in range(0, len(entries), batch):
            chunk = entries[start:start + batch]
            last = chunk[-1][0]
            await journal.ingest(chunk, position=(last * 10, last, f"d{last}"),
                                 normalize=bad_or_same)

    await asyncio.gather(*(one(w, b) for w, b in zip(workers, (7, 13, 50), strict=True)))
    rows = await sql(pg_dsn, "SELECT number, valid FROM ryze_numbers WHERE campaign = $1",
                     campaign)
    valid = [r["number"] for r in rows if r["valid"]]
    assert len(valid) == len(set(valid)) == 298
    counts = await workers[0].counts()
    assert (counts.total, counts.pending, counts.duplicates, counts.invalid) == (300, 298, 1, 1)
    assert await workers[1].ingest_position() == (3000, 300, "d300")


async def test_worker_processes_ingest_each_number_once(pg_dsn: str, campaign: str,
                                                        open_journal: Opener) -> None:
    outs = await asyncio.gather(*(run_worker("ingest", pg_dsn, campaign, "2000", str(batch))
                                  for batch in (100, 170, 333)))
    assert outs == [{"done": True}] * 3
    rows = await sql(pg_dsn, "SELECT count(*), count(DISTINCT key) FROM ryze_numbers "
                     "WHERE campaign = $1", campaign)
    assert tuple(rows[0]) == (2000, 2000)
    counts = await (await open_journal(read_only=True)).counts()
    assert (counts.total, counts.pending, counts.duplicates) == (2000, 2000, 0)


async def test_changed_input_one_new_pass_and_removed_numbers_skipped(open_journal: Opener
                                                                      ) -> None:
    a, b = await open_journal(), await open_journal()
    await feed(a, numbers(5), 5)
    (first, *_), = [await a.claim(1)]
    await a.mark_sending(first[0])
    a.record(first[0], "placed", call_id="c1", status=200)
    seen = await b.ingest_position()
    # Both workers see the edit; only the first starts a pass (the other finds it moved).
    assert await a.begin_pass(seen) is True
    assert await b.begin_pass(seen) is False
    assert await b.sweep_due() is True
    assert await b.claim(10) == []  # nothing is dialed while a pass is open
    edited = [(1, numbers(5)[0][1]), (2, numbers(5)[1][1]), (3, "+4930999")]
    await feed(a, edited, 2)
    await feed(b, edited, 3)  # behind a: everything it reads is in already
    assert await b.finish_pass() == 3
    assert await a.finish_pass() == 0
    counts = await a.counts()
    assert (counts.placed, counts.pending, counts.removed, counts.duplicates) == (1, 2, 3, 0)
    claimed = [r[1] for r in await b.claim(10)]
    assert claimed == [numbers(5)[1][1], "+4930999"]


# -- claims -------------------------------------------------------------------------------------

async def test_concurrent_claims_are_disjoint(open_journal: Opener) -> None:
    loader = await open_journal()
    await feed(loader, numbers(600), 200)
    workers = [await open_journal() for _ in range(6)]
    taken: list[list[int]] = [[] for _ in workers]

    async def loop(i: int) -> None:
        while rows := await workers[i].claim(1 + i * 3):
            assert len(rows) <= 1 + i * 3
            taken[i].extend(r[0] for r in rows)

    await asyncio.gather(*(loop(i) for i in range(len(workers))))
    every = [row_id for ids in taken for row_id in ids]
    assert len(every) == len(set(every)) == 600
    assert sum(1 for ids in taken if ids) >= 2  # real concurrency, not one worker taking all


async def test_worker_processes_claim_disjoint(pg_dsn: str, open_journal: Opener) -> None:
    loader = await open_journal()
    await feed(loader, numbers(900), 300)
    outs = await asyncio.gather(*(run_worker("claim", pg_dsn, loader.campaign, "5")
                                  for _ in range(3)))
    placed = [row_id for out in outs for row_id in out["placed"]]
    assert len(placed) == len(set(placed)) == 900
    counts = await loader.counts()
    assert (counts.placed, counts.pending, counts.claimed) == (900, 0, 0)
    senders = await sql(pg_dsn, "SELECT count(DISTINCT sender) FROM ryze_numbers "
                        "WHERE campaign = $1", loader.campaign)
    assert senders[0][0] == 3


# -- leases -------------------------------------------------------------------------------------

async def test_expired_claim_returns_pending_and_lost_claim_refuses_mark(
        open_journal: Opener, pg_dsn: str, campaign: str) -> None:
    a, b = await open_journal(), await open_journal()
    await feed(a, numbers(4), 4)
    rows = await a.claim(2)
    await expire(pg_dsn, campaign, a.worker)
    # Expired on the database's clock: refused even before anyone else looks at it.
    with pytest.raises(ClaimLostError):
        await a.mark_sending(rows[0][0])
    assert await b.recover() == (2, 0)
    assert [r[0] for r in await b.claim(2)] == [r[0] for r in rows]
    with pytest.raises(ClaimLostError):
        await a.mark_sending(rows[1][0])
    await b.mark_sending(rows[1][0])
    assert (await states(pg_dsn, campaign))[rows[1][0]] == "sending"


async def test_expired_sending_becomes_unknown_never_reclaimed(
        open_journal: Opener, pg_dsn: str, campaign: str) -> None:
    a, b = await open_journal(), await open_journal()
    await feed(a, numbers(3), 3)
    rows = await a.claim(3)
    for row_id, _, _ in rows[:2]:
        await a.mark_sending(row_id)
    await expire(pg_dsn, campaign, a.worker)
    assert await b.recover() == (1, 2)
    assert [r[0] for r in await b.claim(10)] == [rows[2][0]]
    # The stalled worker's answers arrive late: the server's "placed" is exact and written; a
    # "not sent" could not be trusted after the lease ran out and leaves the row unknown.
    a.record(rows[0][0], "placed", call_id="late", status=200)
    a.record(rows[1][0], "pending", error="not sent")
    await a.flush()
    now = await states(pg_dsn, campaign)
    assert (now[rows[0][0]], now[rows[1][0]]) == ("placed", "unknown")
    # Another worker's outcome never touches it.
    b.record(rows[1][0], "placed")
    await b.flush()
    assert (await states(pg_dsn, campaign))[rows[1][0]] == "unknown"
    row = await sql(pg_dsn, "SELECT error FROM ryze_numbers WHERE campaign = $1 AND id = $2",
                    campaign, rows[1][0])
    assert row[0]["error"] == LEASE_LOST


async def test_heartbeat_renews_live_leases_only(open_journal: Opener, pg_dsn: str,
                                                 campaign: str) -> None:
    a = await open_journal(lease=30.0, heartbeat=0.05)
    await feed(a, numbers(2), 2)
    live, dead = await a.claim(2)
    await sql(pg_dsn, "UPDATE ryze_numbers SET lease_until = clock_timestamp() + "
              "interval '1 s' WHERE id = $1", live[0])
    await sql(pg_dsn, "UPDATE ryze_numbers SET lease_until = clock_timestamp() - "
              "interval '1 s' WHERE id = $1", dead[0])
    start = a.beats
    async with asyncio.timeout(10):
        while a.beats < start + 2:  # noqa: ASYNC110 - bounded; the heartbeat has no event
            await asyncio.sleep(0.02)
    rows = await sql(pg_dsn, "SELECT id, lease_until > clock_timestamp() + interval '20 s' "
                     "AS renewed, lease_until < clock_timestamp() AS expired FROM ryze_numbers "
                     "WHERE campaign = $1", campaign)
    by_id = {r["id"]: r for r in rows}
    assert by_id[live[0]]["renewed"]
    assert by_id[dead[0]]["expired"]


async def test_heartbeat_and_recovery_never_wait_for_a_busy_row(
        open_journal: Opener, pg_dsn: str, campaign: str) -> None:
    """Regression: a heartbeat waiting for a row the worker's own commit held, while that
    commit waited for a row the heartbeat held, deadlocked (benchmarks/workers.py)."""
    a, b = await open_journal(), await open_journal()
    await feed(a, numbers(3), 3)
    rows = await a.claim(3)
    await a.mark_sending(rows[2][0])
    busy = await asyncpg.connect(pg_dsn)
    try:
        for step in ("beat", "recover"):
            if step == "recover":
                await expire(pg_dsn, campaign, a.worker)
            tx = busy.transaction()
            await tx.start()
            await busy.execute("SELECT 1 FROM ryze_numbers WHERE id = $1 FOR UPDATE",
                               rows[0][0])
            async with asyncio.timeout(5):
                if step == "beat":
                    assert await a.beat() == 2  # the busy row is skipped, the others renewed
                else:
                    assert await b.recover() == (1, 1)
            await tx.rollback()
    finally:
        await busy.close()
    assert await b.recover() == (1, 0)


async def test_sigkilled_worker_claims_return_its_call_stays_unknown(
        pg_dsn: str, campaign: str, open_journal: Opener) -> None:
    b = await open_journal()
    await feed(b, numbers(8), 8)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, WORKER, "hold", pg_dsn, campaign, "5", stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            held = json.loads(await proc.stdout.readline())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    report = await open_journal(read_only=True)
    counts = await report.counts()
    assert (counts.claimed, counts.sending, counts.in_flight, counts.pending) == (4, 1, 5, 7)
    assert [r[0] for r in await b.claim(10)] == sorted(set(await states(pg_dsn, campaign))
                                                      - set(held["ids"]))
    await expire(pg_dsn, campaign, held["worker"])
    assert await b.recover() == (4, 1)
    again = [r[0] for r in await b.claim(10)]
    assert again == held["ids"][1:]  # the one in flight is never claimed again
    assert (await states(pg_dsn, campaign))[held["ids"][0]] == "unknown"


# -- reporting and the rest ---------------------------------------------------------------------

async def test_counts_from_another_process_while_workers_run(open_journal: Opener) -> None:
    a, b = await open_journal(), await open_journal()
    await feed(a, numbers(10), 10)
    report = await open_journal(read_only=True)
    rows = await a.claim(3)
    await b.claim(2)
    await a.mark_sending(rows[0][0])
    a.record(rows[0][0], "placed", call_id="c", status=200)
    await a.mark_sending(rows[1][0])
    await a.flush()
    counts = await report.counts()
    assert (counts.total, counts.placed, counts.pending, counts.claimed, counts.sending,
            counts.in_flight, counts.workers) == (10, 1, 8, 3, 1, 4, 2)
    assert report.beats == 0
    assert report.read_only
    # The mark's commit is durable whatever the server's default.
    assert await a._db().fetchval("SHOW synchronous_commit") == "on"


async def test_identity_mismatch_after_a_call(open_journal: Opener) -> None:
    one = CampaignIdentity("audio", "a" * 64, "inst")
    a = await open_journal(identity=one)
    await feed(a, numbers(1), 1)
    (row,) = await a.claim(1)
    await a.mark_sending(row[0])
    a.record(row[0], "placed")
    await a.flush()
    with pytest.raises(JournalMismatchError, match="media"):
        await open_journal(identity=CampaignIdentity("audio", "b" * 64, "inst"))
    await open_journal(identity=CampaignIdentity("audio", "b" * 64, "inst"), force=True)


async def test_retry_close_and_export(open_journal: Opener, tmp_path: Path) -> None:
    a = await open_journal()
    await feed(a, numbers(3), 3)
    rows = await a.claim(3)
    await a.mark_sending(rows[0][0], sender="inst-1")
    a.record(rows[0][0], "failed", status=400, error="bad")
    await a.mark_sending(rows[1][0], sender="inst-2")
    await a.close()  # the claimed one goes back; the one in flight may have been placed
    b = await open_journal()
    counts = await b.counts()
    assert (counts.failed, counts.unknown, counts.pending) == (1, 1, 1)
    assert await b.retry(["failed"]) == 1
    out = io.StringIO()
    assert await b.export_csv(out) == 3
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(",sender,window_opens_utc")  # the window's opening last (#15)
    assert lines[2].endswith(",inst-2,")
    assert await b.export_csv(tmp_path / "o.csv") == 3
    assert (tmp_path / "o.csv").stat().st_mode & 0o077 == 0


async def test_unreachable_database_names_no_password(pg_dsn: str) -> None:
    with pytest.raises(JournalError) as caught:
        await PgStore.open("postgresql://u:s3cretpw@127.0.0.1:9/db", campaign="c")
    assert "s3cretpw" not in str(caught.value)
    assert "127.0.0.1:9" in str(caught.value)
    with pytest.raises(ValueError, match="heartbeat"):
        await PgStore.open(pg_dsn, campaign="c", lease=1, heartbeat=2)


async def test_lost_connection_fails_closed(open_journal: Opener, pg_dsn: str) -> None:
    """The database goes away under a worker that may not reconnect (a deadline of 0, #19): its
    marks fail and keep failing (nothing more may be sent through this journal), and the row it
    tried to mark was not marked."""
    a = await open_journal(reconnect_deadline=0)
    await feed(a, numbers(2), 2)
    rows = await a.claim(2)
    pid = await a._db().fetchval("SELECT pg_backend_pid()")
    await sql(pg_dsn, "SELECT pg_terminate_backend($1)", pid)
    # A lost connection stays one for every caller (the CLI's exit 5, not a usage error's 2).
    with pytest.raises(JournalConnectionLostError, match="lost the connection"):
        await a.mark_sending(rows[0][0])
    with pytest.raises(JournalConnectionLostError, match="lost the connection"):
        await a.mark_sending(rows[1][0])
    assert set((await states(pg_dsn, a.campaign)).values()) == {"claimed"}


async def test_store_odds_and_ends(open_journal: Opener, pg_dsn: str, campaign: str) -> None:
    with pytest.raises(JournalError, match="no campaign"):
        await open_journal(read_only=True)
    with pytest.raises(ValueError, match="campaign name"):
        await open_journal(campaign="")
    async with await open_journal() as a:
        await feed(a, numbers(3), 3)
        first = await a.pending_after(0, 1)  # the SQLite feeder's call claims
        assert [r[0] for r in first] == [min(await states(pg_dsn, campaign))]
        await a.mark_sending(first[0][0])
        a.back_to_pending(first[0][0], "refused: 429")
        await a.flush()
        rows = await a.claim(3)
        assert len(rows) == 3
        await a.mark_sending(rows[0][0])
        await expire(pg_dsn, campaign, a.worker)
        assert await a.recover() == (2, 1)
        a.record(rows[0][0], "failed", status=400, error="late answer")  # from the server
        await a.add_elapsed(1.5)
        counts = await a.counts()
        assert (counts.failed, counts.pending, counts.elapsed) == (1, 2, 1.5)
        with pytest.raises(ValueError, match="retry"):
            await a.retry(["placed"])  # type: ignore[list-item]
    with pytest.raises(JournalError, match="closed"):
        await a.counts()


async def test_a_worker_that_recovers_a_dead_workers_claims_does_not_stop_before_them(
    pg_dsn: str, campaign: str
) -> None:
    # held_elsewhere() first gives a dead worker's expired claims back to pending. It then said
    # "nothing held elsewhere", and a worker that had just seen no row to claim stopped, with
    # those numbers pending: the last worker out left them uncalled (a flaky 3-worker test).
    from ryze_async._campaign.journal import open_journal

    ident = CampaignIdentity("fake", None, "inst")
    dead = await open_journal(pg_dsn, campaign=campaign, identity=ident)
    alive = await open_journal(pg_dsn, campaign=campaign, identity=ident)
    try:
        await feed(dead, numbers(5), 5)  # type: ignore[arg-type]
        assert len(await dead.pending_after(0, 10)) == 5  # claimed by the worker that dies
        assert await alive.pending_after(0, 10) == []
        await expire(pg_dsn, campaign, dead.worker)  # type: ignore[attr-defined]
        # Nothing left for it elsewhere only if there is nothing left to claim either.
        if not await alive.held_elsewhere():
            assert await alive.pending_after(0, 10) == []
    finally:
        await alive.close()
        await dead.close()
