"""What a campaign reads: entries, where a read stopped, and the one interface every reader has.

A campaign's numbers come from an iterable or a file (``source.py``: :class:`NumberSource`
streams them in batches). Each file format has one reader behind :class:`FileReader`: a CSV
(``csv.py``), a ``.xlsx`` workbook (``xlsx.py``) and JSON Lines (``jsonl.py``); the line-based
ones (CSV, JSON Lines) read through :class:`TextFile`, which resumes at a byte offset only when
the bytes before it are the same. :func:`input_kind` says which kind a file is.

An entry is read with the client's rules, and keeps a stored form that reads the same
(:func:`entry_text`, :class:`Untrusted`); :func:`person_key` is the dedupe key: one person,
however the number is written (the journal's and the opt-out lists' alike).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

from ... import InputError, InvalidRequestError, normalize_number

if TYPE_CHECKING:
    from ... import NumberCheck

__all__ = [
    "MAX_LINE_CHARS", "FileReader", "InputKind", "NumberBatch", "Numeric", "Position", "TextFile",
    "Untrusted", "bounded_lines", "entry_text", "input_kind", "number_normalizer", "person_key",
    "skippable", "text_batch", "whole_number",
]

#: E.164 numbers have at most 15 digits; a float holds 15 significant digits exactly.
_MAX_NUMBER = 10**15
_PERSONAL_JID = "@s.whatsapp.net"
# A Brazilian mobile's WhatsApp id from before the ninth digit: 55, an area code (DDD; the set
# libphonenumber's metadata for BR knows), 8 digits in an old mobile range (6 to 9). Since the
# ninth digit (2012-2016) mobiles are 9 + 8 digits, so such an id is the mobile with the 9 put
# back. Not merged: 2-5 (fixed lines, assigned today; 55 11 2345-6789 is not 55 11 9 2345-6789).
# 7 is ambiguous (an old mobile range, and some 8-digit 7 numbers are still assigned): merged,
# because this key also decides who an opt-out list names, and a missed call is the lesser harm
# than a call to someone who opted out (the second entry is skipped as a duplicate, never called).
_BR_OLD_MOBILE = re.compile(
    r"55((?:[14689][1-9]|2[12478]|3[1-578]|5[13-5]|7[13-579]))([6-9]\d{7})")


class Untrusted(str):
    """A typed value (an Excel cell, a JSON number) whose digits are not exactly what the user
    wrote: its text as found, and why. Invalid at ingest with that reason, never normalised
    (``"551190000000.5"`` read as text would be the number 5511900000005)."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Untrusted:
        self = super().__new__(cls, text)
        self.reason = reason
        return self


class Numeric(str):
    """The digits of a number typed as a number (an Excel cell, a JSON int): any leading zero
    is gone, so read in a region they are checked against the same digits with one."""


def entry_text(cell: str) -> str:
    """A cell as an entry's raw text: stripped, a typed value kept as it is."""
    return cell if isinstance(cell, Untrusted | Numeric) else cell.strip()


def whole_number(value: int, what: str) -> str:
    """A non-negative integer's digits, or :class:`Untrusted` when they cannot be a number the
    user typed (``what`` names where it came from: "an Excel number", "a JSON number")."""
    if value < 0:
        return Untrusted(str(value), f"{what} that is negative ({value}): not a phone number")
    if value >= _MAX_NUMBER:
        return Untrusted(str(value), f"{what} with more than 15 digits: no phone number is "
                         "that long, and a float does not keep them exactly; store numbers "
                         "as text")
    return Numeric(str(value))


def _same_with_zero(digits: str, number: str, region: str, check: NumberCheck) -> None:
    """Refuse typed digits that are another valid number with the leading zero a typed number
    drops (Gabon's 06 03 12 34 typed as 6031234: +241 6031234 is someone else)."""
    try:
        other = normalize_number("0" + digits, default_region=region, number_check=check)
    except InvalidRequestError:
        return
    if other != number:
        raise InvalidRequestError(
            f"{digits} was typed as a number, which drops a leading zero: as {digits} it is "
            f"+{number}, as 0{digits} +{other} in {region}; store the numbers as text",
            field="number")


def number_normalizer(
    default_region: str | None = None, number_check: NumberCheck = "valid"
) -> Callable[[str], str]:
    """``normalize_number`` for a campaign's ingest: its result must read the same again.

    A campaign stores the wire form and the client normalises it once more when it calls, so a
    stored number must read the same again: with a region, a foreign number's E.164 digits may
    also be a valid national number there (+66 97 017 0001's digits are a Brazilian mobile).
    Such an entry is refused at ingest, before anyone could be called in the wrong country.
    """

    def normalize(raw: str) -> str:
        if isinstance(raw, Untrusted):
            raise InvalidRequestError(raw.reason, field="number")
        number = normalize_number(raw, default_region=default_region, number_check=number_check)
        if isinstance(raw, Numeric) and default_region is not None:
            _same_with_zero(raw, number, default_region, number_check)
        # Without a region the stored digits are E.164, which read as themselves: the check
        # would parse every entry a second time for nothing (issue 18).
        if "@" not in number and default_region is not None:
            again = normalize_number(number, default_region=default_region,
                                     number_check=number_check)
            if again != number:
                raise InvalidRequestError(
                    f"number {raw!r} is +{number}, but its digits {number} read as +{again} in "
                    f"{default_region}, and a campaign stores the digits: run numbers of other "
                    "countries in a campaign without a default region",
                    field="number",
                )
        return number

    return normalize


