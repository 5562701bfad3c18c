"""``report --csv``: one row per stored number, written owner-only (it holds phone numbers)."""

from __future__ import annotations

import csv
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ..queries import REPORT_STATE, WINDOW_AT
from ..schema import open_owner_only

__all__ = ["CSV_COLUMNS", "export_csv", "window_text"]

CSV_COLUMNS = ["line", "number", "state", "call_id", "http_status", "error", "attempts",
               "last_attempt_utc", "sender", "window_opens_utc"]


def window_text(at: float | None) -> str:
    """When a pending row's calling window opens, as every export writes it: "" (not held),
    "never" (no window ever opens for it), else the instant in UTC."""
    if at is None:
        return ""
    if math.isinf(at):
        return "never"
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def export_csv(db: sqlite3.Connection, out: Path | TextIO) -> int:
    """Stream every row (input order) to ``out``; return how many were written.

    Invalid entries appear as ``invalid`` with ``attempts`` 0 and their validation message;
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
        f"SELECT line, number, {REPORT_STATE}, call_id, http_status, error, "  # noqa: S608
        f"attempts, attempt_at, sender, {WINDOW_AT} FROM numbers ORDER BY id"
    )
    while chunk := cur.fetchmany(1000):
        for line, number, state, call_id, status, error, attempts, at, sender, opens in chunk:
            when = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds") if at else ""
            writer.writerow([line, number, state, call_id or "", status or "", error or "",
                             attempts, when, sender or "", window_text(opens)])
            rows += 1
    return rows
