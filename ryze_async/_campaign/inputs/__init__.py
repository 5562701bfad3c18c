"""Streaming input of phone numbers for a campaign.

A campaign's numbers come from any ``Iterable[str]`` or ``AsyncIterable[str]``, or from a CSV file
given by path. Nothing is loaded whole: the source yields small batches, each carrying the position
to resume from, so a journal can store "ingested up to here" in the same transaction as the rows.

CSV rules (documented in docs/campaigns.md, "Input"; see ``inputs/csv.py``): UTF-8, or
UTF-8/UTF-16 with a byte-order mark; the number column is found by its header or given
(``column``); blank lines and ``#`` lines are skipped; so are blank strings and ``#`` strings
from an iterable.

Resume positions. For a CSV file: the byte offset after the last record read, the lines read,
and the sha256 of the bytes ``[0, offset)``. A resume seeks to the offset only when the file's
first ``offset`` bytes still hash the same and end a line (the file was only appended to);
otherwise the file changed under the journal and is read again from the start
(``restarted``), every entry going through the journal's dedupe. An iterable cannot seek, and
nothing says it yields the same items again: it is always read again from the start.
"""

from __future__ import annotations

import asyncio
import csv as stdlib_csv  # the package's own ``csv`` submodule takes the name ``csv`` here
import functools
import hashlib
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeAlias

from ... import InputError
from ..persons import Untrusted, entry_text, whole_number
from .csv import CsvLayout, bounded_lines, inspect_csv, skippable
from .jsonl import InputKind, XlsxReader, input_kind, inspect_jsonl, jsonl_rows

__all__ = ["NumberBatch", "NumberSource", "NumbersInput", "Position"]

NumbersInput: TypeAlias = Iterable[str] | AsyncIterable[str] | str | os.PathLike[str]
_CHUNK = 1 << 16
_NEWLINES = {"\n", "\r"}


@dataclass(frozen=True, slots=True)
class Position:
    """Where ingestion stopped: byte offset (CSV) or item count (iterable), lines consumed, and
    the sha256 of the consumed CSV bytes (empty for an iterable)."""

    offset: int = 0
    line: int = 0
    digest: str = ""


@dataclass(frozen=True, slots=True)
class NumberBatch:
    """Entries read from a source, and where to resume after them.

    ``entries`` are ``(line, raw)`` pairs: ``line`` is the 1-based physical line of the CSV record
    (or the 1-based item position in an iterable), ``raw`` the text as found. ``position`` is
    the resume point after the batch.
    """

    entries: list[tuple[int, str]]
    position: Position


_Batches = AsyncIterator[NumberBatch]
_Rows = Callable[[Iterator[str]], Iterator[list[str]]]


