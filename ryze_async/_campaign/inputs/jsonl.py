"""Numbers from an ``.xlsx`` workbook or from JSON Lines, beside the CSV of ``inputs/csv.py``.

Which kind a file is: ``.xlsx``/``.xlsm`` or a zip archive is a workbook, ``.jsonl``/``.ndjson``
or a first entry that starts with ``{`` is JSON Lines; anything else is a CSV. Like a CSV, each
is checked whole before a journal exists, and ``column`` names the number column (a header or
a 1-based index) in a workbook, the key in JSON Lines.

Resume positions. JSON Lines is a text file read line by line: it resumes like a CSV (byte
offset, lines, sha256 of the bytes read). A workbook is a zip: it cannot be appended to, so its
position is the sheet rows read and the sha256 of the whole file; a resume skips those rows only
when the file is byte for byte the same, otherwise it is read again from the start (the
journal's dedupe keeps everyone already dealt with out of it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ... import InputError
from ..persons import Untrusted, whole_number
from .csv import bounded_lines, number_header, skippable
from .xlsx import XlsxReader

__all__ = ["InputKind", "JsonlLayout", "XlsxReader", "input_kind", "inspect_jsonl", "jsonl_rows"]

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
