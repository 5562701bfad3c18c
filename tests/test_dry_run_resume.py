"""(#10) ``--dry-run`` on an existing journal predicts the *resumed* run: the journal is read
read-only (its bytes, mtime and sibling files unchanged; on PostgreSQL no row changed), nobody
is called (the fake server's record is the oracle), and the prediction is what the real
resumed run then produces, counts by outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import (
    Campaign,
    CampaignOutcome,
    CampaignPlan,
    CampaignSummary,
    JournalMismatchError,
    RyzeClient,
)
from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

from .cli_helpers import run_cli
from .conftest import examples

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
NUMBERS = [f"55119{i:08d}" for i in range(12)]
NEW = [f"55119{i:08d}" for i in range(50, 53)]
TOKEN = "test-token"


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(token=TOKEN, rate_limit=None)


def write(path: Path, numbers: list[str]) -> None:
    path.write_text("number\n" + "\n".join(numbers) + "\n")


async def partial_run(server: FakeRyzeServer, numbers: Path, journal: Any,
                      campaign: str | None, stop_after: int | None = 6) -> CampaignSummary:
    """A first run stopped after six calls: two unknown (connections dropped after the server
    read them), the rest placed; the invalid line and the duplicate recorded."""
    server.fail_next(Fault.DROP_AFTER_READ, times=2)
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None,
                          max_retries=0) as client:
        run = Campaign(client, numbers, journal=journal, campaign=campaign, fake=True,
                       concurrency=1, max_connection_failures=100)
        sent: list[str] = []

        async def on_result(outcome: CampaignOutcome) -> None:
            if outcome.sent:
                sent.append(outcome.number)
            if stop_after is not None and len(sent) >= stop_after:
                run.stop()

        summary = await run.run(on_result)
    server.reset()
    return summary


def edit_input(numbers: Path, how: str) -> None:
    if how == "append":  # only appended to: the resumed run seeks past what it read
        with numbers.open("a") as f:
            f.write("\n".join([*NEW, "abc", NUMBERS[1]]) + "\n")
    else:  # rewritten: two pending numbers removed, new ones inserted; read again
        write(numbers, [*NEW[:2], *NUMBERS[:9], "abc", NUMBERS[1], NEW[2]])


async def plan_then_run(server: FakeRyzeServer, numbers: Path, journal: Any,
                        campaign: str | None, **options: Any,
                        ) -> tuple[CampaignPlan, CampaignSummary, int]:
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        kwargs: dict[str, Any] = {"journal": journal, "campaign": campaign, "fake": True,
                                  "concurrency": 2, **options}
        plan = await Campaign(client, numbers, **kwargs).dry_run()
        called = len(server.requests)
        summary = await Campaign(client, numbers, **kwargs).run()
    return plan, summary, called


def check_prediction(plan: CampaignPlan, summary: CampaignSummary) -> None:
    """Every number the plan calls now is placed (the server answers all); the rest as said."""
    assert plan.total == (plan.now + plan.later + plan.never + plan.excluded + plan.expired
                          + plan.invalid + plan.duplicates + plan.placed + plan.failed
                          + plan.unknown + plan.removed)
    predicted = (plan.placed + plan.now, plan.failed, plan.unknown, plan.later + plan.never,
                 plan.removed, plan.excluded, plan.expired, plan.invalid, plan.duplicates,
                 plan.total)
    actual = (summary.placed, summary.failed, summary.unknown, summary.pending,
              summary.removed, summary.excluded, summary.expired, summary.invalid,
              summary.duplicates, summary.total)
    assert predicted == actual


def file_state(journal: Path) -> tuple[bytes, int, list[str]]:
    return (journal.read_bytes(), journal.stat().st_mtime_ns,
            sorted(os.listdir(journal.parent)))


@pytest.mark.parametrize("how", ["append", "rewrite"])
@pytest.mark.parametrize("retry", [{}, {"retry_failed": True, "retry_unknown": True}])
async def test_dry_run_of_a_sqlite_journal_predicts_the_resumed_run(
    server: FakeRyzeServer, tmp_path: Path, how: str, retry: dict[str, bool],
) -> None:
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, [*NUMBERS, "12", NUMBERS[0]])
    first = await partial_run(server, numbers, journal, None)
    edit_input(numbers, how)
    plan, summary, called = await plan_then_run(server, numbers, journal, None, **retry)
    assert called == 0
    assert plan.journal is not None
    assert (plan.journal.placed, plan.journal.unknown, plan.journal.pending) == (
        first.placed, first.unknown, first.pending)
    assert first.placed >= 4
    assert first.unknown == 2
    assert plan.restarted == (how == "rewrite")
    check_prediction(plan, summary)
    # Nobody already dealt with was called again (unless put back), nor was anyone twice.
    calls = [r.json["number"] for r in server.requests]
    assert len(calls) == len(set(calls)) == plan.now
    assert plan.placed == first.placed
    if not retry:
        assert plan.unknown == 2
        assert plan.retried == 0
    else:
        assert plan.retried == 2
        assert plan.failed == plan.unknown == 0
    if how == "rewrite":
        assert plan.removed == 3  # NUMBERS[9:12] were pending and are gone from the input


async def test_the_sqlite_journal_is_untouched_by_a_dry_run(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, [*NUMBERS, "12", NUMBERS[0]])
    await partial_run(server, numbers, journal, None)
    edit_input(numbers, "rewrite")
    before = file_state(journal)
    assert before[2] == ["j.db", "n.csv"]  # closed cleanly: no -wal, no -shm
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        plan = await Campaign(client, numbers, journal=journal, fake=True,
                              retry_unknown=True).dry_run()
    assert plan.journal is not None
    assert server.requests == []
    assert file_state(journal) == before
    # A journal that does not exist stays so (a new campaign's plan).
    missing = tmp_path / "none.db"
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        fresh = await Campaign(client, numbers, journal=missing, fake=True).dry_run()
    assert fresh.journal is None
    assert not missing.exists()
    assert sorted(os.listdir(tmp_path)) == ["j.db", "n.csv"]


async def test_cli_dry_run_reports_the_journal_and_what_resuming_does(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, [*NUMBERS, "12", NUMBERS[0]])
    first = await partial_run(server, numbers, journal, None)
    edit_input(numbers, "rewrite")
    before = file_state(journal)
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}
    code, out, err = await run_cli(["campaign", str(numbers), "--journal", str(journal),
                                    "--fake", "--dry-run"], env)
    assert code == 0, err
    assert server.requests == []
    assert file_state(journal) == before
    assert f"journal {journal} (read only): {first.placed} placed, 0 failed, 2 unknown" in out
    assert f"already placed:  {first.placed} (not called again)" in out
    assert "removed:         3 (no longer in the input: skipped, not called)" in out
    assert "call now:        " in out
    assert "duplicates:      " in out


@pytest.mark.infra
async def test_dry_run_while_another_process_runs_the_campaign(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    """The campaign's process holds the journal (its lock, a hung call ``sending``): the dry
    run neither waits for it nor disturbs it, and reads the states as they are."""
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, NUMBERS)
    server.set_fault(Fault.HANG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ryze_async", "campaign", str(numbers), "--journal",
        str(journal), "--fake", "--concurrency", "2", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await asyncio.wait_for(server.wait_for_requests(2), 30)
        async with RyzeClient(TOKEN, "my-instance", base_url=server.url,
                              rate_limit=None) as client:
            plan = await asyncio.wait_for(
                Campaign(client, numbers, journal=journal, fake=True).dry_run(), 10)
        assert len(server.requests) == 2  # the dry run called nobody
        assert plan.journal is not None
        assert plan.journal.sending == 2
        assert plan.unknown == 2
        assert plan.now == len(NUMBERS) - 2
        assert proc.returncode is None  # the campaign runs on, undisturbed
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    # Killed: its -wal and -shm are left behind; a dry run reads through them, adds nothing.
    before = file_state(journal)
    assert {"j.db-wal", "j.db-shm"} <= set(before[2])
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        after_kill = await Campaign(client, numbers, journal=journal, fake=True).dry_run()
    assert file_state(journal) == before
    assert (after_kill.unknown, after_kill.now) == (2, len(NUMBERS) - 2)
    server.set_fault(None)
    db = sqlite3.connect(journal)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        states = dict(db.execute("SELECT state, count(*) FROM numbers GROUP BY state"))
    finally:
        db.close()
    assert states == {"sending": 2, "pending": len(NUMBERS) - 2}


@pytest.fixture
def campaign_name() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def dump(dsn: str) -> list[Any]:
    asyncpg = pytest.importorskip("asyncpg")
    conn = await asyncpg.connect(dsn)
    try:
        campaigns = await conn.fetch("SELECT * FROM ryze_campaigns ORDER BY campaign")
        numbers = await conn.fetch("SELECT * FROM ryze_numbers ORDER BY campaign, id")
        return [tuple(r) for r in [*campaigns, *numbers]]
    finally:
        await conn.close()


@pytest.mark.parametrize("how", ["append", "rewrite"])
async def test_dry_run_of_a_postgres_journal_predicts_the_resumed_run(
    server: FakeRyzeServer, tmp_path: Path, pg_dsn: str, campaign_name: str, how: str,
) -> None:
    """A first run over part of the list (two unknown), then the list grown (appended to, or
    rewritten): the dry run's prediction, on a journal left exactly as it was."""
    numbers = tmp_path / "n.csv"
    write(numbers, [*NUMBERS[:7], "12", NUMBERS[0]])
    # Stopped after six calls, as the SQLite test's first run (#9: a stop no longer breaks
    # the PostgreSQL journal's connection).
    first = await partial_run(server, numbers, pg_dsn, campaign_name)
    if how == "append":
        with numbers.open("a") as f:
            f.write("\n".join([*NUMBERS[7:], *NEW, "abc", NUMBERS[1]]) + "\n")
    else:
        edit_input(numbers, how)
    before = await dump(pg_dsn)
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        plan = await Campaign(client, numbers, journal=pg_dsn, campaign=campaign_name,
                              fake=True, retry_unknown=True).dry_run()
        missing = await Campaign(client, numbers, journal=pg_dsn,
                                 campaign=campaign_name + "x", fake=True).dry_run()
    assert await dump(pg_dsn) == before  # no row changed, no campaign created
    assert server.requests == []
    assert missing.journal is None
    assert plan.journal is not None
    assert (plan.journal.placed, plan.journal.unknown, plan.journal.invalid) == (
        first.placed, first.unknown, 1) == (4, 2, 1)
    assert plan.retried == 2
    assert plan.placed == 4
    assert plan.restarted == (how == "rewrite")
    plan2, summary, called = await plan_then_run(server, numbers, pg_dsn, campaign_name,
                                                 retry_unknown=True)
    assert called == 0
    assert plan2 == plan
    check_prediction(plan, summary)
    calls = [r.json["number"] for r in server.requests]
    assert len(calls) == len(set(calls)) == plan.now


