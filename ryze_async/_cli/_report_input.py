"""``report --csv FILE --input NUMBERS.csv``: the input's columns (name, notes, ...) beside each
number's state.

The journal keeps each number and its input line, not the rest of the row: names and notes are
personal data the engine never needs, and a journal is copied around more than an input list.
So the columns come from the input itself, matched by line, and only when it is the file the
journal read: its first bytes must hash as the journal's resume fingerprint (the sha256 of
what ingestion consumed); an edited file is refused, since its lines may hold other people now.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

# Imported only when ``report --input`` runs: the journal is loaded already.
from ryze_async import InputError
from ryze_async._campaign.inputs import skippable
from ryze_async._campaign.inputs.csv import inspect_csv
from ryze_async._campaign.journal.schema import open_owner_only

from ._exits import UsageError

if TYPE_CHECKING:
    from ryze_async._campaign.journal import JournalStore

__all__ = ["export_with_input"]

_CHUNK = 1 << 20


def _check_unchanged(path: Path, offset: int, digest: str) -> None:
    if not path.is_file():
        raise UsageError(f"--input {path}: no such file")
    if not offset or not digest:
        raise UsageError("--input: the journal holds no fingerprint of a CSV input (an "
                         "iterable, a workbook, or nothing read yet)")
    sha, left = hashlib.sha256(), offset
    with path.open("rb") as f:
        while left and (chunk := f.read(min(left, _CHUNK))):
            sha.update(chunk)
            left -= len(chunk)
    if left or sha.hexdigest() != digest:
        raise UsageError(f"--input {path}: not the file this journal read (it changed since): "
                         "its lines cannot be matched to the journal's numbers")


def _records(path: Path) -> tuple[list[str], dict[int, list[str]]]:
    """(the header's names, or none; every record's cells by the physical line it starts on)."""
    layout = inspect_csv(path)
    counted = [0]

    def lines(text: IO[str]) -> Iterator[str]:
        for line in iter(text.readline, ""):
            counted[0] += 1
            yield line

    rows: dict[int, list[str]] = {}
    with path.open("rb") as raw:
        raw.seek(layout.bom)
        text = io.TextIOWrapper(raw, encoding=layout.codec, newline="")
        reader = csv.reader(lines(text), delimiter=layout.delimiter)
        start = counted[0] + 1
        for cells in reader:
            rows[start] = cells
            start = counted[0] + 1
    header = rows.get(layout.data_line, [])
    # Without a header the first entry's line is past data_line (or data_line is 0).
    return ([] if skippable(header or [""]) else header), rows


def _names(header: list[str], width: int, taken: list[str]) -> list[str]:
    names = [header[i] if i < len(header) and header[i] else f"column_{i + 1}"
             for i in range(width)]
    return [f"input_{n}" if n in taken else n for n in names]


def join(export: TextIO, header: list[str], rows: dict[int, list[str]], out: TextIO) -> int:
    """Copy the journal's CSV ``export`` to ``out``, each row followed by its input's cells."""
    reader = csv.reader(export)
    columns = next(reader)
    width = max((len(c) for c in rows.values()), default=0)
    writer = csv.writer(out)
    writer.writerow([*columns, *_names(header, width, columns)])
    written = 0
    for row in reader:
        cells = rows.get(int(row[0]), []) if row[0].isdigit() else []
        writer.writerow([*row, *cells, *[""] * (width - len(cells))])
        written += 1
    return written


def _write(export: TextIO, header: list[str], rows: dict[int, list[str]],
           out: Path | TextIO) -> int:
    if not isinstance(out, Path):
        written = join(export, header, rows, out)
        out.flush()
        return written
    with open_owner_only(out, newline="") as f:
        return join(export, header, rows, f)


async def export_with_input(store: JournalStore, source: Path, out: Path | TextIO) -> int:
    """``report --csv`` with the input's columns."""
    offset, _, digest = await store.ingest_position()
    try:
        await asyncio.to_thread(_check_unchanged, source, offset, digest)
        header, rows = await asyncio.to_thread(_records, source)
    except InputError as exc:
        raise UsageError(f"--input: {exc}") from None
    # The journal's rows go through a private temporary file (owner-only, deleted on close).
    with tempfile.TemporaryFile("w+", newline="", encoding="utf-8") as export:
        await store.export_csv(export)
        export.seek(0)
        return await asyncio.to_thread(_write, export, header, rows, out)
