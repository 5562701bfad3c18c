"""#15 on the PostgreSQL journal: the campaign's rules are recorded once for every worker. A
resume without the windows (after a SIGKILL) calls nobody they hold back; a worker started with
other rules is refused (exit 2 on the CLI) and leaves the others' holds as they are; a change on
purpose is kept and reported. The fake server's record is the oracle."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, JournalMismatchError, RyzeClient
from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli
from .test_held_rows import (
    MONDAY_SP,
    SATURDAY,
    SP,
    TOKEN,
    WINDOW,
    moving_clock,
    sigkill,
    start_waiting_driver,
)

asyncpg = pytest.importorskip("asyncpg")
pytestmark = pytest.mark.infra


@pytest.fixture
def campaign() -> str:
    return f"c-{uuid.uuid4().hex[:10]}"


async def held(dsn: str, campaign: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["number"]: (r["state"], r["not_before"]) for r in await conn.fetch(
            "SELECT number, state, not_before FROM ryze_numbers WHERE campaign = $1",
            campaign)}
    finally:
        await conn.close()


async def test_sigkill_then_a_resume_without_windows_calls_nobody_held(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str,
) -> None:
    clock = [moving_clock(SATURDAY)]
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: clock[0]().timestamp())
    proc = await start_waiting_driver(server, pg_dsn, SP, campaign=campaign)
    await sigkill(proc)
    clock[0] = moving_clock(SATURDAY + timedelta(hours=3))
    async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                          rate_limit=None) as client:
        s = await Campaign(client, None, journal=pg_dsn, campaign=campaign, fake=True,
                           now=clock[0], exit_outside_window=True).run()
    assert server.requests == []
    assert (s.stop_reason, s.pending) == ("outside_window", 4)


async def test_a_second_worker_with_other_rules_is_refused_and_keeps_the_holds(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str, tmp_path: Path,
) -> None:
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: moving_clock(SATURDAY)().timestamp())
    proc = await start_waiting_driver(server, pg_dsn, SP, campaign=campaign)
    try:
        before = await held(pg_dsn, campaign)
        assert set(before.values()) == {("pending", MONDAY_SP)}
        async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                              rate_limit=None) as client:
            with pytest.raises(JournalMismatchError, match="call windows"):
                await Campaign(client, SP, journal=pg_dsn, campaign=campaign, fake=True,
                               call_windows=["Mon-Sun 00:00-24:00"],
                               now=moving_clock(SATURDAY)).run()
        numbers = tmp_path / "n.csv"
        numbers.write_text("number\n" + "\n".join(SP) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
        env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
        code, _, err = await run_cli(
            ["campaign", str(numbers), "--fake", "--journal", pg_dsn, "--campaign", campaign,
             "--call-window", "Mon-Sun 00:00-24:00"], env)
        assert code == 2, err
        assert "call windows" in err
        assert "--change-rules" in err
        assert await held(pg_dsn, campaign) == before
        assert server.requests == []
    finally:
        await sigkill(proc)


async def test_change_rules_on_postgres_is_recorded_and_reported(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str,
) -> None:
    clock = [moving_clock(SATURDAY)]
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: clock[0]().timestamp())

    async def run(**rules: Any) -> Any:
        async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                              rate_limit=None) as client:
            return await Campaign(client, SP, journal=pg_dsn, campaign=campaign, fake=True,
                                  now=clock[0], exit_outside_window=True, **rules).run()

    s = await run(call_windows=WINDOW)
    assert (s.stop_reason, server.requests) == ("outside_window", [])
    s = await run()
    assert (s.stop_reason, server.requests) == ("outside_window", [])
    s = await run(call_windows=["Mon-Sun 00:00-24:00"], change_rules=True)
    assert s.placed == 4
    code, out, err = await run_cli(["report", pg_dsn, "--campaign", campaign, "--json"], {})
    assert code == 0, err
    changes = json.loads(out.strip().splitlines()[-1])["rule_changes"]
    assert [(c["rule"], c["old"], c["new"]) for c in changes] == [
        ("call windows", WINDOW[0], "Mon-Sun 00:00-24:00")]


async def test_a_database_without_recorded_rules_resumes_by_its_holds_and_migrates(
    ryze_server_factory: Callable[..., Any], pg_dsn: str, campaign: str,
) -> None:
    clock = [moving_clock(SATURDAY)]
    server: FakeRyzeServer = await ryze_server_factory(
        token=TOKEN, rate_limit=None, clock=lambda: clock[0]().timestamp())

    async def run(**rules: Any) -> Any:
        async with RyzeClient(token=TOKEN, instance="my-instance", base_url=server.url,
                              rate_limit=None) as client:
            return await Campaign(client, SP, journal=pg_dsn, campaign=campaign, fake=True,
                                  now=clock[0], exit_outside_window=True, **rules).run()

    s = await run(call_windows=WINDOW)
    assert (s.stop_reason, server.requests) == ("outside_window", [])
    # As the previous release left it: no rules column, no trail table.
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("ALTER TABLE ryze_campaigns DROP COLUMN rules; "
                           "DROP TABLE ryze_rule_changes")
    finally:
        await conn.close()
    clock[0] = moving_clock(SATURDAY + timedelta(hours=2))
    s = await run()
    assert (s.stop_reason, server.requests) == ("outside_window", [])
    with pytest.raises(JournalMismatchError, match="call windows"):
        await run(call_windows=["Mon-Sun 00:00-24:00"])
    clock[0] = moving_clock(MONDAY_SP + timedelta(minutes=1))
    s = await run()
    assert s.placed == 4
