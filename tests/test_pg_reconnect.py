"""(#19) Lost database connections: a PostgreSQL worker reconnects (bounded backoff with
jitter) and goes on; its ``sending`` marks stay exactly as durable as before; after
``--reconnect-deadline`` it exits 5; ``--lease`` makes a dead worker's claims come back sooner
without a live worker's being stolen. Real PostgreSQL clusters stopped, restarted and cut under
real worker processes; the fake server's record is the oracle (nobody twice, nobody lost)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ryze_async import ClaimLostError, InvalidRequestError
from ryze_async._cli._exits import EXIT_JOURNAL_LOST, EXIT_USAGE
from ryze_async.testing import FakeRyzeServer

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.infra

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "s3cr3t-token-VALUE-never-printed"
PASSWORD = "hunter2-Db-Pass-Reconnect"  # trust authentication accepts it; never printed
PIPE = asyncio.subprocess.PIPE


@pytest.fixture
def pg() -> Iterator[Any]:
    """A private cluster of this test's, which it may stop and start again."""
    from .pg_cluster import PostgresUnavailableError, pg_server

    try:
        with pg_server() as server:
            yield server
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))


def with_password(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


def numbers_file(tmp_path: Path, count: int) -> tuple[list[str], Path]:
    valid = [f"55119{i:08d}" for i in range(count)]
    path = tmp_path / "numbers.csv"
    path.write_text("number\n" + "\n".join(valid) + "\n")
    return valid, path


async def start_worker(server: FakeRyzeServer, numbers: Path, dsn: str, *extra: str
                       ) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ryze_async", "campaign", str(numbers), "--fake",
        "--journal", with_password(dsn), "--campaign", "c19", "--concurrency", "2", *extra,
        env=env, stdout=PIPE, stderr=PIPE)


async def finish(proc: asyncio.subprocess.Process, bound: float = 120) -> tuple[int, str]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), bound)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode() + err.decode()
    assert PASSWORD not in text
    assert TOKEN not in text
    assert "Traceback" not in text, text
    assert proc.returncode is not None
    return proc.returncode, text


def called(server: FakeRyzeServer) -> Counter[str]:
    return Counter(r.json["number"] for r in server.requests if r.json)


async def sql(dsn: str, query: str, *args: object) -> list[Any]:
    conn = await asyncio.wait_for(asyncpg.connect(dsn), 30)
    try:
        return list(await asyncio.wait_for(conn.fetch(query, *args), 30))
    finally:
        await conn.close()


async def cut(dsn: str, pid: int | None = None) -> int:
    """``pg_terminate_backend`` every worker connection (or those of the worker ``pid``)."""
    rows = await sql(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                     "application_name LIKE 'ryze-async%' AND ($1::int IS NULL OR "
                     "application_name LIKE '%:' || $1::int || ':%')", pid)
    return sum(1 for r in rows if r[0])


async def states(dsn: str) -> dict[str, str]:
    rows = await sql(dsn, "SELECT number, state FROM ryze_numbers WHERE campaign = 'c19'")
    return {r["number"].lstrip("+"): r["state"] for r in rows}


