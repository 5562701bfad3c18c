"""#15 through the CLI, the client's rules: a resume without ``--default-region`` /
``--number-check`` / ``--senders`` runs by the recorded ones (read from the journal before the
client is built) and says so in one line; a different value exits 2 naming it; with
``--change-rules`` the change is recorded and ``report --html`` shows it. ``--dry-run`` predicts
with the same rules. The fake server's record is the oracle of who was called."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
#: São Paulo mobiles in national format: numbers only with the region BR.
NATIONAL = [f"11 9{i}123-456{i}" for i in range(4)]
E164 = [f"55119{i}123456{i}" for i in range(4)]
TOKENS = {"inst-a": "tok-AAAA-0123456789abcdef", "inst-b": "tok-BBBB-0123456789abcdef"}


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def env(server: FakeRyzeServer, **extra: str) -> dict[str, str]:
    return {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
            "RYZE_BASE_URL": server.url, **extra}


def listing(tmp_path: Path, numbers: list[str]) -> Path:
    path = tmp_path / "n.csv"
    path.write_text("phone\n" + "\n".join(numbers) + "\n")
    return path


def base(numbers: Path, journal: Path) -> list[str]:
    return ["campaign", str(numbers), "--journal", str(journal), "--fake"]


def called(server: FakeRyzeServer) -> list[str]:
    return sorted(str(r.json["number"]) for r in server.requests)


def one_line(err: str) -> str:
    said = [line for line in err.splitlines() if "resuming with the recorded rules" in line]
    assert len(said) == 1, err
    return said[0]


async def test_a_resume_without_default_region_runs_by_the_recorded_one(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    code, _, err = await run_cli(
        [*base(listing(tmp_path, NATIONAL[:2]), journal), "--default-region", "BR"],
        env(server))
    assert code == 0, err
    assert called(server) == E164[:2]
    numbers = listing(tmp_path, NATIONAL)
    # The dry run predicts the resume: the two new numbers read as Brazilian ones.
    code, out, err = await run_cli([*base(numbers, journal), "--dry-run"], env(server))
    assert code == 0, err
    assert "call now:        2" in out, out
    assert "invalid:         0" in out, out
    assert "default region BR" in one_line(err)
    for extra in ([], ["--dry-run"]):
        code, _, err = await run_cli([*base(numbers, journal), "--default-region", "PT",
                                      *extra], env(server))
        assert code == 2, err
        for part in ("default region", "'BR'", "'PT'", "--default-region", "--change-rules"):
            assert part in err, (part, err)
    assert called(server) == E164[:2]
    code, out, err = await run_cli([*base(numbers, journal), "--json"], env(server))
    assert code == 0, err + out
    assert "default region BR" in one_line(err)
    assert called(server) == E164
    assert json.loads(out.strip().splitlines()[-1])["invalid"] == 0


async def test_the_environment_region_counts_as_given(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    numbers = listing(tmp_path, NATIONAL[:2])
    code, _, err = await run_cli(base(numbers, journal),
                                 env(server, RYZE_DEFAULT_REGION="BR"))
    assert code == 0, err
    code, _, err = await run_cli(base(numbers, journal),
                                 env(server, RYZE_DEFAULT_REGION="PT"))
    assert code == 2, err
    for part in ("RYZE_DEFAULT_REGION", "'BR'", "'PT'"):
        assert part in err, (part, err)
    code, _, err = await run_cli(base(numbers, journal), env(server))
    assert code == 0, err
    assert "default region BR" in one_line(err)
    assert called(server) == E164[:2]


async def test_change_rules_records_a_new_region_and_the_html_report_shows_it(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    numbers = listing(tmp_path, NATIONAL[:1])
    code, _, err = await run_cli([*base(numbers, journal), "--default-region", "BR"],
                                 env(server))
    assert code == 0, err
    code, _, err = await run_cli([*base(numbers, journal), "--default-region", "PT",
                                  "--change-rules"], env(server))
    assert code == 0, err
    page = tmp_path / "report.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(page)], {})
    assert code == 0, err
    html = page.read_text()
    assert 'id="rule-changes"' in html, html
    table = html[html.index('id="rule-changes"'):]
    table = table[:table.index("</table>")]
    assert "<td>default region</td><td>BR</td><td>PT</td>" in table, table
    code, out, _ = await run_cli(["report", str(journal), "--json"], {})
    at = json.loads(out.strip().splitlines()[-1])["rule_changes"][0]["at"]
    assert f"<td>{at}</td>" in table, (at, table)


async def test_the_html_report_says_when_no_rule_was_changed(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    code, _, err = await run_cli(base(listing(tmp_path, E164[:1]), journal), env(server))
    assert code == 0, err
    page = tmp_path / "report.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(page)], {})
    assert code == 0, err
    html = page.read_text()
    assert 'id="no-rule-changes"' in html
    assert 'id="rule-changes"' not in html


async def test_a_resume_without_number_check_runs_by_the_recorded_one(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    numbers = listing(tmp_path, E164[:2])
    code, _, err = await run_cli([*base(numbers, journal), "--number-check", "possible"],
                                 env(server))
    assert code == 0, err
    code, _, err = await run_cli([*base(numbers, journal), "--dry-run"], env(server))
    assert code == 0, err
    assert "number check possible" in one_line(err)
    code, _, err = await run_cli(base(numbers, journal), env(server))
    assert code == 0, err
    assert "number check possible" in one_line(err)
    code, _, err = await run_cli([*base(numbers, journal), "--number-check", "valid"],
                                 env(server))
    assert code == 2, err
    for part in ("number check", "'possible'", "'valid'", "--number-check"):
        assert part in err, (part, err)
    code, _, err = await run_cli([*base(numbers, journal), "--number-check", "valid",
                                  "--change-rules"], env(server))
    assert code == 0, err
    code, out, _ = await run_cli(["report", str(journal)], {})
    assert "number check 'possible' -> 'valid'" in out, out
    assert called(server) == E164[:2]


def journal_bytes(folder: Path) -> bytes:
    """The journal file and its WAL, as stored."""
    return b"".join(p.read_bytes() for p in folder.glob("j.db*"))


def senders_file(tmp_path: Path) -> Path:
    path = tmp_path / "senders.csv"
    path.write_text("instance,token\n" + "".join(f"{k},{v}\n" for k, v in TOKENS.items()))
    path.chmod(0o600)
    return path


async def test_a_resume_without_senders_runs_by_the_recorded_pool(
    ryze_server_factory: ServerFactory, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKENS["inst-a"],
                                       tokens=list(TOKENS.values()), instances=list(TOKENS))
    journal, pool = tmp_path / "j.db", senders_file(tmp_path)
    # Run from another folder: the pool's file is recorded by its absolute path.
    code, _, err = await run_cli([*base(listing(tmp_path, E164[:2]), journal), "--senders",
                                  str(pool)], {"RYZE_BASE_URL": server.url})
    assert code == 0, err
    numbers = listing(tmp_path, E164)
    code, out, err = await run_cli([*base(numbers, journal), "--dry-run"],
                                   {"RYZE_BASE_URL": server.url})
    assert code == 0, err
    assert "call now:        2" in out, out
    assert "2 senders, each" in out, out
    assert "senders inst-a; inst-b" in one_line(err)
    code, out, err = await run_cli(base(numbers, journal), {"RYZE_BASE_URL": server.url})
    assert code == 0, err + out
    assert "senders inst-a; inst-b" in one_line(err)
    assert "2 senders: 'inst-a', 'inst-b'" in out
    assert called(server) == E164
    # Every call through the recorded pool (no RYZE_INSTANCE here: nothing else could call).
    assert {r.instance for r in server.requests} <= set(TOKENS)
    stored = journal_bytes(tmp_path)
    for secret in TOKENS.values():
        assert secret not in out + err
        assert secret.encode() not in stored


async def test_a_pool_campaign_resumed_with_one_instance_is_refused(
    ryze_server_factory: ServerFactory, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKENS["inst-a"],
                                       tokens=list(TOKENS.values()), instances=list(TOKENS))
    journal, pool = tmp_path / "j.db", senders_file(tmp_path)
    numbers = listing(tmp_path, E164[:2])
    code, _, err = await run_cli([*base(numbers, journal), "--senders", str(pool)],
                                 {"RYZE_BASE_URL": server.url})
    assert code == 0, err
    code, _, err = await run_cli([*base(numbers, journal), "--instance", "inst-a", "--token",
                                  TOKENS["inst-a"]], {"RYZE_BASE_URL": server.url})
    assert code == 2, err
    for part in ("senders", "inst-a; inst-b", "--senders"):
        assert part in err, (part, err)
    assert TOKENS["inst-a"] not in err


async def test_a_pool_whose_file_is_gone_is_refused_naming_the_flag(
    ryze_server_factory: ServerFactory, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKENS["inst-a"],
                                       tokens=list(TOKENS.values()), instances=list(TOKENS))
    journal, pool = tmp_path / "j.db", senders_file(tmp_path)
    numbers = listing(tmp_path, E164[:2])
    code, _, err = await run_cli([*base(numbers, journal), "--senders", str(pool)],
                                 {"RYZE_BASE_URL": server.url})
    assert code == 0, err
    pool.unlink()
    code, _, err = await run_cli(base(numbers, journal), {"RYZE_BASE_URL": server.url})
    assert code == 2, err
    assert str(pool) in err, err
    assert "--senders" in err, err
