"""#10 through the CLI and on PostgreSQL: --dry-run predicts the real run and calls nobody
(no journal created), --exclude, --not-after, --call-window with --exit-outside-window (4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
NUMBERS = [f"55119{i:08d}" for i in range(8)]


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def files(tmp_path: Path) -> tuple[Path, Path]:
    numbers = tmp_path / "n.csv"
    # 8 numbers, one repeated, two invalid lines.
    numbers.write_text("phone\n" + "\n".join([*NUMBERS, NUMBERS[0], "12", "abc"]) + "\n")
    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n+{NUMBERS[2]}\n{NUMBERS[5]}\n")
    return numbers, optout


def env(server: FakeRyzeServer) -> dict[str, str]:
    return {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
            "RYZE_BASE_URL": server.url}


async def test_dry_run_calls_nobody_and_predicts_the_real_run(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, optout = files(tmp_path)
    journal = tmp_path / "j.db"
    args = ["campaign", str(numbers), "--journal", str(journal), "--fake",
            "--exclude", str(optout)]
    code, out, err = await run_cli([*args, "--dry-run"], env(server))
    assert code == 0, err
    assert server.requests == []
    assert not journal.exists()
    assert "call now:        6" in out
    assert "excluded:        2" in out
    assert "invalid:         2" in out
    assert "duplicates:      1" in out
    assert "invalid line 11: '12'" in out

    code, out, err = await run_cli([*args, "--json"], env(server))
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["placed"], summary["excluded"], summary["invalid"],
            summary["duplicates"], summary["total"]) == (6, 2, 2, 1, 11)
    assert summary["skipped"] == summary["duplicates"] + summary["invalid"] + \
        summary["removed"] + summary["excluded"] + summary["expired"]
    called = {r.json["number"] for r in server.requests}
    assert called == set(NUMBERS) - {NUMBERS[2], NUMBERS[5]}
    # Exported with the reason.
    export = tmp_path / "out.csv"
    code, _, err = await run_cli(["report", str(journal), "--csv", str(export)], {})
    assert code == 0, err
    text = export.read_text()
    assert text.count("excluded: on an opt-out list") == 2


async def test_not_after_in_the_past_expires_everyone(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, _ = files(tmp_path)
    code, out, err = await run_cli(
        ["campaign", str(numbers), "--journal", str(tmp_path / "j.db"), "--fake", "--json",
         "--not-after", "2020-01-01T00:00:00Z"], env(server))
    assert code == 1, err  # numbers were not placed (expired): not a clean run
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["expired"], summary["placed"]) == (8, 0)
    assert server.requests == []


async def test_exit_outside_window_exits_4(server: FakeRyzeServer, tmp_path: Path) -> None:
    numbers, _ = files(tmp_path)
    # A window that is never now: one minute, 12 hours from now, every day.
    later = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("America/Sao_Paulo"))
    start = (later + timedelta(hours=12)).replace(second=0, microsecond=0)
    window = f"{start:%H:%M}-{start + timedelta(minutes=1):%H:%M}"
    if start.hour == 23 and start.minute == 59:
        pytest.skip("a window over midnight")
    code, out, err = await run_cli(
        ["campaign", str(numbers), "--journal", str(tmp_path / "j.db"), "--fake", "--json",
         "--call-window", window, "--exit-outside-window"], env(server))
    assert code == 4, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["stop_reason"], summary["pending"]) == ("outside_window", 8)
    assert server.requests == []


async def test_bad_window_is_a_usage_error(server: FakeRyzeServer, tmp_path: Path) -> None:
    numbers, _ = files(tmp_path)
    code, _, err = await run_cli(
        ["campaign", str(numbers), "--journal", str(tmp_path / "j.db"), "--fake",
         "--call-window", "Funday 09:00-10:00"], env(server))
    assert code == 2
    assert "Funday" in err
    assert not (tmp_path / "j.db").exists()


async def test_postgres_journal_counts_excluded_and_expired(
    pg_dsn: str, server: FakeRyzeServer, tmp_path: Path,
) -> None:
    _, optout = files(tmp_path)
    name = f"c-{uuid.uuid4().hex[:10]}"
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        s = await Campaign(client, NUMBERS, journal=pg_dsn, campaign=name, fake=True,
                           exclude=[optout]).run()
    assert (s.placed, s.excluded, s.expired) == (6, 2, 0)
    assert s.skipped == s.duplicates + s.invalid + s.removed + s.excluded + s.expired
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        s = await Campaign(client, [*NUMBERS, "5511988887777"], journal=pg_dsn,
                           campaign=name + "x", fake=True,
                           not_after=datetime(2020, 1, 1, tzinfo=UTC)).run()
    assert (s.placed, s.expired) == (0, 9)
    assert s.total == s.placed + s.failed + s.unknown + s.pending + s.in_flight + s.skipped
    assert len(server.requests) == 6


async def test_postgres_windows_hold_and_exit_outside_window(
    pg_dsn: str, server: FakeRyzeServer,
) -> None:
    """Monday 12:30 UTC on an injected clock: São Paulo open, New York not; the held New York
    row is left pending in the shared journal (not claimed away, not called)."""
    start = datetime(2026, 3, 9, 12, 30, tzinfo=UTC)
    name = f"c-{uuid.uuid4().hex[:10]}"
    ny, sp = "12125550100", "5511987654321"
    options: dict[str, object] = {
        "journal": pg_dsn, "campaign": name, "fake": True, "now": lambda: start,
        "call_windows": ["Mon-Fri 09:00-20:00"], "exit_outside_window": True}
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        s = await Campaign(client, [ny, sp], **options).run()  # type: ignore[arg-type]
        assert (s.stop_reason, s.placed, s.pending) == ("outside_window", 1, 1)
        assert [r.json["number"] for r in server.requests] == [sp]
        options["now"] = lambda: start + timedelta(minutes=31)  # 09:01 in New York
        s = await Campaign(client, [ny, sp], **options).run()  # type: ignore[arg-type]
    assert (s.stop_reason, s.placed, s.pending) == ("completed", 2, 0)
    assert sorted(r.json["number"] for r in server.requests) == sorted([sp, ny])