def person_key(number: str) -> str:
    """The person a normalised number names, as one key: the digits, whether written as a
    number or as a personal JID, and a Brazilian mobile's old id without the ninth digit as
    the mobile (``551187654321@s.whatsapp.net`` is ``5511987654321``). The one rule for "the
    same person": the journal's dedupe and the opt-out lists both use it. Other addresses
    (``@lid``) keep their domain: they are no phone number."""
    digits = number.removesuffix(_PERSONAL_JID)
    old = _BR_OLD_MOBILE.fullmatch(digits)
    return f"55{old[1]}9{old[2]}" if old else digits


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

class FileReader(Protocol):
    """One reader per file format (``csv.CsvReader``, ``xlsx.XlsxReader``,
    ``jsonl.JsonlReader``), positioned at a resume point when opened."""

    #: True if it could not resume where the journal stopped and reads from the first entry.
    restarted: bool

    def read(self, size: int) -> NumberBatch:
        """The next ``size`` entries at most (fewer: the file ends), and where to resume."""
        ...

    def close(self) -> None: ...


_CHUNK = 1 << 16
_NEWLINES = {"\n", "\r"}


class TextFile:
    """A line-based file (CSV, JSON Lines) read from a resume point, hashing every byte consumed
    since offset 0.

    Its reader pulls exactly the lines a record needs (a CSV's quoted fields may span lines), so
    the offset seen after each record is the exact resume point. ``data_offset`` and
    ``data_line`` are where the records start (after a BOM and any header).
    """

    def __init__(self, path: Path, codec: str, data_offset: int, data_line: int,
                 start: Position) -> None:
        self._codec = codec
        self._hash = hashlib.sha256()
        self._file: IO[bytes] = path.open("rb")
        try:
            self.restarted = start.offset > 0 and not self._resume(start)
            if start.offset == 0 or self.restarted:
                self._file.seek(0)
                self._hash = hashlib.sha256(self._file.read(data_offset))
                self.offset, self.line = data_offset, data_line
        except BaseException:
            self._file.close()
            raise
        self.path = path
        self._text = io.TextIOWrapper(self._file, encoding=self._codec, newline="")
        #: The lines from the resume point on, each counted and hashed as it is read.
        self.lines = self._lines(self._text)

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
        for line in bounded_lines(text, self.path, self.line + 1):
            data = line.encode(self._codec)
            self._hash.update(data)
            self.offset += len(data)
            self.line += 1
            yield line

    def position(self) -> Position:
        return Position(self.offset, self.line, self._hash.hexdigest())

    def close(self) -> None:
        self._text.close()

def text_batch(file: TextFile, rows: Iterator[list[str]], column: int, size: int) -> NumberBatch:
    """The next ``size`` entries of a line-based file's records (``rows``, read from ``file``)."""
    entries: list[tuple[int, str]] = []
    while len(entries) < size:
        start_line = file.line + 1
        row = next(rows, None)
        if row is None:
            break
        if skippable(row):
            continue
        cell = row[column] if column < len(row) else ""
        entries.append((start_line, entry_text(cell)))
    return NumberBatch(entries, file.position())


#: The longest line a numbers file (CSV, JSON Lines) may hold, in characters. A list's lines
#: are a few dozen; a longer one is no list of numbers, and reading it would hold it whole.
MAX_LINE_CHARS = 1 << 20
_LINE_END = re.compile(r"\r\n|\r|\n")


def _too_long(path: Path, line: int) -> InputError:
    return InputError(f"{path} line {line} is longer than {MAX_LINE_CHARS} characters: not a "
                      "list of numbers; refused")


class _LineBound:
    """Refuses a text, fed in chunks, with a line longer than `MAX_LINE_CHARS`."""

    def __init__(self, path: Path) -> None:
        self._path, self._line, self._run = path, 1, 0

    def feed(self, text: str) -> None:
        first, *ends = _LINE_END.split(text)
        self._run += len(first)
        for piece in ends:
            self._check()
            self._line, self._run = self._line + 1, len(piece)
        self._check()

    def _check(self) -> None:
        if self._run > MAX_LINE_CHARS:
            raise _too_long(self._path, self._line)


def bounded_lines(text: IO[str], path: Path, first: int = 1) -> Iterator[str]:
    """The lines of `text`, none read further than `MAX_LINE_CHARS` (`first`: the first's
    number, for the message)."""
    at = first
    while line := text.readline(MAX_LINE_CHARS + 1):
        if len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            raise _too_long(path, at)
        yield line
        at += 1


def skippable(cells: Sequence[str]) -> bool:
    """The one rule for an entry that is not a number to read: every cell blank (a blank line
    or string), or a comment (the first cell starts with ``#``)."""
    return not "".join(cells).strip() or cells[0].lstrip().startswith("#")


InputKind = Literal["csv", "xlsx", "jsonl"]


def input_kind(path: Path) -> InputKind:
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise InputError(f"cannot read the numbers file {path}: {exc.strerror or exc}") from None
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    first = next((line for line in head.decode("utf-8", "replace").lstrip("\ufeff").splitlines()
                  if line.strip() and not line.lstrip().startswith("#")), "")
    return "jsonl" if first.lstrip().startswith("{") else "csv"
