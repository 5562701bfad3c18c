"""Numbers outside their calling window are held in the journal, not in memory (#10).

A held row stays ``pending`` with the time its window next opens (``not_before``); the read of
pending rows skips it until then; the gate keeps only the earliest time. So memory does not
grow with the number of held rows, a held row survives a kill without being judged again, and
an old journal (no ``not_before`` column) opens and migrates. The server's own record is the
oracle of who was called, and when (on the clock the campaign was given).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, CampaignSummary, RyzeClient
from ryze_async._campaign.rules import Rules
from ryze_async.testing import FakeRyzeServer, run_virtual

TOKEN = "held-test-token-VALUE"
PIPE = asyncio.subprocess.PIPE
WINDOW = ["Mon-Fri 09:00-20:00"]
SATURDAY = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # every window below is closed
MONDAY_SP = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # 09:00 in São Paulo (no DST)
MONDAY_NY = datetime(2026, 3, 9, 13, 0, tzinfo=UTC)  # 09:00 EDT in New York
SP = [f"55119{i:08d}" for i in range(4)]
NY = [f"1212555{i:04d}" for i in range(4)]

#: A campaign whose wall clock starts at ``start`` and moves in real time; it waits for the
#: window (Saturday: until Monday) until it is killed.
DRIVER = """
import asyncio, json, sys, time
from datetime import datetime, timedelta
from ryze_async import Campaign, RyzeClient

async def main() -> None:
    o = json.loads(sys.argv[1])
    start, t0 = datetime.fromisoformat(o["start"]), time.monotonic()
    extra = {"campaign": o["campaign"]} if o.get("campaign") else {}
    async with RyzeClient(token=o["token"], instance="my-instance", base_url=o["url"],
                          rate_limit=None) as client:
        await Campaign(client, o["numbers"], journal=o["journal"], fake=True, concurrency=2,
                       call_windows=o["windows"], **extra,
                       now=lambda: start + timedelta(seconds=time.monotonic() - t0)).run()

asyncio.run(main())
"""


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    clean["RYZE_TOKEN"] = TOKEN
    return clean


def moving_clock(start: datetime) -> Callable[[], datetime]:
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


async def start_waiting_driver(server: FakeRyzeServer, journal: str, numbers: list[str],
                               campaign: str | None = None) -> asyncio.subprocess.Process:
    """The driver on Saturday's clock, once it said it waits for Monday's window."""
    options = {"token": TOKEN, "url": server.url, "numbers": numbers, "journal": journal,
               "campaign": campaign, "start": SATURDAY.isoformat(), "windows": WINDOW}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DRIVER, json.dumps(options), env=env(), stdout=PIPE,
        stderr=PIPE)
    assert proc.stderr is not None
    seen = b""
    try:
        while b"nothing can be called until" not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, f"the driver ended: {seen.decode()}"
            seen += line
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    assert b"2026-03-09T12:00" in seen
    return proc


async def sigkill(proc: asyncio.subprocess.Process) -> None:
    proc.kill()
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL


def calls(server: FakeRyzeServer) -> Counter[str]:
    return Counter(r.json["number"] for r in server.requests if r.route == "fake")


class CountingRules:
    """Counts the verdicts asked of the rules (a held row must not be judged again)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.judged: list[str] = []
        real = Rules.verdict

        async def verdict(rules: Rules, number: str, *, sending: bool = False) -> Any:
            if not sending:  # judged at a claim; the first byte's check is another matter
                self.judged.append(number)
            return await real(rules, number, sending=sending)

        monkeypatch.setattr(Rules, "verdict", verdict)


# -- (1) memory -------------------------------------------------------------------------------


def _peak_while_holding(tmp_path: Path, count: int) -> tuple[int, CampaignSummary]:
    """Peak of Python allocations while a campaign holds ``count`` numbers (all outside
    their window) and then stops outside the window."""
    numbers = tmp_path / f"n{count}.csv"
    numbers.write_text("number\n" + "\n".join(f"55119{i:08d}" for i in range(count)) + "\n")

    async def main() -> tuple[int, CampaignSummary]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        server = FakeRyzeServer(rate_limit=None)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            campaign = Campaign(client, numbers, journal=tmp_path / f"j{count}.db", fake=True,
                                concurrency=4, call_windows=WINDOW, exit_outside_window=True,
                                now=lambda: SATURDAY + timedelta(seconds=loop.time() - t0))
            tracemalloc.start()
            try:
                summary = await campaign.run()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert server.requests == []
        return peak, summary

    return run_virtual(main(), start=1000.0)


