"""Numbers from an ``.xlsx`` workbook: a sheet's rows as text, typed cells checked.

The sheet is the first *visible* one (as Excel's tabs show it), or ``sheet`` by name (any, even
hidden: the user named it) or 1-based index among the visible ones. A cell is what the user
sees of it, except what cannot be trusted to be digits the user typed: a number with a
fraction, a negative one, a boolean, a date, a formula nobody computed, a row hidden in the
sheet (filtered out: not in the list the user looks at). Those are :class:`Untrusted` and end
invalid with their reason (``inputs/__init__.py``).

A workbook is a zip archive: a 0.3 MB file can unpack to gigabytes. What it may expand to is
bounded before openpyxl reads a byte of it (`_check_expansion`): every part's unpacked size as
the archive declares it (Python's zipfile stops at that size, so a part cannot lie its way
past it), its compression ratio, and the shared strings (held in memory whole) apart. Rows and
cells are bounded by Excel's own limits, which no workbook Excel wrote exceeds.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from ... import InputError
from . import NumberBatch, Position, Untrusted, entry_text, skippable, whole_number
from .csv import _pick_column

__all__ = ["XlsxReader"]

_EXCEL_HINT = 'reading .xlsx needs openpyxl: pip install "ryze-async[excel]" (or save as CSV)'
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REF = re.compile(r"([A-Za-z]+)(\d+)")
_HIDDEN = ("a row hidden in the sheet (filtered out?): not in the list Excel shows; unhide it "
           "to call it")
_NO_VALUE = ("a formula with no computed value (the file was written by a program, not saved "
             "by Excel): open and save it in Excel, or write the number itself")


_EXCEL = "an Excel number"

MB = 1 << 20
#: Excel's own limits: rows of a sheet, characters of a cell.
EXCEL_ROWS, EXCEL_CELL_CHARS = 1_048_576, 32_767
#: The setting that raises what a workbook may unpack to (MB), and its default.
MAX_MB_VARIABLE, DEFAULT_MAX_MB = "RYZE_XLSX_MAX_MB", 512
#: A spreadsheet's XML deflates 5 to 30 times; a bomb's a thousand. Small parts may do more.
_MAX_RATIO, _RATIO_FROM = 100, 8 * MB
_SHARED_STRINGS = "xl/sharedStrings.xml"


def _max_bytes() -> int:
    text = os.environ.get(MAX_MB_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_MB * MB
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{MAX_MB_VARIABLE} must be a whole number of MB >= 1, not {text!r}")
    return int(text) * MB


def _check_expansion(data: bytes, path: Path) -> None:
    """Refuse a workbook that would unpack to more than it may (see the module's docstring)."""
    try:
        parts = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        return  # not a readable archive: openpyxl says so (_workbook)
    limit, total = _max_bytes(), 0
    for part in parts:
        size = part.file_size
        total += size
        if size > _RATIO_FROM and size > _MAX_RATIO * max(part.compress_size, 1):
            raise InputError(
                f"{path}: its part {part.filename} expands to {size // MB} MB from "
                f"{part.compress_size // 1024} KB compressed ({size // max(part.compress_size, 1)}"
                f" times; a spreadsheet's compress at most {_MAX_RATIO} times): a zip bomb, not "
                "a list of numbers; refused")
        if part.filename == _SHARED_STRINGS and size > limit // 8:
            raise InputError(
                f"{path}: its shared strings expand to {size // MB} MB, more than the "
                f"{limit // 8 // MB} MB allowed (an eighth of {MAX_MB_VARIABLE}, "
                f"{limit // MB} MB; they are held in memory whole); save it as CSV, or raise "
                f"{MAX_MB_VARIABLE}")
    if total > limit:
        raise InputError(
            f"{path} expands to {total // MB} MB unpacked, more than the {limit // MB} MB a "
            f"workbook may ({MAX_MB_VARIABLE} raises it); save it as CSV")


def _row_number(text: str | None, default: int, path: Path) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(EXCEL_ROWS)):
        raise InputError(f"{path}: a row numbered {text[:20]!r}: not a spreadsheet Excel wrote; "
                         "refused")
    return int(text)


def _check_cell(text: str, where: str, path: Path) -> None:
    if len(text) > EXCEL_CELL_CHARS:
        raise InputError(f"{path}: {where} holds {len(text)} characters, more than Excel's "
                         f"{EXCEL_CELL_CHARS} per cell: not a spreadsheet Excel wrote; refused")


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
    _check_expansion(data, path)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:
        raise InputError(f"{path} is a zip archive but not a readable .xlsx spreadsheet "
                         "(.ods? save it as .xlsx or CSV)") from None
    for at, text in enumerate(getattr(book, "shared_strings", ())):
        _check_cell(str(text), f"shared string {at}", path)
    return book


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


def _sheet_marks(
    book: Any, sheet: Any, path: Path,
) -> tuple[set[int], dict[int, list[int]]]:
    """The hidden rows, and per row the (1-based) columns of formulas without a value; a row
    or a cell past Excel's limits is refused.

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
            if el.tag == f"{_MAIN}c":
                _check_cell(el.findtext(f"{_MAIN}v") or el.findtext(f"{_MAIN}is/{_MAIN}t") or "",
                            f"cell {el.get('r', '?')}", path)
            if el.tag == f"{_MAIN}c" and el.find(f"{_MAIN}f") is not None and not (
                el.findtext(f"{_MAIN}v") or el.findtext(f"{_MAIN}is/{_MAIN}t")
            ):
                ref = _REF.fullmatch(el.get("r", ""))
                if ref:
                    uncomputed.setdefault(int(ref.group(2)), []).append(_column_index(ref[1]))
            elif el.tag == f"{_MAIN}row":
                row = _row_number(el.get("r"), row + 1, path)
                if row > EXCEL_ROWS:
                    raise InputError(f"{path}: row {row} is past Excel's last ({EXCEL_ROWS}): "
                                     "not a spreadsheet Excel wrote; refused")
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
        self._hidden, self._uncomputed = _sheet_marks(self._book, self._sheet, path)
        self.column, self.data_row = self._layout(path, column)
        self.restarted = False
        self._done = self.data_row - 1
        self._left: Iterator[tuple[int, list[str]]] = iter(())

    def seek(self, start: Position) -> None:
        """Read from ``start``: the sheet rows it says were read are skipped only when the file
        is byte for byte the same (a workbook cannot be appended to); else from the first."""
        resume = start.offset > 0 and start.digest == self.digest
        self.restarted = start.offset > 0 and not resume
        skip = start.offset if resume else self.data_row - 1
        self._done = skip
        self._left = (row for row in self.rows() if row[0] > skip)

    def read(self, size: int) -> NumberBatch:
        """The next ``size`` entries; the position is the last sheet row read."""
        entries: list[tuple[int, str]] = []
        for at, cells in self._left:
            self._done = at
            if skippable(cells or [""]):
                continue
            cell = cells[self.column] if self.column < len(cells) else ""
            entries.append((at, entry_text(cell)))
            if len(entries) >= size:
                break
        return NumberBatch(entries, Position(self._done, self._done, self.digest))

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
