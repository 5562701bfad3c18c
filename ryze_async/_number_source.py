"""Streaming input of phone numbers for a campaign.

A campaign's numbers come from any ``Iterable[str]`` or ``AsyncIterable[str]``, or from a CSV file
given by path. Nothing is loaded whole: the source yields small batches, each carrying the position
to resume from, so a journal can store "ingested up to here" in the same transaction as the rows.

CSV rules (documented in the README):

- the number is the first column, or the column whose header is ``number`` (case-insensitive);
- a header row is optional: the first record is a header if one of its cells is ``number`` or its
  first cell contains no digit at all (``phone``, ``telefone``...);
- the delimiter is the most frequent of ``,`` ``;`` and tab on the first record (default ``,``);
- blank lines and lines whose first cell starts with ``#`` are skipped; so are blank strings and
  ``#`` strings from an iterable;
- UTF-8, with or without a byte-order mark; undecodable bytes become U+FFFD (the number is then
  reported invalid rather than crashing the run).

Resume positions: for a CSV file, the byte offset after the last record read (the file is seeked
there, never re-read); for an iterable, the count of items consumed (they are skipped again on
resume, since an iterable cannot seek). Lines appended to a CSV after a run are picked up by the
next run.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeAlias

__all__ = ["NumberBatch", "NumberSource", "NumbersInput"]

NumbersInput: TypeAlias = Iterable[str] | AsyncIterable[str] | str | os.PathLike[str]

_DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True, slots=True)
class NumberBatch:
    """Entries read from a source, and where to resume after them.

    ``entries`` are ``(line, raw)`` pairs: ``line`` is the 1-based physical line of the CSV record
    (or the 1-based item position in an iterable), ``raw`` the text as found. ``offset``/``line``
    are the resume point after the batch: byte offset and lines consumed (CSV), or the count of
    items consumed, in both fields (iterable).
    """

    entries: list[tuple[int, str]]
    offset: int
    line: int


def _skippable(cell: str) -> bool:
    text = cell.strip()
    return not text or text.startswith("#")


class _CsvLayout:
    """What the first record of a CSV says: delimiter, number column, where the data starts."""

    def __init__(self, delimiter: str, column: int, data_offset: int, data_line: int) -> None:
        self.delimiter = delimiter
        self.column = column
        self.data_offset = data_offset
        self.data_line = data_line

    @classmethod
    def detect(cls, path: Path) -> _CsvLayout:
        offset = 0
        line = 0
        with path.open("rb") as f:
            for raw in iter(f.readline, b""):
                start_offset, start_line = offset, line
                offset += len(raw)
                line += 1
                text = raw.decode("utf-8", "replace")
                if start_offset == 0:
                    text = text.removeprefix("\ufeff")
                if _skippable(text):
                    continue
                delimiter = max(_DELIMITERS, key=text.count) if any(
                    d in text for d in _DELIMITERS) else ","
                cells = next(csv.reader([text], delimiter=delimiter), [""])
                names = [c.strip().lower() for c in cells]
                if "number" in names:
                    return cls(delimiter, names.index("number"), offset, line)
                if cells and not any(ch.isdigit() for ch in cells[0]):
                    return cls(delimiter, 0, offset, line)
                # No header: the data starts at this very record.
                return cls(delimiter, 0, start_offset, start_line)
        return cls(",", 0, offset, line)


class _CsvReader:
    """Reads records from a byte offset, tracking the offset after each complete record.

    ``csv.reader`` pulls exactly the lines a record needs (quoted fields may span lines), so the
    offset seen after each record is the exact resume point.
    """

    def __init__(self, path: Path, layout: _CsvLayout, offset: int, line: int) -> None:
        size = path.stat().st_size
        if offset > size:
            raise ValueError(
                f"{path} is shorter ({size} bytes) than the part the journal already ingested "
                f"({offset} bytes): was it replaced? Use the original file or a new journal."
            )
        self._file: IO[bytes] = path.open("rb")
        self._file.seek(offset)
        self.offset = offset
        self.line = line
        self._column = layout.column
        self._rows = csv.reader(self._lines(), delimiter=layout.delimiter)

    def _lines(self) -> Iterator[str]:
        for raw in iter(self._file.readline, b""):
            first = self.offset == 0
            self.offset += len(raw)
            self.line += 1
            text = raw.decode("utf-8", "replace")
            yield text.removeprefix("\ufeff") if first else text

    def read(self, size: int) -> NumberBatch:
        entries: list[tuple[int, str]] = []
        while len(entries) < size:
            start_line = self.line + 1
            row = next(self._rows, None)
            if row is None:
                break
            if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            cell = row[self._column] if self._column < len(row) else ""
            entries.append((start_line, cell.strip()))
        return NumberBatch(entries, self.offset, self.line)

    def close(self) -> None:
        self._file.close()


class NumberSource:
    """A streamed source of numbers: an iterable, an async iterable, or a CSV path.

    A ``str`` or ``os.PathLike`` is a CSV path (pass ``[number]`` for a single number). Items of an
    iterable must be ``str`` (``int`` is accepted and converted).
    """

    def __init__(self, numbers: NumbersInput) -> None:
        self._path: Path | None = None
        self._sync: Iterable[str] = ()
        self._async: AsyncIterable[str] | None = None
        if isinstance(numbers, str | os.PathLike):
            self._path = Path(numbers)
        elif isinstance(numbers, AsyncIterable):
            self._async = numbers
        else:
            self._sync = numbers

    @property
    def description(self) -> str:
        return str(self._path) if self._path is not None else "iterable"

    @property
    def seekable(self) -> bool:
        """True for a CSV path (resume seeks); False for an iterable (resume skips items)."""
        return self._path is not None

    async def batches(
        self, *, offset: int = 0, line: int = 0, size: int = 1000
    ) -> AsyncIterator[NumberBatch]:
        """Yield batches of at most ``size`` entries, starting at a stored resume point."""
        if self._path is not None:
            async for batch in self._csv_batches(self._path, offset, line, size):
                yield batch
        elif self._async is not None:
            async for batch in _async_batches(self._async, offset, size):
                yield batch
        else:
            for batch in _sync_batches(self._sync, offset, size):
                yield batch
                # A long list must not monopolise the event loop between batches.
                await asyncio.sleep(0)

    @staticmethod
    async def _csv_batches(
        path: Path, offset: int, line: int, size: int
    ) -> AsyncIterator[NumberBatch]:
        layout = await asyncio.to_thread(_CsvLayout.detect, path)
        if offset < layout.data_offset:
            offset, line = layout.data_offset, layout.data_line
        reader = await asyncio.to_thread(_CsvReader, path, layout, offset, line)
        try:
            while True:
                batch = await asyncio.to_thread(reader.read, size)
                if batch.entries:
                    yield batch
                if len(batch.entries) < size:
                    if not batch.entries and batch.offset != offset:
                        # Only skipped lines at the end: still move the resume point past them.
                        yield batch
                    return
                offset = batch.offset
        finally:
            reader.close()


def _item(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    raise TypeError(f"numbers must be str, got {type(item).__name__}")


def _sync_batches(items: Iterable[str], offset: int, size: int) -> Iterator[NumberBatch]:
    entries: list[tuple[int, str]] = []
    index = 0
    for item in items:
        index += 1
        if index <= offset:
            continue
        text = _item(item)
        if not _skippable(text):
            entries.append((index, text.strip()))
        if len(entries) >= size:
            yield NumberBatch(entries, index, index)
            entries = []
    if entries or index > offset:
        yield NumberBatch(entries, max(index, offset), max(index, offset))


async def _async_batches(
    items: AsyncIterable[str], offset: int, size: int
) -> AsyncIterator[NumberBatch]:
    entries: list[tuple[int, str]] = []
    index = 0
    async for item in items:
        index += 1
        if index <= offset:
            continue
        text = _item(item)
        if not _skippable(text):
            entries.append((index, text.strip()))
        if len(entries) >= size:
            yield NumberBatch(entries, index, index)
            entries = []
    if entries or index > offset:
        yield NumberBatch(entries, max(index, offset), max(index, offset))