async def test_dry_run_refuses_a_journal_of_another_campaign_as_the_run_would(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, NUMBERS[:3])
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        await Campaign(client, numbers, journal=journal, fake=True).run()
        wav = tmp_path / "m.wav"
        wav.write_bytes(wav_tone(0.1))
        before = file_state(journal)
        with pytest.raises(JournalMismatchError, match="call kind 'fake'"):
            await Campaign(client, numbers, journal=journal, media=wav).dry_run()
        forced = await Campaign(client, numbers, journal=journal, media=wav,
                                force=True).dry_run()
    assert forced.placed == 3
    assert forced.now == 0
    assert file_state(journal) == before
    assert len(server.requests) == 3


POOL = [f"55119{i:08d}" for i in range(100, 110)]
_entries = st.lists(st.sampled_from([*POOL, "12", "abc"]), min_size=1, max_size=12)


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_entries, later=_entries, append=st.booleans(), drops=st.integers(0, 2),
       stop_after=st.none() | st.integers(1, 6), retry_failed=st.booleans(),
       retry_unknown=st.booleans(), optout1=st.sets(st.sampled_from(POOL), max_size=3),
       optout2=st.sets(st.sampled_from(POOL), max_size=3))
def test_any_edit_of_the_input_and_opt_outs_is_predicted(
    first: list[str], later: list[str], append: bool, drops: int, stop_after: int | None,
    retry_failed: bool, retry_unknown: bool, optout1: set[str], optout2: set[str],
) -> None:
    """A first run (maybe stopped, maybe some unknown) under one opt-out list; then the input
    appended to or rewritten and the opt-out list edited: the dry run's counts are the run's."""
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_predicted(Path(tmp), first, later, append, drops, stop_after,
                               {"retry_failed": retry_failed, "retry_unknown": retry_unknown},
                               optout1, optout2))


