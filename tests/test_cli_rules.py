"""#15 through the CLI: a resume without ``--not-before`` / ``--exclude`` runs by the recorded
rules and says so in one line; a different rule exits 2 naming it, its recorded value, the
given one and ``--change-rules``; ``--change-rules`` applies and records the change, which
``report`` shows (text and ``--json``); ``--dry-run`` predicts with the same rules. The fake
server's record is the oracle of who was called."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
NUMBERS = [f"55119{i:08d}" for i in range(4)]
LATER = "2099-01-04T09:00:00+00:00"


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def env(server: FakeRyzeServer) -> dict[str, str]:
    return {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
            "RYZE_BASE_URL": server.url}


def numbers_file(tmp_path: Path, numbers: list[str]) -> Path:
    path = tmp_path / "n.csv"
    path.write_text("phone\n" + "\n".join(numbers) + "\n")
    return path


def base(numbers: Path, journal: Path) -> list[str]:
    return ["campaign", str(numbers), "--journal", str(journal), "--fake",
            "--exit-outside-window"]


async def test_a_resume_without_not_before_keeps_it_and_says_so(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, journal = numbers_file(tmp_path, NUMBERS), tmp_path / "j.db"
    code, _, err = await run_cli([*base(numbers, journal), "--not-before", LATER], env(server))
    assert code == 4, err
    code, out, err = await run_cli(base(numbers, journal), env(server))
    assert code == 4, err + out
    assert server.requests == []
    said = [line for line in err.splitlines() if "resuming with the recorded rules" in line]
    assert len(said) == 1, err
    assert "not before 2099-01-04T09:00:00+00:00" in said[0]
    # The dry run predicts the same: nobody now.
    code, out, err = await run_cli([*base(numbers, journal), "--dry-run"], env(server))
    assert code == 0, err
    assert "call now:        0" in out
    assert server.requests == []


async def test_a_resume_without_exclude_skips_an_opt_out_added_later(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    journal, optout = tmp_path / "j.db", tmp_path / "optout.csv"
    optout.write_text(f"number\n{NUMBERS[0]}\n")
    numbers = numbers_file(tmp_path, NUMBERS[:2])
    code, _, err = await run_cli([*base(numbers, journal), "--exclude", str(optout)],
                                 env(server))
    assert code == 0, err
    assert [r.json["number"] for r in server.requests] == [NUMBERS[1]]
    optout.write_text(f"number\n{NUMBERS[0]}\n{NUMBERS[3]}\n")
    numbers = numbers_file(tmp_path, NUMBERS)
    code, out, err = await run_cli([*base(numbers, journal), "--json"], env(server))
    assert code == 0, err
    assert sorted(r.json["number"] for r in server.requests) == sorted(NUMBERS[1:3])
    assert json.loads(out.strip().splitlines()[-1])["excluded"] == 2


async def test_a_different_rule_exits_2_and_change_rules_records_it_for_the_report(
    server: FakeRyzeServer, tmp_path: Path,
) -> None:
    numbers, journal = numbers_file(tmp_path, NUMBERS), tmp_path / "j.db"
    code, _, err = await run_cli([*base(numbers, journal), "--not-before", LATER], env(server))
    assert code == 4, err
    other = "2098-01-05T09:00:00+00:00"
    for extra in ([], ["--dry-run"]):
        code, _, err = await run_cli([*base(numbers, journal), "--not-before", other, *extra],
                                     env(server))
        assert code == 2, err
        for part in ("not before", LATER, other, "--not-before", "--change-rules"):
            assert part in err, (part, err)
    assert server.requests == []
    earlier = "2000-01-03T09:00:00+00:00"
    code, _, err = await run_cli(
        [*base(numbers, journal), "--not-before", earlier, "--change-rules"], env(server))
    assert code == 0, err
    assert sorted(r.json["number"] for r in server.requests) == NUMBERS
    code, out, err = await run_cli(["report", str(journal)], {})
    assert code == 0, err
    assert f"not before {LATER!r} -> {earlier!r}" in out
    code, out, err = await run_cli(["report", str(journal), "--json"], {})
    changes = json.loads(out.strip().splitlines()[-1])["rule_changes"]
    assert [(c["rule"], c["old"], c["new"]) for c in changes] == [
        ("not before", LATER, earlier)]
