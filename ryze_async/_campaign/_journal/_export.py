"""``report --csv``: one row per stored number, written owner-only (it holds phone numbers)."""

from __future__ import annotations

import csv
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ._schema import open_owner_only

__all__ = ["CSV_COLUMNS", "export_csv"]

CSV_COLUMNS = ["line", "number", "state", "call_id", "http_status", "error", "attempts",
               "last_attempt_utc", "sender"]


def export_csv(db: sqlite3.Connection, out: Path | TextIO) -> int:
    """Stream every row (input order) to ``out``; return how many were written.

    Invalid entries appear as ``failed`` with ``attempts`` 0 and their validation message;
    duplicates have no row (only the count in the summary).
    """
    if not isinstance(out, Path):
        rows = _write(db, out)
        out.flush()
        return rows
    with open_owner_only(out, newline="") as f:
        return _write(db, f)


def _write(db: sqlite3.Connection, f: TextIO) -> int:
    rows = 0
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    cur = db.execute(
        "SELECT line, number, state, call_id, http_status, error, attempts, attempt_at, "
        "sender FROM numbers ORDER BY id"
    )
    while chunk := cur.fetchmany(1000):
        for line, number, state, call_id, status, error, attempts, at, sender in chunk:
            when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds") if at else ""
            writer.writerow([line, number, state, call_id or "", status or "", error or "",
                             attempts, when, sender or ""])
            rows += 1
    return rows
