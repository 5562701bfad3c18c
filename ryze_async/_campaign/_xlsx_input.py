"""Numbers from an ``.xlsx`` workbook: a sheet's rows as text, typed cells checked.

The sheet is the first *visible* one (as Excel's tabs show it), or ``sheet`` by name (any, even
hidden: the user named it) or 1-based index among the visible ones. A cell is what the user
sees of it, except what cannot be trusted to be digits the user typed: a number with a
fraction, a negative one, a boolean, a date, a formula nobody computed, a row hidden in the
sheet (filtered out: not in the list the user looks at). Those are :class:`Untrusted` and end
invalid with their reason (``_numbers.py``).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from .. import InputError
from ._csv_input import _pick_column, skippable
from ._numbers import Untrusted, whole_number

__all__ = ["XlsxReader"]

_EXCEL_HINT = 'reading .xlsx needs openpyxl: pip install "ryze-async[excel]" (or save as CSV)'
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REF = re.compile(r"([A-Za-z]+)(\d+)")
_HIDDEN = ("a row hidden in the sheet (filtered out?): not in the list Excel shows; unhide it "
           "to call it")
_NO_VALUE = ("a formula with no computed value (the file was written by a program, not saved "
             "by Excel): open and save it in Excel, or write the number itself")


_EXCEL = "an Excel number"


def _text(value: object) -> str:
    """A cell as text; a typed cell whose digits are not a phone number the user typed exactly
    is :class:`Untrusted` (invalid with its reason, never read as a number)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return Untrusted(str(value).upper(), "an Excel boolean (TRUE/FALSE), not a phone number")
    if isinstance(value, int):
        return whole_number(value, _EXCEL)
    if isinstance(value, float):
        return _float_cell(value)
    if isinstance(value, datetime | date | time | timedelta):
        kind = "date" if isinstance(value, date) else "time"
        return Untrusted(str(value), f"an Excel {kind} cell ({value}), not a phone number")
    return str(value)


def _float_cell(value: float) -> str:
    if value.is_integer():
        return whole_number(int(value), _EXCEL)  # typed into a cell: 5511987654321.0
    # 5.5119999999999E12 is 5511999999999.9: read as text, its dot a separator, it would be the
    # neighbour 55119999999999.
    return Untrusted(repr(value), f"{_EXCEL} with a fraction ({value!r}): not the digits of a "
                     "phone number; format the column as Text and type it again")


def _workbook(data: bytes, path: Path) -> Any:
    try:
        import openpyxl  # noqa: PLC0415 - an optional extra
    except ImportError:
        raise InputError(f"{path}: {_EXCEL_HINT}") from None
    try:
        return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        raise InputError(f"{path} is a zip archive but not a readable .xlsx spreadsheet "
                         "(.ods? save it as .xlsx or CSV)") from None


def _sheet_name(book: Any, sheet: str | int | None, path: Path) -> str:
    """The sheet to read: named (even hidden), or the n-th visible tab (default: the first)."""
    names = list(book.sheetnames)
    visible: list[str] = [ws.title for ws in book.worksheets if ws.sheet_state == "visible"]
    if isinstance(sheet, str) and sheet.strip().isdigit():
        sheet = int(sheet)
    if isinstance(sheet, int):
        if not 1 <= sheet <= len(visible):
            raise InputError(f"{path} has {len(visible)} visible sheets: --sheet {sheet} is not "
                             f"one (sheets: {names})")
        return visible[sheet - 1]
    if sheet is not None and sheet not in names:
        raise InputError(f"{path} has no sheet {sheet!r} (sheets: {names})")
    if sheet is None and not visible:
        raise InputError(f"{path} has no visible sheet: name one with --sheet (sheets: {names})")
    return str(sheet) if sheet is not None else str(visible[0])


def _column_index(letters: str) -> int:
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - ord("A") + 1
    return index


def _sheet_marks(book: Any, sheet: Any) -> tuple[set[int], dict[int, list[int]]]:
    """The hidden rows, and per row the (1-based) columns of formulas without a value.

    openpyxl's read-only mode reports neither (a hidden row reads like any other, an
    uncomputed formula like an empty cell), so the sheet's XML is read once more for them.
    """
    from openpyxl.xml.functions import iterparse  # noqa: PLC0415 - openpyxl's (defused) parser

    hidden: set[int] = set()
    uncomputed: dict[int, list[int]] = {}
    row = 0
    # openpyxl's own handles on the archive and the sheet's part: no public API names them.
    with book._archive.open(sheet._worksheet_path) as src:
        for _, el in iterparse(src):
            if el.tag == f"{_MAIN}c" and el.find(f"{_MAIN}f") is not None and not (
                el.findtext(f"{_MAIN}v") or el.findtext(f"{_MAIN}is/{_MAIN}t")
            ):
                ref = _REF.fullmatch(el.get("r", ""))
                if ref:
                    uncomputed.setdefault(int(ref.group(2)), []).append(_column_index(ref[1]))
            elif el.tag == f"{_MAIN}row":
                row = int(el.get("r", row + 1))
                if el.get("hidden") in ("1", "true"):
                    hidden.add(row)
                el.clear()
    return hidden, uncomputed


class XlsxReader:
    """A sheet's rows as text, with the layout checks of a CSV; see the module's docstring."""

    def __init__(self, path: Path, sheet: str | int | None, column: str | int | None) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read the numbers file {path}: {exc.strerror or exc}"
                             ) from None
        self.digest = hashlib.sha256(data).hexdigest()
        self._book = _workbook(data, path)
        self._sheet = self._book[_sheet_name(self._book, sheet, path)]
        # Read-only mode stops at the size the file declares, which some writers leave stale:
        # the rows after it would be silently left out (an opt-out list's too).
        self._sheet.reset_dimensions()
        self._hidden, self._uncomputed = _sheet_marks(self._book, self._sheet)
        self.column, self.data_row = self._layout(path, column)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        for at, values in enumerate(self._sheet.iter_rows(values_only=True), 1):
            cells = [_text(v) for v in values]
            for col in self._uncomputed.get(at, ()):
                cells += [""] * (col - len(cells))
                cells[col - 1] = Untrusted("", _NO_VALUE)
            if at in self._hidden:
                cells = [Untrusted(c.strip(), _HIDDEN) if c.strip() else c for c in cells]
            yield at, cells

    def _layout(self, path: Path, column: str | int | None) -> tuple[int, int]:
        """(number column, first data row); refuses a sheet with no numbers."""
        header: tuple[int, int] | None = None
        for at, cells in self.rows():
            if skippable(cells or [""]):
                continue
            if header is not None:
                return header
            index = _pick_column(cells, column, path)
            if index is None:
                return (column - 1 if isinstance(column, int) else 0), at
            header = (index, at + 1)
        raise InputError(f"{path} holds {'a header and ' if header else ''}no numbers")

    def close(self) -> None:
        self._book.close()
