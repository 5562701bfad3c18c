"""Ingestion into the journal: rows, the resume point, and passes over an input that changed.

A *pass* is one read of the input from its first entry. Every row records the pass that last
saw it (``seen``). While the input is only appended to, one pass goes on across runs. When the
input changed under the journal (the source could not resume: ``begin_pass``), a new pass
starts: each entry goes through the dedupe again (a number already in the journal keeps its
state; only a number new to the journal is added as pending), and when the input is exhausted
(``finish_pass``) a pending row this pass did not see is no longer in the input: it becomes
``skipped`` (removed from input) and is never dialed. Until that sweep is done
(``sweep_due``), the campaign dispatches nothing: a pending row might be one the user removed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ...persons import person_key
from ..events import IngestResult

__all__ = ["REMOVED", "begin_pass", "finish_pass", "ingest_rows", "sweep_due"]

REMOVED = "removed from input: not in the numbers file any more, so not called"


def _meta(db: sqlite3.Connection, key: str, default: str = "0") -> str:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else str(row[0])


def _set(db: sqlite3.Connection, items: dict[str, str]) -> None:
    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(items.items()))


def sweep_due(db: sqlite3.Connection) -> bool:
    return _meta(db, "sweep_due") == "1"


def begin_pass(db: sqlite3.Connection) -> None:
    """Start reading the input again from its first entry (it changed under the journal).

    Invalid rows and the duplicate count describe the input, so they are dropped and rebuilt by
    the new pass; valid rows keep their states (nobody placed, failed or unknown is redialed).
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        pass_no = int(_meta(db, "ingest_pass")) + 1
        db.execute("DELETE FROM numbers WHERE valid = 0")
        _set(db, {"ingest_pass": str(pass_no), "sweep_due": "1", "ingest_duplicates": "0",
                  "ingest_offset": "0", "ingest_line": "0", "ingest_digest": ""})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def finish_pass(db: sqlite3.Connection) -> int:
    """The input is exhausted: if a pass is open, pending rows it did not see are removed."""
    if not sweep_due(db):
        return 0
    db.execute("BEGIN IMMEDIATE")
    try:
        removed = db.execute(
            "UPDATE numbers SET state = 'skipped', error = ? WHERE state = 'pending' "
            "AND valid = 1 AND seen != ?", (REMOVED, int(_meta(db, "ingest_pass"))),
        ).rowcount
        _set(db, {"sweep_due": "0"})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return removed


def _store_valid(db: sqlite3.Connection, number: str, at: int, pass_no: int) -> str:
    """Insert or re-see one valid number: 'added', 'duplicate', 'restored' or 'known'."""
    key = person_key(number)
    if db.execute(
        "INSERT INTO numbers(number, key, valid, state, line, seen) "
        "VALUES (?, ?, 1, 'pending', ?, ?) ON CONFLICT(key) DO NOTHING",
        (number, key, at, pass_no),
    ).rowcount:
        return "added"
    row_id, state, seen = db.execute(
        "SELECT id, state, seen FROM numbers WHERE key = ?", (key,)).fetchone()
    if seen == pass_no:
        return "duplicate"
    if state != "skipped":
        db.execute("UPDATE numbers SET seen = ?, line = ? WHERE id = ?", (pass_no, at, row_id))
        return "known"
    # A row removed earlier (never sent) is in the input again: back to pending, and at the end
    # of the id order, as a new row would be. The feeder reads pending rows above its cursor:
    # rows appended to the input are ingested while it dispatches (no pass holds it), so it may
    # be past the old id, and a row pending there would never be fed in this run.
    db.execute(
        "UPDATE numbers SET id = (SELECT max(id) + 1 FROM numbers), seen = ?, line = ?, "
        "state = 'pending', error = NULL, not_before = NULL WHERE id = ?", (pass_no, at, row_id),
    )
    return "restored"


def ingest_rows(
    db: sqlite3.Connection, entries: list[tuple[int, str]], position: tuple[int, int, str],
    normalize: Callable[[str], str],
) -> IngestResult:
    """Store a batch and the resume point after it, in one transaction."""
    valid: list[tuple[str, int]] = []
    invalid: list[tuple[int, str, str]] = []
    for at, raw in entries:
        try:
            valid.append((normalize(raw), at))
        except ValueError as exc:
            invalid.append((at, raw, str(exc) or "invalid number"))
    db.execute("BEGIN IMMEDIATE")
    try:
        pass_no = int(_meta(db, "ingest_pass"))
        kinds = [_store_valid(db, number, at, pass_no) for number, at in valid]
        if invalid:
            db.executemany(
                "INSERT INTO numbers(number, key, valid, state, line, error, seen) "
                "VALUES (?, NULL, 0, 'failed', ?, ?, ?)",
                [(raw, at, why, pass_no) for at, raw, why in invalid],
            )
        duplicates = kinds.count("duplicate")
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('ingest_duplicates', ?) ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
            (str(duplicates),),
        )
        offset, line, digest = position
        _set(db, {"ingest_offset": str(offset), "ingest_line": str(line),
                  "ingest_digest": digest})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return IngestResult(kinds.count("added"), duplicates, invalid, kinds.count("restored"))
