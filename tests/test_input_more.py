"""#10 inputs: ``.xlsx`` workbooks (any sheet, ``--column``) and JSON Lines, read with the CSV's
rules: refused whole before a journal exists, resumed only when the input is the same."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from ryze_async import Campaign, CampaignSummary, InputError, Media, RyzeClient
from ryze_async._campaign.inputs import Position
from ryze_async._campaign.inputs.source import NumberSource
from ryze_async.testing import FakeRyzeServer, wav_tone

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
MEDIA = Media.from_bytes(wav_tone(0.1))
NUMS = [f"55119000000{i:02d}" for i in range(1, 8)]


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def dialed(server: FakeRyzeServer) -> list[str]:
    return [r.json["number"] for r in server.requests if r.route in ("audio", "fake")]


async def run(server: FakeRyzeServer, path: Path, **kw: Any) -> CampaignSummary:
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        return await Campaign(client, path, journal=path.with_suffix(".db"), media=MEDIA,
                              **kw).run()


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


CONTACTS = [["Name", "Phone", "City"], ["Ana", int(NUMS[0]), "Rio"], [None, None, None],
            ["Bia", f"+{NUMS[1]}", "SP"], ["Cid", float(NUMS[2]), "BH"], ["Dan", "123", "x"]]


@pytest.mark.parametrize("sheet", ["Contacts", 2, "2"])
async def test_xlsx_sheet_by_name_or_index(
    server: FakeRyzeServer, tmp_path: Path, sheet: str | int
) -> None:
    path = workbook(tmp_path / "n.xlsx", {"Notes": [["nothing here"]], "Contacts": CONTACTS})
    summary = await run(server, path, sheet=sheet)
    assert dialed(server) == NUMS[:3]  # int, text and float cells alike
    assert (summary.placed, summary.invalid) == (3, 1)


async def test_xlsx_column_given_and_first_sheet_by_default(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    rows = [["a", "b"], ["x", NUMS[0]], ["y", NUMS[1]]]
    path = workbook(tmp_path / "n.xlsx", {"S": rows, "Other": [[NUMS[5]]]})
    await run(server, path, column=2)
    assert dialed(server) == NUMS[:2]


@pytest.mark.parametrize(("sheets", "kw", "message"), [
    ({"S": [["Name", "Phone"]]}, {}, "header and no numbers"),
    ({"S": [[None], []]}, {}, "no numbers"),
    ({"S": CONTACTS}, {"sheet": "Missing"}, "no sheet 'Missing'"),
    ({"S": CONTACTS}, {"sheet": 3}, "1 visible sheets"),
    ({"S": CONTACTS}, {"column": "Mobile"}, "no column 'Mobile'"),
])
async def test_bad_workbooks_are_refused_before_a_journal(
    server: FakeRyzeServer, tmp_path: Path, sheets: dict[str, list[list[Any]]],
    kw: dict[str, Any], message: str,
) -> None:
    path = workbook(tmp_path / "n.xlsx", sheets)
    with pytest.raises(InputError, match=message):
        await run(server, path, **kw)
    assert not path.with_suffix(".db").exists()
    assert server.requests == []


async def test_xlsx_without_openpyxl_names_the_extra(
    server: FakeRyzeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = workbook(tmp_path / "n.xlsx", {"S": CONTACTS})
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(InputError, match=r'pip install "ryze-async\[excel\]"'):
        await run(server, path)
    assert not path.with_suffix(".db").exists()


async def _read(source: NumberSource, start: Position, size: int = 2) -> tuple[
    list[tuple[int, str]], Position
]:
    await source.check()
    entries: list[tuple[int, str]] = []
    pos = start
    async for batch in await source.open(start, size):
        entries += batch.entries
        pos = batch.position
        if len(entries) >= size:
            break
    return entries, pos


async def test_xlsx_resumes_after_its_rows_only_if_the_file_is_the_same(tmp_path: Path) -> None:
    rows: list[list[Any]] = [["phone"], *([n] for n in NUMS)]
    path = workbook(tmp_path / "n.xlsx", {"S": rows})
    first, pos = await _read(NumberSource(path), Position())
    assert [raw for _, raw in first] == NUMS[:2]
    assert [at for at, _ in first] == [2, 3]  # sheet rows: what a person sees in Excel
    source = NumberSource(path)
    rest, _ = await _read(source, pos, size=100)
    assert not source.restarted
    assert [raw for _, raw in rest] == NUMS[2:]
    workbook(path, {"S": [rows[0], [NUMS[6]], *rows[1:]]})  # edited: a row inserted on top
    source = NumberSource(path)
    again, _ = await _read(source, pos, size=100)
    assert source.restarted
    assert [raw for _, raw in again] == [NUMS[6], *NUMS]


def jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


async def test_jsonl_numbers_and_keys(server: FakeRyzeServer, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "n.jsonl", [{"number": NUMS[0], "name": "Ana"},
                                        {"number": int(NUMS[1])}, {"name": "no number"},
                                        {"number": "123"}])
    summary = await run(server, path)
    assert dialed(server) == NUMS[:2]
    assert (summary.placed, summary.invalid) == (2, 2)


async def test_jsonl_column_is_the_key_and_is_detected_without_suffix(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "from-a-pipeline", [{"id": 1, "tel": NUMS[0], "whatsapp": NUMS[3]},
                                                {"id": 2, "tel": NUMS[1], "whatsapp": NUMS[4]}])
    await run(server, path, column="tel")
    assert dialed(server) == NUMS[:2]


async def test_jsonl_resumes_after_an_append_and_rereads_after_an_edit(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "n.ndjson", [{"number": n} for n in NUMS[:4]])
    first, pos = await _read(NumberSource(path), Position())
    assert [raw for _, raw in first] == NUMS[:2]
    jsonl(path, [{"number": n} for n in NUMS])  # appended to
    source = NumberSource(path)
    rest, _ = await _read(source, pos, size=100)
    assert not source.restarted
    assert [raw for _, raw in rest] == NUMS[2:]
    jsonl(path, [{"number": n} for n in reversed(NUMS)])  # rewritten
    source = NumberSource(path)
    again, _ = await _read(source, pos, size=100)
    assert source.restarted
    assert [raw for _, raw in again] == list(reversed(NUMS))


@pytest.mark.parametrize(("text", "column", "message"), [
    ('{"number": "5511900000001"}\n{"number": oops}\n', None, "line 2 is not JSON"),
    ('{"name": "Ana", "city": "Rio"}\n', None, "which key"),
    ('{"number": "5511900000001"}\n', "mobile", "no key 'mobile'"),
    ('{"number": "5511900000001"}\n', 2, "keys, not columns"),
])
async def test_bad_jsonl_is_refused_before_a_journal(
    server: FakeRyzeServer, tmp_path: Path, text: str, column: str | int | None, message: str
) -> None:
    path = tmp_path / "n.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        await run(server, path, column=column)
    assert not path.with_suffix(".db").exists()
    assert server.requests == []


async def test_cli_reads_xlsx_and_refuses_bad_input_with_exit_2(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    env = {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
           "RYZE_BASE_URL": server.url}
    path = workbook(tmp_path / "n.xlsx", {"Notes": [["x"]], "Contacts": CONTACTS})
    journal = tmp_path / "c.db"
    code, _, err = await run_cli(["campaign", str(path), "--fake", "--journal", str(journal),
                                  "--sheet", "Contacts", "--column", "Phone"], env)
    assert code == 0, err  # an invalid entry is reported, not a failure
    assert dialed(server) == NUMS[:3]
    bad = jsonl(tmp_path / "bad.jsonl", [{"name": "x"}])
    code, _, err = await run_cli(["campaign", str(bad), "--fake", "--journal",
                                  str(tmp_path / "d.db")], env)
    assert code == 2
    assert "Traceback" not in err
    assert "which key" in err
    assert not (tmp_path / "d.db").exists()