async def _predicted(tmp: Path, first: list[str], later: list[str], append: bool, drops: int,
                     stop_after: int | None, retry: dict[str, bool], optout1: set[str],
                     optout2: set[str]) -> None:
    numbers, journal, optout = tmp / "n.csv", tmp / "j.db", tmp / "optout.csv"
    write(numbers, first)
    write(optout, [*sorted(optout1), "5511900000999"])
    async with FakeRyzeServer(token=TOKEN, rate_limit=None) as server:
        if drops:
            server.fail_next(Fault.DROP_AFTER_READ, times=drops)
        async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None,
                              max_retries=0) as client:
            run = Campaign(client, numbers, journal=journal, fake=True, concurrency=1,
                           exclude=[optout])
            sent: list[str] = []

            async def on_result(outcome: CampaignOutcome) -> None:
                sent.append(outcome.number)
                if stop_after is not None and len(sent) >= stop_after:
                    run.stop()

            await run.run(on_result)
        server.reset()
        if append:
            with numbers.open("a") as f:
                f.write("\n".join(later) + "\n")
        else:
            write(numbers, later)
        write(optout, [*sorted(optout2), "5511900000999"])
        plan, summary, called = await _plan_and_run(server, numbers, journal, retry, optout)
        assert called == 0
    check_prediction(plan, summary)


