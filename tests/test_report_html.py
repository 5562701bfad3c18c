"""``report --html`` in a real headless Chromium, and ``report --format jsonl``.

The page is rendered by Debian's ``chromium`` (started here, no network, a throw-away profile):
it must render, hold its charts, and show the journal's own counts and failed/unknown rows.
Skipped with the reason when chromium is not installed (CI installs it: see ``.ci/run``).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async._campaign.journal import Journal
from ryze_async.testing import FakeRyzeServer, Fault

from .cli_helpers import run_cli
from .report_dom import CHROMIUM, Dom, chromium

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
NUMBERS = [f"55119{i:08d}" for i in range(8)]


@pytest.fixture
async def journal(ryze_server_factory: ServerFactory, tmp_path: Path) -> Path:
    """8 numbers and 2 invalid entries; the server drops 2 requests after reading them."""
    server = await ryze_server_factory(rate_limit=None)
    server.fail_next(Fault.DROP_AFTER_READ, times=2)
    path = tmp_path / "j.db"
    async with RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                          rate_limit=None) as client:
        await Campaign(client, [*NUMBERS, "123", "not-a-number"], journal=path, fake=True,
                       concurrency=1).run()
    return path


async def _truth(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    async with await Journal.open(path, create=False, read_only=True) as j:
        c = await j.counts()
        data = await j.report_data()
    counts = {"total": c.total, "placed": c.placed, "failed": c.failed, "unknown": c.unknown,
              "invalid": c.invalid}
    return counts, [(p.number, p.state) for p in data.problems]


@pytest.mark.infra
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                    "chromium); .ci/run installs it")
async def test_html_report_renders_in_chromium_with_the_journals_counts(
    journal: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(page)], {})
    assert code == 0, err
    assert stat.S_IMODE(page.stat().st_mode) == 0o600  # it holds phone numbers
    html = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from outside
    assert "<script" not in html
    shot = tmp_path / "report.png"
    # One browser at a time: two at once on a loaded 2-core machine can starve each other.
    dom = await asyncio.to_thread(chromium, page, tmp_path / "p1", "--dump-dom")
    png = await asyncio.to_thread(chromium, page, tmp_path / "p2", f"--screenshot={shot}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert png.returncode == 0, png.stderr[-2000:]
    parsed = Dom()
    parsed.feed(dom.stdout.decode())
    counts, problems = await _truth(journal)
    assert (counts["invalid"], counts["unknown"], len(problems)) == (2, 2, 4)  # as planned
    assert {k: parsed.counts[k] for k in counts} == counts
    assert [(r[1], r[2]) for r in parsed.rows] == problems
    assert all(r[3] for r in parsed.rows)  # every row says why
    assert {"per-minute", "over-time"} <= set(parsed.svgs)
    assert parsed.bars >= 1
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_report_jsonl_one_object_per_number(journal: Path, tmp_path: Path) -> None:
    code, out, err = await run_cli(["report", str(journal), "--format", "jsonl"], {})
    assert code == 0, err
    items = [json.loads(line) for line in out.splitlines()]
    assert [i["number"] for i in items if i["state"] == "placed"] == [
        n for n in NUMBERS if n in {i["number"] for i in items if i["state"] == "placed"}]
    assert len(items) == 10
    assert "placed" in err
    target = tmp_path / "n.jsonl"
    code, out, err = await run_cli(["report", str(journal), "--format", "jsonl", "--out",
                                    str(target)], {})
    assert code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text().splitlines() == [json.dumps(i, ensure_ascii=False)
                                               for i in items]


async def test_report_out_without_jsonl_is_a_usage_error(journal: Path, tmp_path: Path) -> None:
    code, _, err = await run_cli(["report", str(journal), "--out", str(tmp_path / "x")], {})
    assert code == 2
    assert "--format jsonl" in err


async def test_senders_get_their_own_chart_and_column(journal: Path, tmp_path: Path) -> None:
    """A journal with a ``sender`` column (the sender pool's): one chart per sender, and the
    sender in the failed/unknown table and in every JSON line."""
    db = sqlite3.connect(journal)
    with db:  # the pool's column exists since schema 3; set it as a pool run would
        db.execute("UPDATE numbers SET sender = CASE WHEN id % 2 THEN 'inst-a' ELSE 'inst-b' END")
    db.close()
    page = tmp_path / "r.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(page)], {})
    assert code == 0, err
    parsed = Dom()
    parsed.feed(page.read_text())
    assert {"per-minute", "per-minute-0", "per-minute-1", "over-time"} <= set(parsed.svgs)
    assert {r[-1] for r in parsed.rows} <= {"inst-a", "inst-b"}
    code, out, _ = await run_cli(["report", str(journal), "--format", "jsonl"], {})
    assert {json.loads(line)["sender"] for line in out.splitlines()} == {"inst-a", "inst-b"}


async def test_exports_over_a_readable_file_become_owner_only(
    journal: Path, tmp_path: Path
) -> None:
    """A file that already exists, readable by others, is made owner-only before a number is
    written to it (``O_CREAT``'s mode applies only to a new file)."""
    targets = {"--csv": tmp_path / "old.csv", "--out": tmp_path / "old.jsonl",
               "--html": tmp_path / "old.html"}
    for path in targets.values():
        path.write_text("old\n")
        path.chmod(0o644)
    for option, path in targets.items():
        extra = ["--format", "jsonl"] if option == "--out" else []
        code, _, err = await run_cli(["report", str(journal), option, str(path), *extra], {})
        assert code == 0, err
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, option
        assert NUMBERS[0] in path.read_text()
