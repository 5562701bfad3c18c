"""#10 inputs attacked: typed cells of a workbook and typed values of JSON Lines.

The rule: a value is dialled only if it is exactly the digits the user gave. An Excel number
with a fraction (``5.5119999999999E12`` is 5511999999999.9: its dot read as a separator made
it a neighbour's 55119999999999), a negative one, a boolean, a date or a time, a float too big
to hold its digits, a JSON number with a fraction or an exponent: invalid entries with a reason
that says why, never a guess. The fake server's record is the oracle.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from ryze_async import Campaign, Media, RyzeClient
from ryze_async.testing import FakeRyzeServer, wav_tone

from .test_input_more import dialed, jsonl, run, server, workbook  # noqa: F401 - fixture

MEDIA = Media.from_bytes(wav_tone(0.1))
GOOD = ["5511900000001", "5511900000002", "5511900000003"]

# A value, and a word the refusal must contain. Every one of them normalised as text would
# be a valid number somewhere (the test checks a few of them against that hazard below).
BAD_CELLS: list[tuple[Any, str]] = [
    (551190000000.5, "fraction"),          # "551190000000.5": the dot a separator -> 13 digits
    (5.5119000000009e12, "fraction"),      # typed 5.5119000000009E12 in Excel
    (-5511900000004, "negative"),
    (True, "boolean"),
    (dt.datetime(2026, 3, 9, 0, 0), "date"),
    (dt.time(11, 30), "time"),
    (55119000000051234.0, "digits"),       # more digits than a float (and E.164) holds
]


async def plan_invalid(client_url: str, path: Path, **kw: Any) -> dict[int, str]:
    async with RyzeClient("test-token", "my-instance", base_url=client_url,
                          rate_limit=None) as client:
        p = await Campaign(client, path, journal=path.with_suffix(".plan.db"), media=MEDIA,
                           **kw).dry_run()
    return {line: why for line, _, why in p.first_invalid}


async def test_xlsx_untrusted_number_cells_are_invalid_with_a_reason(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    rows: list[list[Any]] = [["Name", "Phone"], ["ok int", int(GOOD[0])],
                             ["ok float", float(GOOD[1])], ["ok text", GOOD[2]]]
    rows += [[f"bad {i}", value] for i, (value, _) in enumerate(BAD_CELLS)]
    path = workbook(tmp_path / "n.xlsx", {"S": rows})
    reasons = await plan_invalid(server.url, path)
    assert sorted(reasons) == list(range(5, 5 + len(BAD_CELLS)))
    for (_, word), line in zip(BAD_CELLS, sorted(reasons), strict=True):
        assert word in reasons[line], (line, reasons[line])
        assert "Excel" in reasons[line]
    summary = await run(server, path)
    assert dialed(server) == GOOD
    assert summary.invalid == len(BAD_CELLS)


@pytest.mark.parametrize("keyed", [True, False])
async def test_jsonl_numbers_that_are_not_exact_digits_are_invalid(
    server: FakeRyzeServer, tmp_path: Path, keyed: bool  # noqa: F811
) -> None:
    bad: list[tuple[Any, str]] = [(551190000000.5, "fraction or an exponent"),
                                  (5511900000006.0, "fraction or an exponent"),
                                  (5.5119000000007e12, "fraction or an exponent"),
                                  (-5511900000004, "negative"), (True, "boolean")]
    values: list[Any] = [GOOD[0], int(GOOD[1]), *(v for v, _ in bad)]
    path = jsonl(tmp_path / "n.jsonl", [{"number": v} if keyed else v for v in values])
    reasons = await plan_invalid(server.url, path)
    assert sorted(reasons) == list(range(3, 3 + len(bad)))
    for (_, word), line in zip(bad, sorted(reasons), strict=True):
        assert word in reasons[line], (line, reasons[line])
        assert "JSON" in reasons[line]
    summary = await run(server, path)
    assert dialed(server) == GOOD[:2]
    assert summary.invalid == len(bad)


def test_openpyxl_keeps_typed_cells(tmp_path: Path) -> None:
    # Guard on the test's own premise: the cells are stored typed, not as text.
    path = workbook(tmp_path / "t.xlsx", {"S": [[v] for v, _ in BAD_CELLS]})
    book = openpyxl.load_workbook(path, read_only=True)
    kinds = [type(r[0]).__name__ for r in book["S"].iter_rows(values_only=True)]
    book.close()
    assert kinds == ["float", "float", "int", "bool", "datetime", "time", "float"]


@pytest.mark.parametrize("text", ["4930123456.0", "+4930123456.0", "3906123456.0",
                                  "551190000000.5", "4989123456.00"])
def test_a_float_written_as_text_is_not_a_number(text: str) -> None:
    # pandas writes an int column holding a gap as floats ("4930123456.0"); read as a dot
    # separator, the ".0" appended a digit: +49 30 1234560, a valid German number, not the
    # user's +49 30 123456.
    from ryze_async import InvalidRequestError, normalize_number
    with pytest.raises(InvalidRequestError, match="fraction"):
        normalize_number(text)
    with pytest.raises(InvalidRequestError, match="fraction"):
        normalize_number(text, default_region="DE")


@pytest.mark.parametrize("text", ["+33 6.12.34.56.78", "11.99999.9999", "030.123456",
                                  "(11) 99999.9999", "555.123.4567"])
def test_dots_as_separators_still_read(text: str) -> None:
    from ryze_async import InvalidRequestError, normalize_number
    refusal = ""
    try:
        normalize_number(text, default_region="BR")
    except InvalidRequestError as exc:
        refusal = str(exc)
    assert "fraction" not in refusal


async def test_csv_written_by_pandas_floats_dials_nobody_wrong(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    path = tmp_path / "n.csv"
    path.write_text("name,phone\nAna,4930123456.0\nBia,+5511900000001\n")
    summary = await run(server, path)
    assert dialed(server) == ["5511900000001"]
    assert summary.invalid == 1


async def test_xlsx_hidden_rows_are_not_called(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    # An autofilter hides the rows it filters out: "Consent = no" people the user meant to leave
    # out. Called, they would be numbers the user did not give (the visible list).
    path = tmp_path / "n.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [["Phone", "Consent"], [GOOD[0], "yes"], [GOOD[1], "no"], [GOOD[2], "yes"]]:
        sheet.append(row)
    sheet.row_dimensions[3].hidden = True
    book.save(path)
    reasons = await plan_invalid(server.url, path)
    assert list(reasons) == [3]
    assert "hidden" in reasons[3]
    summary = await run(server, path)
    assert dialed(server) == [GOOD[0], GOOD[2]]
    assert summary.invalid == 1


@pytest.mark.parametrize("sheet", [None, 1, "1"])
async def test_xlsx_a_hidden_sheet_is_not_the_first_one(
    server: FakeRyzeServer, tmp_path: Path, sheet: int | str | None  # noqa: F811
) -> None:
    # Excel shows the first visible tab as the first sheet; a hidden one before it (last
    # year's list, a lookup table) is not the list the user means.
    path = tmp_path / "n.xlsx"
    book = openpyxl.Workbook()
    old = book.active
    old.title = "Old"
    old.append(["Phone"])
    old.append([GOOD[0]])
    old.sheet_state = "hidden"
    new = book.create_sheet("Current")
    new.append(["Phone"])
    new.append([GOOD[1]])
    book.save(path)
    await run(server, path, sheet=sheet)
    assert dialed(server) == [GOOD[1]]


async def test_xlsx_hidden_sheet_named_explicitly_is_read(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    path = tmp_path / "n.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "Old"
    book.active.append([GOOD[0]])
    book.active.sheet_state = "hidden"
    book.create_sheet("Current").append([GOOD[1]])
    book.save(path)
    await run(server, path, sheet="Old")
    assert dialed(server) == [GOOD[0]]


async def test_xlsx_formula_without_a_cached_value_is_invalid_with_a_reason(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    # A workbook written by a program holds formulas nobody computed: no value to read.
    path = workbook(tmp_path / "n.xlsx", {"S": [["Name", "Phone"], ["a", GOOD[0]],
                                                ["b", '="55119"&"00000002"']]})
    reasons = await plan_invalid(server.url, path)
    assert list(reasons) == [3]
    assert "formula" in reasons[3]
    await run(server, path)
    assert dialed(server) == [GOOD[0]]


async def test_jsonl_a_number_key_given_twice_is_ambiguous(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    # json.loads keeps the last of two equal keys: a guess at which the producer meant.
    path = tmp_path / "n.jsonl"
    path.write_text(f'{{"number": "{GOOD[0]}"}}\n'
                    f'{{"number": "{GOOD[1]}", "name": "x", "number": "{GOOD[2]}"}}\n')
    reasons = await plan_invalid(server.url, path)
    assert list(reasons) == [2]
    assert "twice" in reasons[2]
    await run(server, path)
    assert dialed(server) == [GOOD[0]]


@pytest.mark.parametrize("header", ["name,emergency contact,phone", "name,phone,mobile",
                                    "celular,telefone"])
async def test_several_number_like_columns_are_refused_not_guessed(
    server: FakeRyzeServer, tmp_path: Path, header: str  # noqa: F811
) -> None:
    # "Emergency contact" was taken for the number column (the first that looked like one):
    # every row's emergency contact would have been called.
    from ryze_async import InputError
    width = header.count(",") + 1
    path = tmp_path / "n.csv"
    path.write_text(header + "\n" + ",".join(["Ana", *GOOD[:width - 1]][-width:]) + "\n")
    with pytest.raises(InputError, match="--column"):
        await run(server, path)
    assert server.requests == []
    book = workbook(tmp_path / "n.xlsx", {"S": [header.split(","), GOOD[:width]]})
    with pytest.raises(InputError, match="--column"):
        await run(server, book)
    keys = header.split(",")
    lines = jsonl(tmp_path / "n.jsonl", [dict(zip(keys, GOOD, strict=False))])
    with pytest.raises(InputError, match="--column"):
        await run(server, lines)
    assert server.requests == []


async def test_a_column_named_number_wins_over_other_phone_like_ones(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    path = tmp_path / "n.csv"
    path.write_text(f"contact,number\nAna,{GOOD[0]}\n")
    await run(server, path)
    assert dialed(server) == [GOOD[0]]


def stale_dimension(path: Path, ref: str = "A1:A2") -> Path:
    """Rewrite the sheet's ``<dimension>`` (some writers leave it stale): openpyxl's read-only
    mode trusts it and stops there."""
    import re
    import zipfile

    data = path.read_bytes()
    with zipfile.ZipFile(path, "w") as out, zipfile.ZipFile(io.BytesIO(data)) as zin:
        for item in zin.infolist():
            body = zin.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                body = re.sub(rb'<dimension ref="[^"]+"', f'<dimension ref="{ref}"'.encode(), body)
            out.writestr(item, body)
    return path


async def test_xlsx_with_a_stale_dimension_is_read_whole(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    path = stale_dimension(workbook(tmp_path / "n.xlsx", {"S": [["Phone"], *([n] for n in GOOD)]}))
    summary = await run(server, path)
    assert dialed(server) == GOOD
    assert summary.total == 3


@pytest.mark.parametrize("name", ["n.csv", "n.jsonl"])
async def test_a_sheet_given_for_a_file_without_sheets_is_refused(
    server: FakeRyzeServer, tmp_path: Path, name: str  # noqa: F811
) -> None:
    # The user thinks they are reading one sheet of a workbook: the file is something else.
    path = tmp_path / name
    path.write_text(f'{{"number": "{GOOD[0]}"}}\n' if name.endswith("jsonl")
                    else f"number\n{GOOD[0]}\n")
    from ryze_async import InputError
    with pytest.raises(InputError, match="--sheet"):
        await run(server, path, sheet="Contacts")
    assert server.requests == []


async def test_a_typed_number_that_lost_its_leading_zero_is_not_guessed(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    """Typed into Excel as a number, Gabon's 06 03 12 34 is 6031234: read in GA that is
    +241 6031234, a valid number but not +241 06031234. Ambiguous: invalid with a reason. A
    Brazilian or British number that lost its trunk 0 reads the same either way: called."""
    path = workbook(tmp_path / "n.xlsx", {"S": [["Phone"], [6031234], [11987654321],
                                                ["06031234"]]})
    async with RyzeClient("test-token", "my-instance", base_url=server.url, rate_limit=None,
                          default_region="GA") as client:
        p = await Campaign(client, path, journal=tmp_path / "p.db", media=MEDIA).dry_run()
    assert [line for line, _, _ in p.first_invalid] == [2, 3]
    assert "leading zero" in p.first_invalid[0][2]
    path = workbook(tmp_path / "m.xlsx", {"S": [["Phone"], [11987654321], [7911123456]]})
    for region, number in (("BR", "5511987654321"), ("GB", "447911123456")):
        async with RyzeClient("test-token", "my-instance", base_url=server.url,
                              rate_limit=None, default_region=region) as client:
            p = await Campaign(client, path, journal=tmp_path / "q.db", media=MEDIA).dry_run()
        assert p.now == 1, (region, number, p.first_invalid)


async def test_untrusted_cells_on_the_postgres_journal(
    server: FakeRyzeServer, tmp_path: Path, pg_dsn: str  # noqa: F811
) -> None:
    # The typed entries reach the PostgreSQL store as text like any other (a str subclass).
    import uuid

    rows: list[list[Any]] = [["Phone"], [int(GOOD[0])], [551190000000.5], [True]]
    path = workbook(tmp_path / "n.xlsx", {"S": rows})
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        summary = await Campaign(client, path, journal=pg_dsn, media=MEDIA,
                                 campaign=f"typed-{uuid.uuid4().hex[:8]}").run()
    assert dialed(server) == [GOOD[0]]
    assert (summary.placed, summary.invalid) == (1, 2)


async def test_python_items_that_are_not_exact_digits_are_invalid_not_a_crash(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    """An iterable is read while calls go out: a float or a bool in it stopped the campaign
    half-way (TypeError); it is an invalid entry with its reason, like a typed cell."""
    items: list[Any] = [GOOD[0], 551190000000.5, True, float("nan"), -5511900000004,
                        int(GOOD[1])]
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        summary = await Campaign(client, items, journal=tmp_path / "j.db", media=MEDIA).run()
    assert dialed(server) == GOOD[:2]
    assert (summary.placed, summary.invalid, summary.stop_reason) == (2, 4, "completed")
