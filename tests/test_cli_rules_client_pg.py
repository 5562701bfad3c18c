"""#15 on a PostgreSQL journal through the CLI, the client's rules: a resume without
``--default-region`` runs by the campaign's recorded region (read from its row, read-only), a
different one exits 2, ``--change-rules`` records the change and ``report --html`` shows it.
The fake server's record is the oracle of who was called."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli
from .test_cli_rules_client import E164, NATIONAL, called, env, listing, one_line

asyncpg = pytest.importorskip("asyncpg")
pytestmark = pytest.mark.infra
ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]


async def test_a_pg_resume_without_default_region_runs_by_the_recorded_one(
    ryze_server_factory: ServerFactory, pg_dsn: str, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(rate_limit=None)
    campaign = f"c-{uuid.uuid4().hex[:10]}"
    base = ["campaign", "--fake", "--journal", pg_dsn, "--campaign", campaign]
    code, _, err = await run_cli([*base, str(listing(tmp_path, NATIONAL[:2])),
                                  "--default-region", "BR"], env(server))
    assert code == 0, err
    numbers = str(listing(tmp_path, NATIONAL))
    code, out, err = await run_cli([*base, numbers, "--dry-run"], env(server))
    assert code == 0, err
    assert "call now:        2" in out, out
    assert "default region BR" in one_line(err)
    code, _, err = await run_cli([*base, numbers, "--default-region", "PT"], env(server))
    assert code == 2, err
    assert "default region recorded 'BR', given 'PT'" in err
    code, _, err = await run_cli([*base, numbers], env(server))
    assert code == 0, err
    assert "default region BR" in one_line(err)
    assert called(server) == E164
    code, _, err = await run_cli([*base, numbers, "--default-region", "PT", "--change-rules"],
                                 env(server))
    assert code == 0, err
    page = tmp_path / "report.html"
    code, _, err = await run_cli(["report", pg_dsn, "--campaign", campaign, "--html",
                                  str(page)], {})
    assert code == 0, err
    html = page.read_text()
    assert "<td>default region</td><td>BR</td><td>PT</td>" in html


async def test_the_light_read_of_a_database_without_the_campaign(pg_dsn: str) -> None:
    from ryze_async._campaign.journal import peek_rules

    assert await peek_rules(pg_dsn, f"absent-{uuid.uuid4().hex[:8]}") is None