# The three runs below, in a fresh interpreter: its peaks owe nothing to what earlier tests in
# the same process imported or cached.
_MEASURE = """
import json, pathlib, sys
from tests.test_held_rows import _peak_while_holding
runs = [_peak_while_holding(pathlib.Path(sys.argv[1]), int(n)) for n in sys.argv[2:]]
print(json.dumps([[peak, s.stop_reason, s.pending] for peak, s in runs]))
"""


@pytest.mark.infra  # a fresh interpreter, and 25,000 rows: about a minute on 2 busy cores
@pytest.mark.timeout(300)  # under coverage's tracing (CI) it may take twice that
def test_memory_does_not_grow_with_the_number_of_held_rows(tmp_path: Path) -> None:
    # A first run pays for what is done once (imports, caches of the library's own data).
    # 5,000: above the 4,096 entries of the number caches (time zones, normalisation), so
    # both runs have them full and what differs is what grows with the held rows.
    measured = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path), "200", "5000", "20000"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True,
        timeout=280,
    )
    _, (small, *s_small), (large, *s_large) = json.loads(measured.stdout)
    assert s_small == ["outside_window", 5_000]
    assert s_large == ["outside_window", 20_000]
    # Held in memory, 15,000 more rows cost megabytes (about 300 bytes each); held in the
    # journal, nothing that grows with them.
    assert large - small < 500_000, (small, large)
    assert large < 1.25 * small, (small, large)


# -- old journals -----------------------------------------------------------------------------

