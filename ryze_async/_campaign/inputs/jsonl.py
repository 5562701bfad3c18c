"""Numbers from JSON Lines: each line a JSON object (the number under a key), string or number.

``column`` names the key (found by the names a CSV header uses when not given). Like a CSV, the
file is checked whole before a journal exists. JSON Lines is a UTF-8 text file read line by
line: :class:`JsonlReader` resumes like a CSV's reader, through the same
:class:`~ryze_async._campaign.inputs.TextFile` (byte offset, lines, sha256 of the bytes read).
Which kind a file is (``.jsonl``/``.ndjson``, or a first entry that starts with ``{``) is
:func:`~ryze_async._campaign.inputs.input_kind`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ... import InputError
from . import (
    NumberBatch,
    Position,
    TextFile,
    Untrusted,
    bounded_lines,
    skippable,
    text_batch,
    whole_number,
)
from .csv import number_header

__all__ = ["JsonlLayout", "JsonlReader", "inspect_jsonl", "jsonl_rows"]

# -- JSON Lines -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JsonlLayout:
    """The key holding the number (None: each line is a bare string or number)."""

    key: str | None
    bom: int


_JSON = "a JSON number"


def _cell(value: object, text: str) -> str:
    """A JSON value as an entry: a string as written, a whole number's digits; anything else
    is :class:`Untrusted` (``text``, the line, is what the user sees of it)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return Untrusted(json.dumps(value), "a JSON boolean, not a phone number")
    if isinstance(value, int):
        return whole_number(value, _JSON)
    if isinstance(value, float):
        # 5511900000006.0 or 5.5119000000007e12 went through a float somewhere: the digits may
        # not be the ones written, and the dot would be read as a separator.
        return Untrusted(json.dumps(value), f"{_JSON} with a fraction or an exponent "
                         f"({value!r}): its digits may not be the ones written; write phone "
                         'numbers as JSON strings ("+5511987654321")')
    return Untrusted(text.strip(), "no phone number in this line: JSON Lines holds one object "
                     'per line with the number as a string, e.g. {"number": "+5511987654321"}')


class _Object(dict[str, object]):
    """A JSON object that remembers the keys it was given more than once (``json`` keeps the
    last silently: a guess at which number the producer meant)."""

    twice: frozenset[str] = frozenset()


def _object(pairs: list[tuple[str, object]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        obj.twice = frozenset(k for k in obj if sum(1 for p, _ in pairs if p == k) > 1)
    return obj


def _parse(text: str, at: int, path: Path) -> object:
    try:
        return json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} line {at} is not JSON ({exc.msg}): JSON Lines holds one "
                         'object per line, e.g. {"number": "+5511987654321"}') from None


def _pick_key(obj: object, column: str | int | None, path: Path) -> str | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(column, int):
        raise InputError("JSON Lines has keys, not columns: give --column NAME")
    keys = [k for k in obj if isinstance(k, str)]
    if column is not None:
        if column not in obj:
            raise InputError(f"{path}: the first object has no key {column!r} (keys: {keys})")
        return column
    found = number_header(keys, path)
    if found is None:
        raise InputError(f"{path}: cannot tell which key holds the numbers (keys: {keys}); "
                         "name it 'number', or pass --column KEY")
    return found


def jsonl_rows(lines: Iterator[str], layout: JsonlLayout, path: Path) -> Iterator[list[str]]:
    """One ``[raw]`` row per line; a line without a usable value keeps its own text, so it is
    reported invalid with its line rather than dropped."""
    for at, text in enumerate(lines, 1):
        if skippable((text,)):
            yield [""]
            continue
        obj = _parse(text, at, path)
        if isinstance(obj, _Object) and layout.key in obj.twice:
            yield [Untrusted(text.strip(), f"the key {layout.key!r} is given twice in this "
                             "line: which number is meant cannot be told")]
            continue
        value = obj.get(layout.key) if isinstance(obj, dict) and layout.key else obj
        yield [_cell(value, text)]


def inspect_jsonl(path: Path, column: str | int | None) -> JsonlLayout:
    """Check every line is JSON and find the number key, or raise :class:`InputError`."""
    with path.open("rb") as raw:
        bom = 3 if raw.read(3) == b"\xef\xbb\xbf" else 0
    layout: JsonlLayout | None = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for at, text in enumerate(bounded_lines(f, path), 1):
                if skippable((text,)):
                    continue
                obj = _parse(text, at, path)
                if layout is None:
                    layout = JsonlLayout(_pick_key(obj, column, path), bom)
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text: JSON Lines must be UTF-8") from None
    if layout is None:
        raise InputError(f"{path} holds no numbers (empty, or only blank lines)")
    return layout


class JsonlReader:
    """JSON Lines entries from a resume point (:class:`~ryze_async._campaign.inputs.FileReader`):
    a UTF-8 text file read line by line, so it resumes like a CSV."""

    def __init__(self, path: Path, layout: JsonlLayout, start: Position) -> None:
        self._file = TextFile(path, "utf-8", layout.bom, 0, start)
        self.restarted = self._file.restarted
        self._records = jsonl_rows(self._file.lines, layout=layout, path=path)

    def read(self, size: int) -> NumberBatch:
        return text_batch(self._file, self._records, 0, size)

    def close(self) -> None:
        self._file.close()
