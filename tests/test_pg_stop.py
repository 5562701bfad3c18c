"""(#9) A campaign on PostgreSQL stopped at any instant: no connection left inside a
transaction, no durable write lost or applied twice, a summary equal to a recount of the table,
and no number ``unknown`` or ``placed`` that the server never saw (the fake server's record is
the oracle).

The journal-level tests put the cancellation at an exact point: a byte-level proxy between
asyncpg and PostgreSQL holds the server's answer to the k-th request of a claim while its task
is cancelled (once, or twice: the dispatcher cancels its feeder when stopping and again when it
winds down), then lets the answer through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, CampaignOutcome, CampaignSummary, RyzeClient
from ryze_async._campaign.journal.postgres.store import PgStore
from ryze_async.testing import FakeRyzeServer, Fault

from .pg_proxy import PgProxy

asyncpg = pytest.importorskip("asyncpg")

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "test-token"
NUMBERS = [f"55119{i:08d}" for i in range(12)]


@pytest.fixture
def campaign_name() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def _table(dsn: str, campaign: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM ryze_numbers WHERE campaign "
                                "= $1 AND valid GROUP BY state", campaign)
        stuck = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE state LIKE "
                                    "'idle in transaction%' AND application_name LIKE "
                                    "'ryze-async%'")
    finally:
        await conn.close()
    assert stuck == 0, "a journal connection was left inside a transaction"
    return {r["state"]: r["n"] for r in rows}


async def _ingest(store: PgStore, numbers: list[str]) -> None:
    await store.ingest(list(enumerate(numbers, 1)), position=(0, len(numbers), "d"),
                       normalize=lambda raw: raw)


@pytest.mark.parametrize("cancels", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
async def test_a_claim_cancelled_at_any_request_leaves_a_usable_journal(
    pg_dsn: str, campaign_name: str, k: int, cancels: int,
) -> None:
    proxy = PgProxy(pg_dsn)
    dsn = await proxy.start()
    store = await PgStore.open(dsn, campaign=campaign_name, heartbeat=10, lease=30)
    try:
        await _ingest(store, NUMBERS[:6])
        store._last_recover = asyncio.get_running_loop().time()  # no recovery inside claim
        proxy.arm(k)
        claim = asyncio.create_task(store.claim(2))
        held = asyncio.create_task(proxy.held.wait())
        await asyncio.wait({claim, held}, return_when=asyncio.FIRST_COMPLETED)
        for _ in range(cancels):
            claim.cancel()
            for _ in range(20):
                await asyncio.sleep(0)
        proxy.release()
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await claim
        # The journal works on: a claim, a durable mark, an outcome, the counts.
        rows = await asyncio.wait_for(store.claim(1), 10)
        assert len(rows) == 1
        await asyncio.wait_for(store.mark_sending(rows[0][0]), 10)
        store.record(rows[0][0], "placed", call_id="x", status=200)
        counts = await asyncio.wait_for(store.counts(), 10)
        assert counts.placed == 1
    finally:
        await asyncio.wait_for(store.close(), 10)
        await proxy.close()
    # Closed: what it claimed was given back, what it wrote is there.
    assert await _table(pg_dsn, campaign_name) == {"placed": 1, "pending": 5}


async def test_close_cancelled_still_gives_claims_back_and_closes(
    pg_dsn: str, campaign_name: str,
) -> None:
    proxy = PgProxy(pg_dsn)
    dsn = await proxy.start()
    store = await PgStore.open(dsn, campaign=campaign_name, heartbeat=10, lease=30)
    await _ingest(store, NUMBERS[:4])
    rows = await store.claim(2)
    await store.mark_sending(rows[0][0])
    store.record(rows[0][0], "placed", call_id="x", status=200)
    proxy.arm(1)  # the first request of close (its flush) waits for its answer
    closing = asyncio.create_task(store.close())
    await asyncio.wait_for(proxy.held.wait(), 10)
    closing.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    proxy.release()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(closing, 10)
    await proxy.close()
    assert await _table(pg_dsn, campaign_name) == {"placed": 1, "pending": 3}


async def _stopped_run(server: FakeRyzeServer, numbers: Path, dsn: str, campaign: str,
                       stop_after: int) -> CampaignSummary:
    server.fail_next(Fault.HTML_502)
    server.fail_next(Fault.DROP_AFTER_READ, times=2)
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None,
                          max_retries=0) as client:
        run = Campaign(client, numbers, journal=dsn, campaign=campaign, fake=True,
                       concurrency=2, max_connection_failures=100, max_unknown_in_a_row=None)
        seen = 0

        async def on_result(outcome: CampaignOutcome) -> None:
            nonlocal seen
            seen += 1
            if seen >= stop_after:
                run.stop()

        return await asyncio.wait_for(run.run(on_result), 30)


@pytest.mark.parametrize("stop_after", range(1, 9))
async def test_a_stopped_postgres_run_agrees_with_its_table_and_the_server(
    ryze_server_factory: ServerFactory, tmp_path: Path, pg_dsn: str, campaign_name: str,
    stop_after: int,
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    numbers = tmp_path / "n.csv"
    numbers.write_text("number\n" + "\n".join(NUMBERS) + "\n")
    summary = await _stopped_run(server, numbers, pg_dsn, campaign_name, stop_after)
    table = await _table(pg_dsn, campaign_name)
    assert table.get("sending", 0) == table.get("claimed", 0) == 0
    assert (summary.placed, summary.failed, summary.unknown, summary.pending) == (
        table.get("placed", 0), table.get("failed", 0), table.get("unknown", 0),
        table.get("pending", 0))
    await _check_against_the_server(server, pg_dsn, campaign_name)


async def _check_against_the_server(server: FakeRyzeServer, dsn: str, campaign: str) -> None:
    reached = [r.json["number"] for r in server.requests if r.json]
    assert len(reached) == len(set(reached))  # nobody called twice
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[Any] = await conn.fetch(
            "SELECT number, state FROM ryze_numbers WHERE campaign = $1 AND valid", campaign)
    finally:
        await conn.close()
    for row in rows:
        if row["state"] in ("placed", "unknown"):
            assert row["number"] in reached, f"{row['number']} {row['state']} never sent"


async def _run_until_held(server: FakeRyzeServer, numbers: Path, dsn: str, campaign: str,
                          proxy: PgProxy, how: str) -> CampaignSummary | None:
    """A campaign whose journal connection stalls at the armed request: then it is stopped,
    aborted or its task cancelled, and the journal's answers flow again."""
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None,
                          max_retries=0) as client:
        run = Campaign(client, numbers, journal=dsn, campaign=campaign, fake=True,
                       concurrency=3, max_connection_failures=100, max_unknown_in_a_row=None)
        task = asyncio.create_task(run.run())
        held = asyncio.create_task(proxy.held.wait())
        await asyncio.wait({task, held}, return_when=asyncio.FIRST_COMPLETED)
        held.cancel()
        if how == "stop":
            run.stop()
        elif how == "abort":
            run.abort()
        else:
            task.cancel()
        for _ in range(20):
            await asyncio.sleep(0)
        proxy.release()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        return run.summary