async def test_terminated_connections_are_reconnected_and_the_campaign_finishes(
    ryze_server_factory: ServerFactory, pg: Any, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    valid, numbers = numbers_file(tmp_path, 30)
    proc = await start_worker(server, numbers, pg.dsn, "--rate-limit", "10",
                              "--rate-period", "1")
    try:
        await server.wait_for_requests(5, timeout=60)
        assert await cut(pg.dsn) >= 1
        await server.wait_for_requests(15, timeout=60)
        assert await cut(pg.dsn) >= 1
    finally:
        code, text = await finish(proc)
    assert code == 0, text
    assert called(server) == Counter(valid)  # everybody exactly once
    assert set((await states(pg.dsn)).values()) == {"placed"}
    assert "reconnect" in text


async def test_a_restarted_database_is_reconnected_and_the_campaign_finishes(
    ryze_server_factory: ServerFactory, pg: Any, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None, response_delay=0.2)
    valid, numbers = numbers_file(tmp_path, 30)
    proc = await start_worker(server, numbers, pg.dsn, "--rate-limit", "10",
                              "--rate-period", "1")
    try:
        await server.wait_for_requests(5, timeout=60)
        await asyncio.to_thread(pg.stop, "fast")
        await asyncio.sleep(3)  # the outage itself: the database is down this long
        await asyncio.to_thread(pg.start)
    finally:
        code, text = await finish(proc)
    assert code == 0, text
    assert called(server) == Counter(valid)
    assert set((await states(pg.dsn)).values()) == {"placed"}


async def test_a_database_down_past_the_deadline_exits_5_and_nothing_is_sent_again(
    ryze_server_factory: ServerFactory, pg: Any, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None, response_delay=0.5)
    valid, numbers = numbers_file(tmp_path, 30)
    proc = await start_worker(server, numbers, pg.dsn, "--rate-limit", "10",
                              "--rate-period", "1", "--reconnect-deadline", "2",
                              "--lease", "3")
    try:
        await server.wait_for_requests(6, timeout=60)
        await asyncio.to_thread(pg.stop, "fast")
        began = time.monotonic()
    finally:
        code, text = await finish(proc, bound=60)
    assert code == EXIT_JOURNAL_LOST, text
    assert time.monotonic() - began < 30
    assert "--reconnect-deadline" in text or "2 s" in text
    first = called(server)
    await asyncio.to_thread(pg.start)
    before = await states(pg.dsn)
    maybe_sent = {n for n, s in before.items() if s in ("sending", "unknown")}
    assert maybe_sent <= set(first)  # a mark only ever went out once committed
    resume = await start_worker(server, numbers, pg.dsn, "--rate-limit", "20",
                                "--rate-period", "1", "--lease", "3")
    code, text = await finish(resume)
    assert code in (0, 1), text
    after = await states(pg.dsn)
    assert max(called(server).values()) == 1  # nobody twice
    assert {n for n, s in after.items() if s == "unknown"} >= maybe_sent - {
        n for n, s in before.items() if s == "placed"}
    assert set(called(server)) | {n for n, s in after.items() if s == "unknown"} == set(valid)


async def _owned(dsn: str, pid: int, state: str) -> set[int]:
    try:
        rows = await sql(dsn, "SELECT id FROM ryze_numbers WHERE owner LIKE "
                         "'%:' || $1::text || ':%' AND state = $2", str(pid), state)
    except asyncpg.UndefinedTableError:  # no worker has created the tables yet
        return set()
    return {r["id"] for r in rows}


async def _until(check: Callable[[], Awaitable[bool]], bound: float) -> float:
    """Poll ``check`` until true; how long it took (fails after ``bound`` seconds)."""
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < bound, "not within the bound"
        await asyncio.sleep(0.1)
    return time.monotonic() - began


async def test_a_killed_workers_claims_come_back_after_its_lease_a_cut_ones_stay(
    ryze_server_factory: ServerFactory, pg: Any, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    valid, numbers = numbers_file(tmp_path, 60)
    slow = ("--rate-limit", "4", "--rate-period", "1", "--lease", "3")
    live = await start_worker(server, numbers, pg.dsn, *slow)
    doomed = await start_worker(server, numbers, pg.dsn, *slow)
    try:
        async def both_claim() -> bool:
            return bool(await _owned(pg.dsn, live.pid, "claimed")) and bool(
                await _owned(pg.dsn, doomed.pid, "claimed"))

        await _until(both_claim, 60)
        kept = await _owned(pg.dsn, live.pid, "claimed")
        assert await cut(pg.dsn, live.pid) >= 1  # a brief cut: it reconnects
        doomed.kill()
        await doomed.wait()
        dead_claims = await _owned(pg.dsn, doomed.pid, "claimed")

        async def given_back() -> bool:
            return not await _owned(pg.dsn, doomed.pid, "claimed")

        took = await _until(given_back, 15)
        assert not dead_claims or took < 3 + 3  # the lease, plus the survivor's looks (1 s)
    finally:
        code, text = await finish(live)
    assert code in (0, 1), text
    assert "reconnect" in text
    assert max(called(server).values()) == 1  # nobody twice
    final = await states(pg.dsn)
    unknown = {n for n, s in final.items() if s == "unknown"}
    assert set(called(server)) | unknown == set(valid)  # nobody lost
    # The cut worker's claims stayed its own: it called them (nobody stole them).
    mine = await _owned(pg.dsn, live.pid, "placed")
    assert kept <= mine


@pytest.fixture
async def store_pair(pg: Any) -> AsyncIterator[tuple[Any, Any]]:
    from ryze_async._campaign.journal.postgres.store import PgStore

    a = await PgStore.open(pg.dsn, campaign="c19", lease=30, heartbeat=10)
    b = await PgStore.open(pg.dsn, campaign="c19", lease=30, heartbeat=10)
    try:
        entries = [(i, f"+55119{i:08d}") for i in range(1, 11)]
        await a.ingest(entries, position=(100, 10, "d"), normalize=str)
        yield a, b
    finally:
        await asyncio.wait_for(a.close(), 60)
        await asyncio.wait_for(b.close(), 60)


async def test_a_mark_whose_commit_answer_was_lost_is_read_back_not_sent_twice(
    store_pair: tuple[Any, Any], pg: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ryze_async._campaign.journal.postgres import store as module

    a, _ = store_pair
    rows = await a.claim(2)
    real = module.apply_ops
    cuts: list[bool] = []

    async def cut_once(conn: Any, *args: Any) -> set[int]:
        if cuts:
            return await real(conn, *args)
        cuts.append(True)
        if len(rows) and args[-1][0].row_id == rows[0].id:
            await real(conn, *args)  # the commit landed; its answer never reached the worker
        conn.terminate()
        raise asyncpg.ConnectionDoesNotExistError("cut around the commit")

    monkeypatch.setattr(module, "apply_ops", cut_once)
    await asyncio.wait_for(a.mark_sending(rows[0].id), 30)  # committed, read back: acknowledged
    cuts.clear()
    await asyncio.wait_for(a.mark_sending(rows[1].id), 30)  # never committed: applied again
    assert len(cuts) == 1
    got = await sql(pg.dsn, "SELECT id, state, attempts FROM ryze_numbers WHERE id = ANY($1)",
                    [rows[0].id, rows[1].id])
    assert {(r["state"], r["attempts"]) for r in got} == {("sending", 1)}


async def test_a_runs_elapsed_time_whose_commit_answer_was_lost_is_added_once(
    store_pair: tuple[Any, Any], pg: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The report's elapsed time adds up the runs': an addition that committed while its
    # answer was lost is tried again on the new connection and must not count twice.
    a, b = store_pair
    real = asyncpg.connection.Connection.execute
    cuts: list[str] = []

    async def cut_after_commit(conn: Any, query: str, *args: Any, **kw: Any) -> str:
        status = await real(conn, query, *args, **kw)
        if "elapsed" in query and not cuts:
            cuts.append(query)
            conn.terminate()  # the statement committed; its answer never reached the worker
            raise asyncpg.ConnectionDoesNotExistError("cut after the commit")
        return status

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", cut_after_commit)
    await asyncio.wait_for(a.add_elapsed(1.5), 30)
    await asyncio.wait_for(b.add_elapsed(2.0), 30)
    await asyncio.wait_for(a.add_elapsed(0.25), 30)  # a later run of the same worker counts
    assert len(cuts) == 1
    assert (await b.counts()).elapsed == 3.75


async def test_claims_whose_lease_ran_out_while_cut_off_are_not_sent(
    store_pair: tuple[Any, Any], pg: Any,
) -> None:
    a, b = store_pair
    rows = await a.claim(3)
    assert await cut(pg.dsn) >= 2
    # As if the outage outlasted the lease: the database's clock says it ran out.
    await sql(pg.dsn, "UPDATE ryze_numbers SET lease_until = clock_timestamp() - interval '1s'"
              " WHERE owner = $1", a.worker)
    await b.recover()
    taken = await b.claim(10)
    assert {r.id for r in rows} <= {r.id for r in taken}
    with pytest.raises(ClaimLostError):
        await asyncio.wait_for(a.mark_sending(rows[0].id), 30)


async def test_the_reconnect_gives_back_claims_the_worker_never_learned_of(
    store_pair: tuple[Any, Any], pg: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ryze_async._campaign.journal.postgres import store as module

    a, b = store_pair
    real = module._claim
    cuts = iter([True])

    async def claimed_then_cut(db: Any, *args: Any) -> list[Any]:
        got = await real(db, *args)
        if next(cuts, False):
            db.terminate()
            raise asyncpg.ConnectionDoesNotExistError("cut after the claim committed")
        return got

    monkeypatch.setattr(module, "_claim", claimed_then_cut)
    rows = await asyncio.wait_for(a.claim(4), 30)
    mine = await sql(pg.dsn, "SELECT id FROM ryze_numbers WHERE owner = $1 AND state = "
                     "'claimed'", a.worker)
    assert {r["id"] for r in mine} == {r.id for r in rows}  # no orphan claim left held
    assert len(await b.claim(10)) == 10 - len(rows)


@pytest.mark.parametrize("option", [["--lease", "0"], ["--lease", "nan"],
                                    ["--reconnect-deadline", "-1"], ["--lease", "0.5"]])
async def test_bad_lease_or_deadline_is_a_usage_error_before_any_connection(
    ryze_server_factory: ServerFactory, tmp_path: Path, option: list[str],
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    _, numbers = numbers_file(tmp_path, 3)
    # Nothing listens there: a connection attempt would fail differently (and slowly).
    proc = await start_worker(server, numbers, "postgresql://u@127.0.0.1:9/x", *option)
    code, text = await finish(proc, bound=60)
    assert code == EXIT_USAGE, text
    assert "must be" in text  # the setting's own check, not argparse's "unrecognized"
    assert not server.requests


def test_campaign_refuses_a_bad_lease(tmp_path: Path) -> None:
    from ryze_async import Campaign, RyzeClient

    client = RyzeClient(token="t", instance="i")
    for bad in ({"lease": 0}, {"lease": float("inf")}, {"reconnect_deadline": -1.0}):
        with pytest.raises(InvalidRequestError):
            Campaign(client, ["5511999990000"], journal="postgresql://u@127.0.0.1:9/x",
                     campaign="c", fake=True, **bad)