class _CsvReader:
    """Reads records from a resume point, hashing every byte consumed since offset 0.

    ``csv.reader`` pulls exactly the lines a record needs (quoted fields may span lines), so the
    offset seen after each record is the exact resume point.
    """

    def __init__(self, path: Path, layout: CsvLayout, start: Position,
                 parse: _Rows | None = None) -> None:
        self._codec = layout.codec
        self._hash = hashlib.sha256()
        self._file: IO[bytes] = path.open("rb")
        try:
            self.restarted = start.offset > 0 and not self._resume(start)
            if start.offset == 0 or self.restarted:
                self._file.seek(0)
                self._hash = hashlib.sha256(self._file.read(layout.data_offset))
                self.offset, self.line = layout.data_offset, layout.data_line
        except BaseException:
            self._file.close()
            raise
        self._column, self._path = layout.column, path
        self._text = io.TextIOWrapper(self._file, encoding=self._codec, newline="")
        lines = self._lines(self._text)
        self._rows = parse(lines) if parse else stdlib_csv.reader(lines, delimiter=layout.delimiter)

    def _resume(self, start: Position) -> bool:
        """Hash the first ``start.offset`` bytes; True (positioned there) if they match."""
        if not start.digest:
            return False
        left, tail = start.offset, b""
        while left:
            chunk = self._file.read(min(left, _CHUNK))
            if not chunk:
                return False  # the file is now shorter than what was read
            self._hash.update(chunk)
            tail = (tail + chunk)[-4:]
            left -= len(chunk)
        if self._hash.hexdigest() != start.digest:
            return False
        # Appending to a file whose last line had no newline extends that line: re-read.
        last = tail[-2:] if self._codec.startswith("utf-16") else tail[-1:]
        if last.decode(self._codec, "replace") not in _NEWLINES:
            return False
        self.offset, self.line = start.offset, start.line
        return True

    def _lines(self, text: IO[str]) -> Iterator[str]:
        # Bounded: the file may have grown since it was checked.
        for line in bounded_lines(text, self._path, self.line + 1):
            data = line.encode(self._codec)
            self._hash.update(data)
            self.offset += len(data)
            self.line += 1
            yield line

    def position(self) -> Position:
        return Position(self.offset, self.line, self._hash.hexdigest())

    def read(self, size: int) -> NumberBatch:
        entries: list[tuple[int, str]] = []
        while len(entries) < size:
            start_line = self.line + 1
            try:
                row = next(self._rows, None)
            except stdlib_csv.Error as exc:  # a quoted field never closed, or past csv's limit
                raise InputError(f"{self._path} line {start_line} is not CSV ({exc}): close "
                                 "the quote, or save the file as CSV again") from None
            if row is None:
                break
            if skippable(row):
                continue
            cell = row[self._column] if self._column < len(row) else ""
            entries.append((start_line, entry_text(cell)))
        return NumberBatch(entries, self.position())

    def close(self) -> None:
        self._text.close()


class NumberSource:
    """A streamed source of numbers: an iterable, an async iterable, or a file's path.

    A ``str`` or ``os.PathLike`` is a path (pass ``[number]`` for a single number): a CSV, an
    ``.xlsx`` workbook or JSON Lines (``inputs/jsonl.py``). Items of an iterable must be ``str``
    (``int`` is accepted and converted; a float or bool is an invalid entry). ``column`` (files
    only) names the number column by header or 1-based index (JSON Lines: the key); ``sheet``
    a workbook's sheet (default: the first visible) by name or 1-based index.
    """

    def __init__(self, numbers: NumbersInput, column: str | int | None = None,
                 sheet: str | int | None = None) -> None:
        self._path: Path | None = None
        self._items: Iterable[str] | AsyncIterable[str] = ()
        self._column = column
        self._sheet = sheet
        self._kind: InputKind | None = None
        self._layout: CsvLayout | None = None
        #: True once :meth:`batches` found it could not resume where the journal stopped and
        #: started again from the first entry.
        self.restarted = False
        if isinstance(numbers, str | os.PathLike):
            self._path = Path(numbers)
        else:
            self._items = numbers

    async def use_recorded(self, column: str, sheet: str) -> None:
        """Read the column and sheet the campaign recorded ("": found by the header) where
        this run gave none, and check the file again with them."""
        if self._path is None or not (column or sheet) or \
                (self._column is not None and self._sheet is not None):
            return
        if self._column is None and column:
            self._column = int(column) if column.isdigit() else column
        if self._sheet is None and sheet:
            self._sheet = int(sheet) if sheet.isdigit() else sheet
        await self.check()

    async def check(self) -> None:
        """Refuse a file that is not a list of numbers (``InputError``); no-op for an
        iterable."""
        if self._path is not None:
            await asyncio.to_thread(self._check_file, self._path)

    def _check_file(self, path: Path) -> None:
        self._kind = input_kind(path)
        if self._sheet is not None and self._kind != "xlsx":
            raise InputError(f"{path} is read as {self._kind.upper()}, which has no sheets: "
                             "--sheet applies to an .xlsx workbook")
        if self._kind == "csv":
            self._layout = inspect_csv(path, self._column)
        elif self._kind == "jsonl":
            inspect_jsonl(path, self._column)
        else:
            XlsxReader(path, self._sheet, self._column).close()

    async def open(self, start: Position, size: int = 1000) -> _Batches:
        """Position the source at ``start`` (or at its beginning, setting :attr:`restarted`)
        and return the batches of at most ``size`` entries that follow."""
        if self._path is None:
            self.restarted = start.offset > 0
            items = self._items
            if not isinstance(items, AsyncIterable):
                items = _yielding(items, size)
            return _item_batches(items, size)
        if self._kind is None:
            await self.check()
        if self._kind == "xlsx":
            return await self._open_xlsx(self._path, start, size)
        parse: _Rows | None = None
        layout = self._layout
        if self._kind == "jsonl":
            jl = await asyncio.to_thread(inspect_jsonl, self._path, self._column)
            layout = CsvLayout("utf-8", jl.bom, ",", 0, jl.bom, 0, True)
            parse = functools.partial(jsonl_rows, layout=jl, path=self._path)
        elif layout is None:
            layout = await asyncio.to_thread(inspect_csv, self._path, self._column)
        reader = await asyncio.to_thread(_CsvReader, self._path, layout, start, parse)
        self.restarted = reader.restarted
        return _csv_batches(reader, size)

    async def _open_xlsx(self, path: Path, start: Position, size: int) -> _Batches:
        reader = await asyncio.to_thread(XlsxReader, path, self._sheet, self._column)
        resume = start.offset > 0 and start.digest == reader.digest
        self.restarted = start.offset > 0 and not resume
        return _xlsx_batches(reader, start.offset if resume else reader.data_row - 1, size)