@pytest.mark.parametrize("how", ["stop", "abort", "cancel"])
@pytest.mark.parametrize("k", range(4, 60, 5))
async def test_a_postgres_run_stopped_while_its_journal_waits(
    ryze_server_factory: ServerFactory, tmp_path: Path, pg_dsn: str, campaign_name: str,
    k: int, how: str,
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    server.fail_next(Fault.HTML_502)
    numbers = tmp_path / "n.csv"
    numbers.write_text("number\n" + "\n".join(NUMBERS) + "\n")
    proxy = PgProxy(pg_dsn)
    dsn = await proxy.start()
    proxy.arm(k)
    try:
        summary = await _run_until_held(server, numbers, dsn, campaign_name, proxy, how)
    finally:
        await proxy.close()
    table = await _table(pg_dsn, campaign_name)
    assert table.get("sending", 0) == table.get("claimed", 0) == 0
    if summary is None:  # cancelled while the journal opened: nobody was called
        assert how == "cancel"
        assert server.requests == []
        assert set(table) <= {"pending"}
        return
    assert (summary.placed, summary.failed, summary.unknown, summary.pending) == (
        table.get("placed", 0), table.get("failed", 0), table.get("unknown", 0),
        table.get("pending", 0))
    await _check_against_the_server(server, pg_dsn, campaign_name)


@pytest.mark.parametrize(("signals", "after"), [
    ((signal.SIGINT,), 2), ((signal.SIGTERM,), 5), ((signal.SIGINT, signal.SIGINT), 3),
    ((signal.SIGTERM, signal.SIGINT), 7),
])
async def test_cli_on_postgres_stopped_by_signals(
    ryze_server_factory: ServerFactory, tmp_path: Path, pg_dsn: str, campaign_name: str,
    signals: tuple[signal.Signals, ...], after: int,
) -> None:
    """SIGINT/SIGTERM (once: stop; twice: abort) with a proxy's HTML page among the answers:
    the printed summary is the table's recount, and nobody the server never saw is placed or
    unknown."""
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    server.fail_next(Fault.HTML_502)
    numbers = tmp_path / "n.csv"
    numbers.write_text("number\n" + "\n".join(f"55119{i:08d}" for i in range(40)) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ryze_async", "campaign", str(numbers), "--fake", "--journal",
        pg_dsn, "--campaign", campaign_name, "--rate-limit", "20", "--rate-period", "1",
        "--concurrency", "3", "--json", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    await asyncio.wait_for(server.wait_for_requests(after), 30)
    for sig in signals:
        proc.send_signal(sig)
        await asyncio.sleep(0)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err.decode()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    table = await _table(pg_dsn, campaign_name)
    assert table.get("sending", 0) == table.get("claimed", 0) == 0
    assert (summary["placed"], summary["failed"], summary["unknown"], summary["pending"]) == (
        table.get("placed", 0), table.get("failed", 0), table.get("unknown", 0),
        table.get("pending", 0))
    await _check_against_the_server(server, pg_dsn, campaign_name)


@pytest.mark.parametrize("target", ["close twice", "the unit"])
async def test_work_cut_short_drops_the_connection_never_builds_on_it(
    pg_dsn: str, campaign_name: str, target: str,
) -> None:
    """Cancelled twice while closing (its flush's commit under way), or a unit of work
    cancelled itself (the event loop's teardown) mid-transaction: the connection is dropped
    (the server rolls back), the journal refuses more work, and no connection is left inside
    a transaction."""
    from ryze_async import JournalError

    proxy = PgProxy(pg_dsn)
    dsn = await proxy.start()
    store = await PgStore.open(dsn, campaign=campaign_name, heartbeat=10, lease=30)
    await _ingest(store, NUMBERS[:4])
    store._last_recover = asyncio.get_running_loop().time()
    if target == "close twice":
        rows = await store.claim(2)
        store.back_to_pending(rows[0][0])  # queued: the close's flush commits it
        proxy.arm(3)  # BEGIN, SET LOCAL, then the outcome itself waits for its answer
        work = asyncio.create_task(store.close())
    else:
        proxy.arm(3)  # BEGIN, SET LOCAL, then the claim itself waits for its answer
        work = asyncio.create_task(store.claim(2))
    await asyncio.wait_for(proxy.held.wait(), 10)
    if target == "close twice":
        for _ in range(2):
            work.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
    else:
        (unit,) = store._link.units
        unit.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        proxy.release()  # asyncpg's own ROLLBACK of the cancelled query gets its answer
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(work, 10)
    proxy.release()
    with pytest.raises(JournalError, match="closed"):
        await store.claim(1)
    await asyncio.wait_for(store.close(), 10)
    await proxy.close()
    for _ in range(100):  # the server ends a dropped backend on its own time
        with contextlib.suppress(AssertionError):
            await _table(pg_dsn, campaign_name)
            break
        await asyncio.sleep(0.05)
    assert set(await _table(pg_dsn, campaign_name)) <= {"pending", "claimed"}
