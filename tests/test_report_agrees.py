"""Reports agree with themselves (#15): an invalid entry is ``invalid`` in every form, numbers
waiting for a calling window are in every form, the HTML quota is the campaign's own, the dry
run says how many invalid lines it did not list, and validation hints are in the user's words."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ryze_async import Campaign, InvalidRequestError, RyzeClient, normalize_number
from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
SP = [f"55119{i:08d}" for i in range(3)]  # America/Sao_Paulo
NY = "12125550100"  # America/New_York
SATURDAY = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
async def journal(ryze_server_factory: ServerFactory, tmp_path: Path) -> Path:
    """3 numbers placed, 2 invalid entries, 1 number held for Monday's window (stopped
    outside it), on a quota of 7 calls per 30 seconds."""
    server = await ryze_server_factory(rate_limit=None)
    path = tmp_path / "j.db"
    async with RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                          rate_limit=7, rate_period=30.0) as client:
        await Campaign(client, [*SP, "123", "not-a-number"], journal=path, fake=True).run()
        await Campaign(client, [*SP, "123", "not-a-number", NY], journal=path, fake=True,
                       call_windows=["Mon-Fri 09:00-20:00"], exit_outside_window=True,
                       change_rules=True, now=lambda: SATURDAY).run()
    return path


async def test_an_invalid_entry_is_invalid_in_every_form(journal: Path, tmp_path: Path) -> None:
    code, out, err = await run_cli(["report", str(journal), "--csv", "-"], {})
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    states = {r["number"]: r["state"] for r in rows}
    assert states["123"] == states["not-a-number"] == "invalid"
    assert "failed" not in states.values()

    jsonl = tmp_path / "r.jsonl"
    code, _, err = await run_cli(["report", str(journal), "--format", "jsonl", "--out",
                                  str(jsonl)], {})
    assert code == 0, err
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert {x["number"]: x["state"] for x in lines}["123"] == "invalid"

    html = tmp_path / "r.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(html)], {})
    assert code == 0, err
    page = html.read_text()
    assert 'data-state="failed"' not in page
    assert page.count('class="problem" data-state="invalid"') == 2
    assert re.search(r'data-count="failed">0<', page)
    assert re.search(r'data-count="invalid">2<', page)


async def test_numbers_waiting_for_a_window_are_in_every_form(
    journal: Path, tmp_path: Path,
) -> None:
    code, out, err = await run_cli(["report", str(journal)], {})
    assert code == 0, err
    assert re.search(r"pending\s+1\s+\(1 waiting for a calling window\)", out), out

    code, out, _ = await run_cli(["report", str(journal), "--json"], {})
    data = json.loads(out)
    assert (data["pending"], data["held"]) == (1, 1)

    code, out, _ = await run_cli(["report", str(journal), "--csv", "-"], {})
    row = next(r for r in csv.DictReader(io.StringIO(out)) if r["number"] == NY)
    assert row["state"] == "pending"
    # Monday 09:00 in New York (EST until the 8th; EDT from then): 13:00 UTC.
    assert row["window_opens_utc"] == "2026-03-09T13:00:00+00:00"

    html = tmp_path / "r.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(html)], {})
    assert re.search(r'data-count="held">1<', html.read_text())


async def test_the_html_quota_line_is_the_campaigns_own(journal: Path, tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    code, _, err = await run_cli(["report", str(journal), "--html", str(html)], {})
    assert code == 0, err
    page = html.read_text()
    assert "quota 7 calls per 30s" in page
    assert "100/min" not in page


async def test_the_dry_run_says_how_many_invalid_lines_it_did_not_list(
    tmp_path: Path, ryze_server_factory: ServerFactory,
) -> None:
    server = await ryze_server_factory(rate_limit=None)
    numbers = tmp_path / "n.csv"
    numbers.write_text("phone\n" + "\n".join([*SP, *(f"bad{i}" for i in range(30))]) + "\n")
    code, out, err = await run_cli(
        ["campaign", str(numbers), "--journal", str(tmp_path / "j.db"), "--fake", "--dry-run"],
        {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "i", "RYZE_BASE_URL": server.url})
    assert code == 0, err
    listed = len(re.findall(r"invalid line \d+:", out))
    assert 0 < listed < 30
    assert f"... and {30 - listed} more invalid lines not listed" in out


@pytest.mark.parametrize("raw", ["0049301234567", "00 55 11 98765-4321"])
def test_an_international_prefix_is_told_to_become_a_plus(raw: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        normalize_number(raw, default_region="US")
    message = str(info.value)
    assert "possible" not in message
    digits = re.sub(r"\D", "", raw)[2:]
    assert f"+{digits[:2]}" in message


def test_the_api_hint_names_the_keyword() -> None:
    with pytest.raises(InvalidRequestError) as info:
        normalize_number("2025550100", default_region="BR")
    assert "number_check='possible'" in str(info.value)
    assert "--number-check" not in str(info.value)


async def test_the_cli_hint_names_the_flags(tmp_path: Path) -> None:
    code, _, err = await run_cli(["fake-call", "2025550100", "--default-region", "BR"],
                                 {"RYZE_TOKEN": "t", "RYZE_INSTANCE": "i"})
    assert code == 2
    assert "--number-check possible" in err
    assert "number_check=" not in err
    code, _, err = await run_cli(["fake-call", "0049301234567"],
                                 {"RYZE_TOKEN": "t", "RYZE_INSTANCE": "i"})
    assert code == 2
    assert "+49" in err
    assert "--number-check" not in err
    code, _, err = await run_cli(["fake-call", "11987654321"],
                                 {"RYZE_TOKEN": "t", "RYZE_INSTANCE": "i"})
    assert code == 2
    assert "--default-region" in err
    assert "default_region=" not in err


async def test_report_csv_keeps_the_inputs_other_columns(
    ryze_server_factory: ServerFactory, tmp_path: Path,
) -> None:
    server = await ryze_server_factory(rate_limit=None)
    numbers = tmp_path / "n.csv"
    numbers.write_text('# list of 4 April\nphone;name;notes\n'
                       f'{SP[0]};Ana;"called back,\nlater"\n{SP[1]};Bruno;\n'
                       'not-a-number;Carla;typo\n')
    journal = tmp_path / "j.db"
    code, _, err = await run_cli(
        ["campaign", str(numbers), "--journal", str(journal), "--fake"],
        {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
         "RYZE_BASE_URL": server.url})
    assert code == 0, err
    code, out, err = await run_cli(["report", str(journal), "--csv", "-", "--input",
                                    str(numbers)], {})
    assert code == 0, err
    rows = {r["number"]: r for r in csv.DictReader(io.StringIO(out))}
    assert (rows[SP[0]]["name"], rows[SP[0]]["notes"]) == ("Ana", "called back,\nlater")
    assert (rows[SP[1]]["name"], rows[SP[1]]["state"]) == ("Bruno", "placed")
    assert (rows["not-a-number"]["name"], rows["not-a-number"]["state"]) == ("Carla", "invalid")
    assert rows[SP[0]]["phone"] == SP[0]  # the input's cells as written

    # Edited since the journal read it: its lines may be other people now. Refused.
    numbers.write_text(numbers.read_text().replace("Ana", "Zoe"))
    code, out, err = await run_cli(["report", str(journal), "--csv", "-", "--input",
                                    str(numbers)], {})
    assert code == 2
    assert "not the file this journal read" in err
    assert out == ""
