"""Streaming input of phone numbers for a campaign (:class:`NumberSource`).

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
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ... import InputError
from . import (
    FileReader,
    InputKind,
    NumberBatch,
    Position,
    Untrusted,
    entry_text,
    input_kind,
    skippable,
    whole_number,
)
from .csv import CsvLayout, CsvReader, inspect_csv
from .jsonl import JsonlReader, inspect_jsonl

if TYPE_CHECKING:
    from .xlsx import XlsxReader

__all__ = ["NumberSource", "NumbersInput"]

NumbersInput: TypeAlias = Iterable[str] | AsyncIterable[str] | str | os.PathLike[str]


_Batches = AsyncIterator[NumberBatch]


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
            _xlsx_reader()(path, self._sheet, self._column).close()

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
        reader = await asyncio.to_thread(self._reader, self._path, start)
        self.restarted = reader.restarted
        return _batches(reader, size)

    def _reader(self, path: Path, start: Position) -> FileReader:
        """The file's reader (one per format), positioned at ``start``."""
        if self._kind == "xlsx":
            workbook = _xlsx_reader()(path, self._sheet, self._column)
            workbook.seek(start)
            return workbook
        if self._kind == "jsonl":
            return JsonlReader(path, inspect_jsonl(path, self._column), start)
        return CsvReader(path, self._layout or inspect_csv(path, self._column), start)


def _xlsx_reader() -> type[XlsxReader]:
    """The workbook reader, imported for an ``.xlsx`` input only (it loads zipfile)."""
    from .xlsx import XlsxReader  # noqa: PLC0415
    return XlsxReader


async def _batches(reader: FileReader, size: int) -> _Batches:
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
