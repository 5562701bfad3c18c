"""#10 ``report --html`` and ``report --format jsonl`` on a PostgreSQL journal.

The same campaign (two senders, two requests dropped after the server read them, one answered
500, two invalid entries) runs into a SQLite file and into a PostgreSQL campaign
(``pg_cluster.py``); both stores must then give the same JSON lines and the same report data,
times aside, and the CLI must write both reports from PostgreSQL, owner-only. The HTML one is
checked once in headless Chromium (``report_dom.py``).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import stat
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async._campaign.journal import JournalStore, ReportData, open_journal
from ryze_async.testing import FakeRyzeServer, Fault

from .cli_helpers import run_cli
from .report_dom import CHROMIUM, Dom, chromium

pytest.importorskip("asyncpg")

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
NUMBERS = [f"55119{i:08d}" for i in range(8)]
ENTRIES = [*NUMBERS[:4], "123", *NUMBERS[4:], "not-a-number"]
TOKENS = {"inst-a": "tok-AAAA-0123456789abcdef", "inst-b": "tok-BBBB-0123456789abcdef"}
Target = tuple[str, str | None]  # (journal, campaign)


async def run_campaign(factory: ServerFactory, journal: str, campaign: str | None) -> None:
    server = await factory(rate_limit=None, token=TOKENS["inst-a"],
                           tokens=list(TOKENS.values()), instances=list(TOKENS))
    server.fail_next(Fault.DROP_AFTER_READ, times=2)
    server.fail_next(Fault.SERVER_ERROR, times=1)
    async with RyzeClient(TOKENS["inst-a"], "inst-a", base_url=server.url,
                          rate_limit=None) as client:
        # One at a time: both runs meet the faults on the same numbers, through the same sender.
        await Campaign(client, ENTRIES, journal=journal, campaign=campaign, fake=True,
                       concurrency=1, senders=TOKENS).run()
    assert len(server.requests) == len(NUMBERS)


@pytest.fixture
async def both(ryze_server_factory: ServerFactory, pg_dsn: str,
               tmp_path: Path) -> dict[str, Target]:
    """The same campaign in each store: {"sqlite": (file, None), "pg": (dsn, campaign)}."""
    targets: dict[str, Target] = {"sqlite": (str(tmp_path / "j.db"), None),
                                  "pg": (pg_dsn, f"r-{uuid.uuid4().hex[:10]}")}
    for journal, campaign in targets.values():
        await run_campaign(ryze_server_factory, journal, campaign)
    return targets


@pytest.fixture
async def opened(both: dict[str, Target]) -> AsyncIterator[dict[str, JournalStore]]:
    stores = {name: await open_journal(journal, campaign=campaign, read_only=True)
              for name, (journal, campaign) in both.items()}
    yield stores
    for store in stores.values():
        await store.close()


def timeless(line: str) -> dict[str, Any]:
    """A JSON line without what differs between two runs: times, the fake server's port and
    the call ids it makes up (only whether there is one)."""
    item = json.loads(line)
    item["last_attempt_utc"] = item["last_attempt_utc"] is not None
    item["call_id"] = item["call_id"] is not None
    item["error"] = item["error"] and re.sub(r"127\.0\.0\.1:\d+", "SERVER", item["error"])
    return item


def shape(data: ReportData) -> tuple[Counter[tuple[str, str]], list[Any], bool, Any]:
    """The report data without its times: numbers by (sender, state), the problems, the
    quota."""
    by = Counter[tuple[str, str]]()
    for m in data.minutes:
        by[m.sender, m.state] += m.n
    problems = [replace(p, at=p.at is not None,
                        reason=re.sub(r"127\.0\.0\.1:\d+", "SERVER", p.reason))
                for p in data.problems]
    return by, problems, data.has_senders, data.quota


async def test_both_stores_give_the_same_json_lines_and_report_data(
    opened: dict[str, JournalStore]
) -> None:
    lines: dict[str, list[str]] = {}
    for name, store in opened.items():
        out = io.StringIO()
        assert await store.export_jsonl(out) == len(ENTRIES)
        lines[name] = out.getvalue().splitlines()
    assert [timeless(x) for x in lines["pg"]] == [timeless(x) for x in lines["sqlite"]]
    assert {json.loads(x)["sender"] for x in lines["pg"]} == {*TOKENS, None}  # None: invalid
    sqlite = shape(await opened["sqlite"].report_data())
    pg = shape(await opened["pg"].report_data())
    assert pg == sqlite
    by_state = Counter[str]()
    for (_, state), n in pg[0].items():
        by_state[state] += n
    assert by_state == {"placed": 5, "unknown": 2, "failed": 1}
    # One 500; the two invalid entries are no failed calls (#15), in either store.
    assert [p.state for p in pg[1]].count("failed") == 1
    assert [p.state for p in pg[1]].count("invalid") == 2
    assert pg[3] is None  # no quota: none recorded, none drawn
    assert all(p.reason for p in pg[1])


async def test_cli_report_jsonl_from_postgresql(
    both: dict[str, Target], opened: dict[str, JournalStore], tmp_path: Path
) -> None:
    dsn, campaign = both["pg"]
    assert campaign is not None
    code, out, err = await run_cli(["report", dsn, "--campaign", campaign, "--format",
                                    "jsonl"], {})
    assert code == 0, err
    expected = io.StringIO()
    await opened["pg"].export_jsonl(expected)
    assert out.splitlines() == expected.getvalue().splitlines()
    assert "placed" in err  # the summary went to stderr
    target = tmp_path / "pg.jsonl"
    code, _, err = await run_cli(["report", dsn, "--campaign", campaign, "--format", "jsonl",
                                  "--out", str(target)], {})
    assert code == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # it holds phone numbers
    assert target.read_text() == expected.getvalue()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                    "chromium); .ci/run installs it")
async def test_cli_report_html_from_postgresql_renders_in_chromium(
    both: dict[str, Target], opened: dict[str, JournalStore], tmp_path: Path
) -> None:
    dsn, campaign = both["pg"]
    assert campaign is not None
    page = tmp_path / "pg.html"
    code, _, err = await run_cli(["report", dsn, "--campaign", campaign, "--html", str(page)],
                                 {})
    assert code == 0, err
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    shot = tmp_path / "pg.png"
    dom = await asyncio.to_thread(chromium, page, tmp_path / "p1", "--dump-dom")
    png = await asyncio.to_thread(chromium, page, tmp_path / "p2", f"--screenshot={shot}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert png.returncode == 0, png.stderr[-2000:]
    parsed = Dom()
    parsed.feed(dom.stdout.decode())
    counts = await opened["pg"].counts()
    data = await opened["pg"].report_data()
    assert {k: parsed.counts[k] for k in ("total", "placed", "failed", "unknown", "invalid")} == {
        "total": counts.total, "placed": counts.placed, "failed": counts.failed,
        "unknown": counts.unknown, "invalid": counts.invalid}
    assert (counts.total, counts.placed, counts.invalid) == (10, 5, 2)
    assert [(r[1], r[2]) for r in parsed.rows] == [(p.number, p.state) for p in data.problems]
    assert {r[-1] for r in parsed.rows} == {"inst-a", "inst-b", ""}  # "": never sent
    # The two senders each get their own chart, beside the campaign's.
    assert {"per-minute", "per-minute-0", "per-minute-1", "over-time"} <= set(parsed.svgs)
    assert parsed.bars >= 3
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SATURDAY = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


async def test_both_stores_report_the_numbers_waiting_for_a_window_alike(
    ryze_server_factory: ServerFactory, pg_dsn: str, tmp_path: Path,
) -> None:
    """Stopped outside the windows (#15): the counts, the CSV and the JSON lines of both stores
    say which numbers wait, and until when; both recorded the campaign's quota."""
    server = await ryze_server_factory(rate_limit=None)
    targets: dict[str, Target] = {"sqlite": (str(tmp_path / "w.db"), None),
                                  "pg": (pg_dsn, f"w-{uuid.uuid4().hex[:10]}")}
    csvs, held, quota = {}, {}, {}
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=7, rate_period=30.0) as client:
        for name, (journal, campaign) in targets.items():
            await Campaign(client, [*NUMBERS[:2], "123"], journal=journal, campaign=campaign,
                           fake=True, call_windows=["Mon-Fri 09:00-20:00"],
                           exit_outside_window=True, now=lambda: SATURDAY).run()
            store = await open_journal(journal, campaign=campaign, read_only=True)
            try:
                held[name] = (await store.counts()).held
                quota[name] = (await store.report_data()).quota
                out = io.StringIO()
                await store.export_csv(out)
                csvs[name] = out.getvalue()
            finally:
                await store.close()
    assert server.requests == []
    assert held == {"sqlite": 2, "pg": 2}
    assert quota == {"sqlite": (7, 30.0), "pg": (7, 30.0)}
    assert csvs["pg"] == csvs["sqlite"]
    assert csvs["pg"].count(",pending,") == 2
    assert csvs["pg"].count("2026-03-09T12:00:00+00:00") == 2
    assert ",invalid," in csvs["pg"]