def _xlsx_read(reader: XlsxReader, rows: Iterator[tuple[int, list[str]]], done: int,
               size: int) -> NumberBatch:
    """The next ``size`` entries after sheet row ``done``; the position is the last row read."""
    entries: list[tuple[int, str]] = []
    for at, cells in rows:
        done = at
        if skippable(cells or [""]):
            continue
        cell = cells[reader.column] if reader.column < len(cells) else ""
        entries.append((at, entry_text(cell)))
        if len(entries) >= size:
            break
    return NumberBatch(entries, Position(done, done, reader.digest))


async def _xlsx_batches(reader: XlsxReader, skip: int, size: int) -> _Batches:
    try:
        rows = (row for row in reader.rows() if row[0] > skip)
        done, first = skip, True
        while True:
            batch = await asyncio.to_thread(_xlsx_read, reader, rows, done, size)
            done = batch.position.offset
            if batch.entries or first:
                yield batch
            first = False
            if len(batch.entries) < size:
                return
    finally:
        reader.close()


async def _csv_batches(reader: _CsvReader, size: int) -> _Batches:
    try:
        first = True
        while True:
            batch = await asyncio.to_thread(reader.read, size)
            if batch.entries or first:
                # The first batch is yielded even when empty: it stores the (maybe new) start.
                yield batch
            first = False
            if len(batch.entries) < size:
                return
    finally:
        reader.close()


def _item(item: object) -> str:
    """An iterable's item as an entry. A float or a bool is a value, not a mistake of type (a
    pandas column with a gap is floats): an invalid entry with its reason, since the calls of
    earlier items are already under way. Anything else is a programming error."""
    if isinstance(item, str):
        return item
    if isinstance(item, bool):
        return Untrusted(repr(item), "a bool, not a phone number; give numbers as str")
    if isinstance(item, int):
        return whole_number(item, "an int")
    if isinstance(item, float):
        return Untrusted(repr(item), "a float: its digits may not be the ones meant (and a "
                         "dot read as a separator adds digits); give numbers as str")
    raise TypeError(f"numbers must be str, got {type(item).__name__}")


async def _yielding(items: Iterable[str], every: int) -> AsyncIterator[str]:
    for count, item in enumerate(items, 1):
        yield item
        if count % every == 0:
            await asyncio.sleep(0)  # a long list must not monopolise the event loop


async def _item_batches(items: AsyncIterable[str], size: int) -> _Batches:
    entries: list[tuple[int, str]] = []
    index = 0
    async for item in items:
        index += 1
        text = _item(item)
        if not skippable((text,)):
            entries.append((index, entry_text(text)))
        if len(entries) >= size:
            yield NumberBatch(entries, Position(index, index))
            entries = []
    yield NumberBatch(entries, Position(index, index))
