"""What a numbers CSV is: its encoding, delimiter, number column and where its data starts; and
its reader (:class:`CsvReader`).

Checked whole before a campaign opens its journal, so a file that is not a list of numbers
(a spreadsheet, a binary, undecodable text, no number column, no entries) is refused with an
:class:`InputError` before any call and before any file is written.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ... import InputError
from . import NumberBatch, Position, TextFile, _LineBound, bounded_lines, skippable, text_batch

__all__ = ["CsvLayout", "CsvReader", "inspect_csv", "number_header"]

_DELIMITERS = (",", ";", "\t")
_CHUNK = 1 << 16
# Words that name the number column (after case folding and accent stripping).
_KEYWORDS = frozenset({
    "number", "numbers", "numero", "num", "phone", "phones", "telephone", "telefone",
    "telefono", "tel", "fone", "celular", "cel", "cell", "cellphone", "mobile", "whatsapp",
    "zap", "msisdn", "contact", "contato", "wa", "jid",
})
# Long keywords also found inside a run-together name (``PhoneNumber``, ``whatsapp_br``).
_COMPOUND = tuple(k for k in _KEYWORDS if len(k) >= 5)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
_MAGIC = ((b"PK\x03\x04", "a zip archive (an .xlsx/.ods spreadsheet?)"),
          (b"\xd0\xcf\x11\xe0", "an old Office document (.xls?)"),
          (b"%PDF", "a PDF document"))


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """``codec`` (without BOM), ``bom`` length, delimiter, 0-based number column, and the byte
    offset and line count where the data records start (after the BOM and any header)."""

    codec: str
    bom: int
    delimiter: str
    column: int
    data_offset: int
    data_line: int
    entries: bool


def _encoding(head: bytes, path: Path) -> tuple[str, int]:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise InputError(f"{path} is {what}, not a CSV text file: save it as CSV (UTF-8)")
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec, len(bom)
    return "utf-8", 0


def _check_text(path: Path, codec: str, bom: int) -> None:
    """Decode the whole file strictly; refuse NUL characters (binary, or BOM-less UTF-16) and
    a line longer than `MAX_LINE_CHARS`."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    bound = _LineBound(path)
    done = 0
    with path.open("rb") as f:
        f.seek(bom)
        while True:
            chunk = f.read(_CHUNK)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path} is not {codec.upper()} text (undecodable bytes near byte "
                    f"{bom + done + exc.start}): save it as CSV in UTF-8"
                ) from None
            if "\x00" in text:
                raise InputError(f"{path} holds NUL bytes: it is binary or UTF-16 without a "
                                 "byte-order mark, not a CSV text file; save it as CSV in UTF-8")
            bound.feed(text)
            if not chunk:
                return
            done += len(chunk)


def _words(name: str) -> set[str]:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return {w for w in re.split(r"[^a-z0-9]+", plain) if w}


def _is_number_header(name: str) -> bool:
    words = _words(name)
    return bool(words & _KEYWORDS) or any(k in w for w in words for k in _COMPOUND)


def number_header(names: list[str], path: Path) -> str | None:
    """The one header naming the numbers: ``number`` itself, else the only one named like a
    phone column; several such (``phone`` and ``emergency contact``) are refused, not guessed."""
    if "number" in (n.casefold() for n in names):
        return next(n for n in names if n.casefold() == "number")
    found = [n for n in names if _is_number_header(n)]
    if len(found) > 1:
        listed = ", ".join(map(repr, found))
        raise InputError(f"{path}: several columns could hold the numbers ({listed}): pass "
                         "--column NAME|INDEX to say which (Campaign(column=...))")
    return found[0] if found else None