async def _plan_and_run(server: FakeRyzeServer, numbers: Path, journal: Path,
                        retry: dict[str, bool], optout: Path,
                        ) -> tuple[CampaignPlan, CampaignSummary, int]:
    before = file_state(journal)
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        kwargs: dict[str, Any] = {"journal": journal, "fake": True, "exclude": [optout],
                                  **retry}
        plan = await Campaign(client, numbers, **kwargs).dry_run()
        assert file_state(journal) == before
        called = len(server.requests)
        summary = await Campaign(client, numbers, **kwargs).run()
    return plan, summary, called


async def test_a_journal_file_that_keeps_changing_is_not_read_half_written(
    server: FakeRyzeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a -wal the file is read with no lock: a read counts only if the file did not
    change meanwhile (a campaign that started and checkpointed); else read again, then say so."""
    from ryze_async import JournalError
    from ryze_async._campaign.journal.sqlite import report as _peek

    numbers, journal = tmp_path / "n.csv", tmp_path / "j.db"
    write(numbers, NUMBERS[:2])
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        await Campaign(client, numbers, journal=journal, fake=True).run()
    ticks = iter(range(1000))
    monkeypatch.setattr(_peek, "_stamp", lambda path: (0, 0, next(ticks)))
    with pytest.raises(JournalError, match="kept changing while it was read"):
        _peek.peek_sqlite(journal)
    stamps = iter([(1, 1, 1), (1, 1, 2), (1, 1, 3), (1, 1, 3)])  # changed once, then still
    monkeypatch.setattr(_peek, "_stamp", lambda path: next(stamps))
    found = _peek.peek_sqlite(journal)
    assert found is not None
    assert found.counts().placed == 2


async def test_cli_dry_run_on_postgres_shows_the_journal_without_its_password(
    server: FakeRyzeServer, tmp_path: Path, pg_dsn: str, campaign_name: str,
) -> None:
    password = "hunter2-Db-Pass"  # trust authentication accepts any: it must never be shown
    scheme, rest = pg_dsn.split("://", 1)
    user, host = rest.split("@", 1)
    dsn = f"{scheme}://{user}:{password}@{host}"
    numbers = tmp_path / "n.csv"
    write(numbers, NUMBERS[:4])
    await partial_run(server, numbers, dsn, campaign_name, stop_after=None)
    write(numbers, NUMBERS[2:6])
    before = await dump(pg_dsn)
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}
    code, out, err = await run_cli(["campaign", str(numbers), "--journal", dsn, "--campaign",
                                    campaign_name, "--fake", "--dry-run"], env)
    assert code == 0, err
    assert password not in out + err
    assert f"journal {pg_dsn} campaign {campaign_name!r} (read only): 2 placed" in out
    assert "already unknown: 2 " in out
    assert "call now:        2" in out
    assert server.requests == []
    assert await dump(pg_dsn) == before


async def test_a_number_held_for_its_window_and_opted_out_meanwhile_is_predicted_held(
    tmp_path: Path,
) -> None:
    """A run outside the window holds a number (pending until Monday); then an opt-out list
    names it. The resumed run keeps the hold and judges the number only when its window opens;
    the dry run predicts the same (it said ``excluded``), and under other calling rules both
    judge it now."""
    numbers, journal, optout = tmp_path / "n.csv", tmp_path / "j.db", tmp_path / "o.csv"
    write(numbers, [NUMBERS[0]])
    write(optout, ["5511900000999"])
    saturday = datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # São Paulo 11:00, outside Mon-Fri
    rules: dict[str, Any] = {"exclude": [optout], "call_windows": ["Mon-Fri 09:00-20:00"],
                             "exit_outside_window": True, "now": lambda: saturday}
    async with FakeRyzeServer(token=TOKEN, rate_limit=None) as server, RyzeClient(
            TOKEN, "my-instance", base_url=server.url, rate_limit=None) as client:
        await Campaign(client, numbers, journal=journal, fake=True, **rules).run()
        write(optout, [NUMBERS[0], "5511900000999"])
        plan = await Campaign(client, numbers, journal=journal, fake=True, **rules).dry_run()
        summary = await Campaign(client, numbers, journal=journal, fake=True, **rules).run()
        assert (plan.later, plan.excluded) == (1, 0)
        assert summary.pending == 1
        wider: dict[str, Any] = {**rules, "call_windows": ["Mon-Sun 00:00-24:00"],
                                 "change_rules": True}
        plan = await Campaign(client, numbers, journal=journal, fake=True, **wider).dry_run()
        summary = await Campaign(client, numbers, journal=journal, fake=True, **wider).run()
        assert (plan.later, plan.excluded) == (0, 1)
        assert summary.excluded == 1
        assert server.requests == []