#: The journal schema of the release before ``not_before`` (schema 3), verbatim.
SCHEMA_3 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE numbers (
    id          INTEGER PRIMARY KEY,
    number      TEXT NOT NULL,
    key         TEXT,
    valid       INTEGER NOT NULL,
    state       TEXT NOT NULL
                CHECK (state IN ('pending','sending','placed','failed','unknown','skipped')),
    line        INTEGER,
    call_id     TEXT,
    http_status INTEGER,
    error       TEXT,
    attempt_at  REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    seen        INTEGER NOT NULL DEFAULT 0,
    sender      TEXT
);
CREATE UNIQUE INDEX numbers_key ON numbers(key);
CREATE INDEX numbers_pending ON numbers(id) WHERE state = 'pending';
INSERT INTO meta(key, value) VALUES ('schema', '3');
"""


def test_a_journal_of_the_previous_schema_opens_migrates_and_holds(tmp_path: Path) -> None:
    journal = tmp_path / "old.db"
    db = sqlite3.connect(journal)
    db.executescript(SCHEMA_3)
    rows = [(i + 1, n, n, 1, "pending", i + 2) for i, n in enumerate([*SP, *NY])]
    db.executemany("INSERT INTO numbers(id, number, key, valid, state, line) "
                   "VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.execute("INSERT INTO meta VALUES ('kind', 'fake'), ('media', '')")
    db.commit()
    db.close()
    server_clock: list[datetime] = []

    async def main(start: datetime) -> CampaignSummary:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return start + timedelta(seconds=loop.time() - t0)

        server_clock.append(start)
        server = FakeRyzeServer(rate_limit=None, clock=lambda: now().timestamp())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            s = await Campaign(client, None, journal=journal, fake=True, now=now,
                               call_windows=WINDOW, exit_outside_window=True).run()
            s_calls.update(calls(server))
        return s

    s_calls: Counter[str] = Counter()
    s = run_virtual(main(SATURDAY), start=1000.0)
    assert (s.stop_reason, s.pending, s.placed) == ("outside_window", 8, 0)
    db = sqlite3.connect(journal)
    held = dict(db.execute("SELECT number, not_before FROM numbers"))
    db.close()
    assert held == {**dict.fromkeys(SP, MONDAY_SP.timestamp()),
                    **dict.fromkeys(NY, MONDAY_NY.timestamp())}
    s = run_virtual(main(MONDAY_NY + timedelta(minutes=5)), start=1000.0)
    assert (s.stop_reason, s.placed, s.pending) == ("completed", 8, 0)
    assert s_calls == Counter([*SP, *NY])


# -- (3) restart after SIGKILL while rows are held ---------------------------------------------


@pytest.mark.infra
async def test_sigkill_while_rows_are_held_then_restart_calls_each_once_in_its_window(
    ryze_server_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [moving_clock(SATURDAY)]
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: clock[0]().timestamp())
    journal = tmp_path / "j.db"
    proc = await start_waiting_driver(server, str(journal), [*SP, *NY])
    await sigkill(proc)
    assert server.requests == []
    db = sqlite3.connect(journal)
    held = dict(db.execute("SELECT number, not_before FROM numbers WHERE state = 'pending'"))
    db.close()
    # The hold is durable: each row knows when its window opens.
    assert held == {**dict.fromkeys(SP, MONDAY_SP.timestamp()),
                    **dict.fromkeys(NY, MONDAY_NY.timestamp())}

    judged = CountingRules(monkeypatch)

    async def rerun(at: datetime) -> CampaignSummary:
        clock[0] = moving_clock(at)
        async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                              rate_limit=None) as client:
            return await Campaign(client, None, journal=journal, fake=True, now=clock[0],
                                  call_windows=WINDOW, exit_outside_window=True).run()

    # Still Saturday: nothing is read and judged again; it says until when, and stops.
    s = await rerun(SATURDAY + timedelta(hours=1))
    assert (s.stop_reason, s.pending) == ("outside_window", 8)
    assert "2026-03-09T12:00" in s.message
    assert judged.judged == []
    # Monday 12:05 UTC: São Paulo's window is open, New York's not yet (not judged either).
    s = await rerun(MONDAY_SP + timedelta(minutes=5))
    assert (s.stop_reason, s.placed, s.pending) == ("outside_window", 4, 4)
    assert sorted(judged.judged) == sorted(SP)
    assert calls(server) == Counter(SP)
    s = await rerun(MONDAY_NY + timedelta(minutes=5))
    assert (s.stop_reason, s.placed, s.pending) == ("completed", 8, 0)
    assert calls(server) == Counter([*SP, *NY])  # each exactly once
    for r in server.requests:
        at = datetime.fromtimestamp(r.received_at, UTC)
        assert at >= (MONDAY_SP if r.json["number"] in SP else MONDAY_NY), r.json["number"]


# -- the rules still apply when a held row comes due ------------------------------------------


def test_an_opt_out_edited_while_rows_are_held_applies_when_their_window_opens(
    tmp_path: Path,
) -> None:
    optout = tmp_path / "optout.csv"
    optout.write_text("number\n5511988887777\n")  # somebody else

    async def main() -> tuple[CampaignSummary, Counter[str]]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return SATURDAY + timedelta(seconds=loop.time() - t0)

        # Sunday, while both wait for Monday: one of them opts out.
        loop.call_later(86_400, optout.write_text,
                       f"number\n5511988887777\n{SP[1]}\n")
        server = FakeRyzeServer(rate_limit=None, clock=lambda: now().timestamp())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            s = await Campaign(client, SP[:2], journal=tmp_path / "j.db", fake=True, now=now,
                               call_windows=WINDOW, exclude=[optout]).run()
            at = {r.json["number"]: r.received_at for r in server.requests}
        assert at[SP[0]] >= MONDAY_SP.timestamp()
        return s, calls(server)

    s, called = run_virtual(main(), start=1000.0)
    assert (s.placed, s.excluded, s.pending) == (1, 1, 0)
    assert called == Counter([SP[0]])


def test_a_row_held_past_not_after_ends_expired_after_a_restart(tmp_path: Path) -> None:
    """Held on Saturday until Monday 12:00 (before the 12:30 deadline); the campaign is only
    run again at 12:45: the row ends expired, never called late."""
    journal = tmp_path / "j.db"
    deadline = datetime(2026, 3, 9, 12, 30, tzinfo=UTC)

    async def main(start: datetime) -> tuple[CampaignSummary, Counter[str]]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        server = FakeRyzeServer(rate_limit=None)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            s = await Campaign(client, [SP[0], NY[0]], journal=journal, fake=True,
                               now=lambda: start + timedelta(seconds=loop.time() - t0),
                               call_windows=WINDOW, not_after=deadline,
                               exit_outside_window=True).run()
        return s, calls(server)

    s, called = run_virtual(main(SATURDAY), start=1000.0)
    # New York opens at 13:00, after the deadline: expired at once; São Paulo is held.
    assert (s.stop_reason, s.expired, s.pending, called) == ("outside_window", 1, 1, Counter())
    s, called = run_virtual(main(deadline + timedelta(minutes=15)), start=1000.0)
    assert (s.stop_reason, s.expired, s.pending, s.placed) == ("completed", 2, 0, 0)
    assert called == Counter()
