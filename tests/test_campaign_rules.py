"""The campaign remembers its rules (#15): a resume never calls anyone the first run held back.

At creation the journal records the rules that decide who is called and when; a resume that
gives none runs by them (and says so), one that gives a different rule is refused naming it,
``change_rules`` changes it on purpose and leaves an audit trail. The fake server's record is
the oracle of who was called, on the clock the campaign was given.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, CampaignSummary, JournalMismatchError, RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

from .test_held_rows import (
    MONDAY_SP,
    SATURDAY,
    SP,
    WINDOW,
    calls,
    moving_clock,
    sigkill,
    start_waiting_driver,
)

TOKEN = "held-test-token-VALUE"
FIXTURES = Path(__file__).parent / "fixtures"


def run(journal: Path | str, at: datetime, numbers: list[str] | None, *,
        campaign: str | None = None, **rules: Any) -> tuple[CampaignSummary, Counter[str]]:
    """One run on the virtual clock starting at ``at``; (summary, who the server saw)."""
    async def main() -> tuple[CampaignSummary, Counter[str]]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return at + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None, clock=lambda: now().timestamp())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            s = await Campaign(client, numbers, journal=journal, fake=True, now=now,
                               exit_outside_window=True, campaign=campaign, **rules).run()
            return s, calls(server)

    return run_virtual(main(), start=1000.0)


# -- a resume without the rules runs by the recorded ones ------------------------------------


def test_a_resume_without_call_windows_keeps_the_recorded_windows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    journal = tmp_path / "j.db"
    s, seen = run(journal, SATURDAY, SP, call_windows=WINDOW)
    assert (s.stop_reason, s.pending, seen) == ("outside_window", 4, Counter())
    with caplog.at_level(logging.INFO, logger="ryze_async.campaign"):
        s, seen = run(journal, SATURDAY + timedelta(hours=1), SP)
    assert seen == Counter()
    assert (s.stop_reason, s.pending) == ("outside_window", 4)
    lines = [r.getMessage() for r in caplog.records if "recorded rules" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "Mon-Fri 09:00-20:00" in lines[0]
    # When the recorded window opens, each is called once.
    s, seen = run(journal, MONDAY_SP + timedelta(minutes=1), None)
    assert seen == Counter(SP)


def test_a_resume_without_exclude_still_skips_an_opted_out_number_appended_later(
    tmp_path: Path,
) -> None:
    journal, optout = tmp_path / "j.db", tmp_path / "optout.csv"
    optout.write_text(f"number\n{SP[0]}\n")
    s, seen = run(journal, MONDAY_SP, SP[1:3], exclude=[optout])
    assert seen == Counter(SP[1:3])
    # The opt-out file gains a number (read again as today) and the input gains both.
    optout.write_text(f"number\n{SP[0]}\n{SP[3]}\n")
    s, seen = run(journal, MONDAY_SP, SP)
    assert seen == Counter()
    assert s.excluded == 2


def test_a_resume_without_not_after_expires_what_the_recorded_date_expires(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    s, seen = run(journal, SATURDAY, SP, call_windows=WINDOW,
                  not_after=MONDAY_SP + timedelta(hours=1))
    assert (seen, s.pending) == (Counter(), 4)
    s, seen = run(journal, MONDAY_SP + timedelta(hours=2), None, call_windows=WINDOW)
    assert seen == Counter()
    assert s.expired == 4


# -- a different rule is refused; a deliberate change is recorded ------------------------------


def test_a_resume_with_a_different_rule_is_refused_naming_it(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    run(journal, SATURDAY, SP, call_windows=WINDOW)
    with pytest.raises(JournalMismatchError) as refused:
        run(journal, SATURDAY, SP, call_windows=["Mon-Sun 00:00-24:00"])
    text = str(refused.value)
    for part in ("call windows", "Mon-Fri 09:00-20:00", "Mon-Sun 00:00-24:00",
                 "--call-window", "--change-rules"):
        assert part in text
    with pytest.raises(JournalMismatchError, match="not after"):
        run(journal, SATURDAY, SP, not_after=MONDAY_SP)


def test_change_rules_applies_the_new_rule_and_records_the_change(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    run(journal, SATURDAY, SP, call_windows=WINDOW)
    _, seen = run(journal, SATURDAY, SP, call_windows=["Mon-Sun 00:00-24:00"],
                  change_rules=True)
    assert seen == Counter(SP)
    db = sqlite3.connect(journal)
    trail = db.execute("SELECT rule, old, new FROM rule_changes").fetchall()
    db.close()
    assert trail == [("call windows", "Mon-Fri 09:00-20:00", "Mon-Sun 00:00-24:00")]


# -- an old journal (main's code) resumes, its windows kept ------------------------------------


def test_a_journal_of_the_previous_release_resumes_by_its_windows_and_records_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    journal = tmp_path / "old.db"
    shutil.copy(FIXTURES / "journal_0_main_held.db", journal)
    with caplog.at_level(logging.INFO, logger="ryze_async.campaign"):
        s, seen = run(journal, SATURDAY + timedelta(hours=2), None)
    assert seen == Counter()
    assert (s.stop_reason, s.pending) == ("outside_window", 4)
    assert any("before its rules were recorded" in r.getMessage() for r in caplog.records)
    with pytest.raises(JournalMismatchError, match="call windows"):
        run(journal, SATURDAY, None, call_windows=["Mon-Sun 00:00-24:00"])
    s, seen = run(journal, MONDAY_SP + timedelta(minutes=1), None)
    assert seen == Counter(SP)


# -- SIGKILL between the runs -------------------------------------------------------------------


@pytest.mark.infra
async def test_sigkill_then_a_resume_without_windows_calls_nobody_held(
    ryze_server_factory: Callable[..., Any], tmp_path: Path,
) -> None:
    clock = [moving_clock(SATURDAY)]
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: clock[0]().timestamp())
    journal = tmp_path / "j.db"
    proc = await start_waiting_driver(server, str(journal), SP)
    await sigkill(proc)
    clock[0] = moving_clock(SATURDAY + timedelta(hours=3))
    async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                          rate_limit=None) as client:
        s = await Campaign(client, None, journal=journal, fake=True, now=clock[0],
                           exit_outside_window=True).run()
    assert server.requests == []
    assert (s.stop_reason, s.pending) == ("outside_window", 4)


def test_a_retry_is_kept_in_the_trail_each_time_and_not_repeated_by_a_resume(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    run(journal, MONDAY_SP, SP)
    db = sqlite3.connect(journal)
    db.execute("UPDATE numbers SET state = 'unknown'")
    db.commit()
    db.close()
    _, seen = run(journal, MONDAY_SP, SP, retry_unknown=True)
    assert seen == Counter(SP)
    db = sqlite3.connect(journal)
    db.execute("UPDATE numbers SET state = 'unknown'")
    db.commit()
    db.close()
    _, seen = run(journal, MONDAY_SP, SP)  # no retry given: nobody called again
    assert seen == Counter()
    _, seen = run(journal, MONDAY_SP, SP, retry_unknown=True)
    assert seen == Counter(SP)
    db = sqlite3.connect(journal)
    trail = db.execute("SELECT rule, new FROM rule_changes").fetchall()
    db.close()
    assert trail == [("retry", "unknown"), ("retry", "unknown")]


def test_a_resume_without_column_reads_the_recorded_column(tmp_path: Path) -> None:
    journal, numbers = tmp_path / "j.db", tmp_path / "n.csv"
    ny = [f"1212555{i:04d}" for i in range(4)]
    rows = [f"{a},{b}" for a, b in zip(ny, SP, strict=True)]
    numbers.write_text("first,second\n" + "\n".join(rows[:2]) + "\n")
    _, seen = run(journal, MONDAY_SP, numbers, column="second")  # type: ignore[arg-type]
    assert seen == Counter(SP[:2])
    numbers.write_text("first,second\n" + "\n".join(rows) + "\n")
    _, seen = run(journal, MONDAY_SP, numbers)  # type: ignore[arg-type]
    assert seen == Counter(SP[2:])
    with pytest.raises(JournalMismatchError, match="number column"):
        run(journal, MONDAY_SP, numbers, column="first")  # type: ignore[arg-type]


def test_python_api_a_client_with_another_region_is_refused(tmp_path: Path) -> None:
    """The client is the caller's: its region is always given (the CLI alone reads the
    recorded one first), so a client built with another region than the recorded one is
    refused, and accepted with ``change_rules``."""
    journal = tmp_path / "j.db"

    async def main(region: str, **extra: Any) -> int:
        server = FakeRyzeServer(rate_limit=None)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None, default_region=region) as client:
            await Campaign(client, ["11 91234-5678"], journal=journal, fake=True,
                           **extra).run()
            return len(server.requests)

    assert run_virtual(main("BR")) == 1
    with pytest.raises(JournalMismatchError, match=r"default region recorded 'BR', given 'PT'"):
        run_virtual(main("PT"))
    assert run_virtual(main("PT", change_rules=True)) == 0
    assert read_trail(journal) == [("default region", "BR", "PT")]


def read_trail(journal: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(journal)
    try:
        return db.execute("SELECT rule, old, new FROM rule_changes ORDER BY id").fetchall()
    finally:
        db.close()


def test_the_light_read_of_the_rules_reads_only_them_and_writes_nothing(
    tmp_path: Path,
) -> None:
    from ryze_async._campaign.journal import peek_rules

    journal = tmp_path / "j.db"
    assert run_virtual(peek_rules(journal, None)) is None
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty.db"
    empty.touch()
    assert run_virtual(peek_rules(empty, None)) is None
    empty.unlink()
    run(journal, SATURDAY, SP, call_windows=WINDOW, timezone="America/Sao_Paulo")
    before = sorted(p.name for p in tmp_path.iterdir())
    rules = run_virtual(peek_rules(journal, None))
    assert rules is not None
    assert rules.windows == tuple(WINDOW)
    assert rules.timezone == "America/Sao_Paulo"
    assert rules.default_region == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before
