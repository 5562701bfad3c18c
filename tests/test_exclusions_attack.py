"""#10 opt-out lists attacked: a person on the list is never called, however either list
writes the number, and whatever happens to the file during the run (rewritten in place, gone).
Leaving someone out wrongly is harmless; calling someone who opted out is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from ryze_async._campaign.rules import EXCLUDED, Rules, Skip
from ryze_async.testing import FakeRyzeServer

from .test_input_more import dialed, run, server  # noqa: F401 - fixture

PERSON = "5511987654321"
OLD_JID = "551187654321@s.whatsapp.net"  # the same BR mobile's WhatsApp id, without the 9


async def excluded(optout: Path, number: str, **kw: object) -> bool:
    rules = Rules(exclude=[optout], **kw)  # type: ignore[arg-type]
    await rules.check_exclusions()
    return await rules.verdict(number) == Skip(EXCLUDED)


@pytest.mark.parametrize("written", ["+55 (11) 98765-4321", "5511987654321@s.whatsapp.net",
                                     "55 11 98765 4321", OLD_JID])
@pytest.mark.parametrize("number", [PERSON, f"{PERSON}@s.whatsapp.net", OLD_JID])
async def test_the_same_person_written_differently_is_excluded(
    tmp_path: Path, written: str, number: str
) -> None:
    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n{written}\n")
    assert await excluded(optout, number)


async def test_a_number_written_as_a_float_in_the_opt_out_list_still_excludes(
    tmp_path: Path,
) -> None:
    # pandas wrote the opt-out column as floats: not dialable, but who it names is plain.
    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n{PERSON}.0\n")
    assert await excluded(optout, PERSON)


async def test_a_list_rewritten_in_place_does_not_forget_who_opted_out(tmp_path: Path) -> None:
    """Read while being rewritten (truncated, half written), the list names fewer people for
    a moment: those it named before stay excluded for the rest of the run."""
    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n+15550100\n{PERSON}\n")
    rules = Rules(exclude=[optout])
    await rules.check_exclusions()
    optout.write_text("number\n+15550100\n")  # the first half of the rewrite
    rules._exclusions._checked = float("-inf")  # look at the file again now
    assert await rules.verdict(PERSON) == Skip(EXCLUDED)


async def test_entries_of_an_opt_out_list_that_exclude_nobody_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n{PERSON}\n+55 11 98765\n")
    await Rules(exclude=[optout]).check_exclusions()
    assert "line 3" in caplog.text
    assert "exclude nobody" in caplog.text


async def test_campaign_with_jids_and_an_opt_out_list_of_numbers(
    server: FakeRyzeServer, tmp_path: Path  # noqa: F811
) -> None:
    optout = tmp_path / "optout.csv"
    optout.write_text("phone\n+55 (11) 98765-4321\n")
    numbers = tmp_path / "n.csv"
    numbers.write_text(f"number\n{OLD_JID}\n5511900000001\n")
    summary = await run(server, numbers, exclude=[optout])
    assert dialed(server) == ["5511900000001"]
    assert summary.excluded == 1


async def test_hidden_rows_and_typed_cells_of_an_opt_out_workbook_still_exclude(
    tmp_path: Path,
) -> None:
    # Hidden rows are not dialed from an input sheet; on an opt-out sheet they still name
    # people who opted out (an autofilter on "date opted out", say).
    import openpyxl

    optout = tmp_path / "optout.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [["Phone"], ["+15550100"], [PERSON], [-5511900000004], [5511900000005.0]]:
        sheet.append(row)
    sheet.row_dimensions[3].hidden = True
    book.save(optout)
    for number in (PERSON, "5511900000004", "5511900000005"):
        assert await excluded(optout, number), number


async def test_an_opt_out_workbook_with_a_stale_dimension_is_read_whole(tmp_path: Path) -> None:
    import openpyxl

    from .test_input_typed_cells import stale_dimension

    optout = tmp_path / "optout.xlsx"
    book = openpyxl.Workbook()
    for row in [["Phone"], ["+15550100"], ["+15550101"], [PERSON]]:
        book.active.append(row)
    book.save(optout)
    assert await excluded(stale_dimension(optout), PERSON)


async def test_at_the_first_byte_a_changed_list_holds_the_number_without_reading_it(
    tmp_path: Path,
) -> None:
    """Between the quota's admission and the first byte nothing slow runs (a long opt-out
    list read there would delay the send past its quota slot): a changed file is only seen
    changed, the number held until it is claimed again, and the claim reads it."""
    from ryze_async._campaign.rules import Call, Hold

    optout = tmp_path / "optout.csv"
    optout.write_text("number\n+15550100\n")
    rules = Rules(exclude=[optout])
    await rules.check_exclusions()
    assert await rules.verdict(PERSON, sending=True) == Call()
    optout.write_text(f"number\n+15550100\n{PERSON}\n")
    rules._exclusions._checked = float("-inf")  # a second went by
    assert isinstance(await rules.verdict(PERSON, sending=True), Hold)
    assert not rules._exclusions.holds(PERSON)  # not read at the first byte
    assert await rules.verdict(PERSON) == Skip(EXCLUDED)  # the claim reads it


async def test_a_typed_number_on_an_opt_out_sheet_excludes_both_readings(
    tmp_path: Path,
) -> None:
    # 6031234 typed in Gabon is +241 6031234 or, with the zero Excel dropped, +241 06031234:
    # not dialable from an input sheet, but on an opt-out sheet both are left out.
    import openpyxl

    optout = tmp_path / "optout.xlsx"
    book = openpyxl.Workbook()
    for row in [["Phone"], [6031234]]:
        book.active.append(row)
    book.save(optout)
    for number in ("2416031234", "24106031234"):
        assert await excluded(optout, number, default_region="GA"), number