def _pick_column(cells: list[str], column: str | int | None, path: Path) -> int | None:
    """The number column's index if ``cells`` is a header, None if it is already data."""
    names = [c.strip() for c in cells]
    listed = ", ".join(repr(n) for n in names)
    if isinstance(column, int):
        if column < 1:
            raise InputError("column index is 1-based: the first column is 1")
        index = column - 1
        cell = cells[index] if index < len(cells) else ""
        return index if not any(ch.isdigit() for ch in cell) else None
    if column is not None:
        folded = [n.casefold() for n in names]
        if column.strip().casefold() not in folded:
            raise InputError(f"{path} has no column {column!r}; its first record is: {listed}")
        return folded.index(column.strip().casefold())
    if sum(ch.isdigit() for ch in cells[0]) >= 7:
        return None  # a phone number in the first cell: data, whatever the other cells say
    found = number_header(names, path)
    if found is not None:
        return names.index(found)
    if any(ch.isdigit() for ch in cells[0]):
        return None  # no header: the first column holds the numbers
    if len(cells) == 1:
        return 0  # a single column with a heading of its own
    raise InputError(f"{path}: cannot tell which column holds the numbers (columns: {listed}); "
                     "name it 'number' or 'phone', or pass --column NAME|INDEX")


def inspect_csv(path: Path, column: str | int | None = None) -> CsvLayout:
    """Check ``path`` is a CSV of numbers and return its layout, or raise :class:`InputError`."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise InputError(f"cannot read the numbers file {path}: {exc.strerror or exc}") from None
    codec, bom = _encoding(head, path)
    _check_text(path, codec, bom)
    layout = _first_record(path, codec, bom, column)
    if layout is None:
        raise InputError(f"{path} holds no numbers (empty, or only blank lines and comments)")
    if not layout.entries:
        raise InputError(f"{path} holds a header and no numbers")
    return layout


def _first_record(path: Path, codec: str, bom: int, column: str | int | None) -> (
    CsvLayout | None
):
    offset, line = bom, 0
    header: CsvLayout | None = None
    raw = path.open("rb")
    raw.seek(bom)
    with io.TextIOWrapper(raw, encoding=codec, newline="") as lines:
        for text in bounded_lines(lines, path):
            start_offset, start_line = offset, line
            offset += len(text.encode(codec))
            line += 1
            if skippable((text,)):
                continue
            if header is not None:
                return _with_entries(header)
            delimiter = max(_DELIMITERS, key=text.count) if any(
                d in text for d in _DELIMITERS) else ","
            cells = next(csv.reader([text], delimiter=delimiter), [""]) or [""]
            index = _pick_column(cells, column, path)
            if index is None:
                idx = column - 1 if isinstance(column, int) else 0
                return CsvLayout(codec, bom, delimiter, idx, start_offset, start_line, True)
            header = CsvLayout(codec, bom, delimiter, index, offset, line, False)
    return header


def _with_entries(layout: CsvLayout) -> CsvLayout:
    return CsvLayout(layout.codec, layout.bom, layout.delimiter, layout.column,
                     layout.data_offset, layout.data_line, True)


class CsvReader:
    """A CSV's entries from a resume point (:class:`~ryze_async._campaign.inputs.FileReader`)."""

    def __init__(self, path: Path, layout: CsvLayout, start: Position) -> None:
        self._file = TextFile(path, layout.codec, layout.data_offset, layout.data_line, start)
        self.restarted = self._file.restarted
        self._column = layout.column
        self._records = self._rows(csv.reader(self._file.lines, delimiter=layout.delimiter))

    def _rows(self, reader: Iterator[list[str]]) -> Iterator[list[str]]:
        while True:
            start_line = self._file.line + 1
            try:
                row = next(reader, None)
            except csv.Error as exc:  # a quoted field never closed, or past csv's limit
                raise InputError(f"{self._file.path} line {start_line} is not CSV ({exc}): close "
                                 "the quote, or save the file as CSV again") from None
            if row is None:
                return
            yield row

    def read(self, size: int) -> NumberBatch:
        return text_batch(self._file, self._records, self._column, size)

    def close(self) -> None:
        self._file.close()
