"""What ``report --html`` and ``report --format jsonl`` read from a SQLite journal.

The journal keeps one row per number with the time of its last attempt (``attempt_at``), not a
log of every request: the per-minute figures count numbers by the minute of their last
attempt and the state it left them in. A ``sender`` column (the sender pool's) is read when
the journal has one; without it every row is the campaign's one instance ("").
The PostgreSQL store gives the same :class:`ReportData` and the same lines
(:func:`jsonl_line`) from the same queries (``_postgres_report.py``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ..queries import REPORT_STATE, WINDOW_AT
from ..schema import open_owner_only
from .export import window_text

__all__ = ["MinuteCount", "ProblemRow", "ReportData", "export_jsonl", "jsonl_line",
           "read_report"]


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """``n`` numbers whose last attempt was in ``minute`` (UTC epoch minute) and left them in
    ``state``, sent by ``sender`` ("" when the journal records no sender)."""

    minute: int
    sender: str
    state: str
    n: int


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """A ``failed``, ``unknown`` or ``invalid`` number and why."""

    line: int | None
    number: str
    state: str
    reason: str
    http_status: int | None
    attempts: int
    at: float | None
    sender: str = ""


@dataclass(frozen=True, slots=True)
class ReportData:
    minutes: list[MinuteCount] = field(default_factory=list)
    problems: list[ProblemRow] = field(default_factory=list)
    has_senders: bool = False
    #: The quota the campaign last ran with: (calls, period in seconds); None: not recorded
    #: (a journal written before #15, or a client without a quota).
    quota: tuple[int, float] | None = None


def parse_quota(text: str | None) -> tuple[int, float] | None:
    """The quota as both stores keep it ("7/30"; "" or None: not recorded)."""
    if not text:
        return None
    calls, _, period = text.partition("/")
    return int(calls), float(period)


def _sender_column(db: sqlite3.Connection) -> str:
    columns = {row[1] for row in db.execute("PRAGMA table_info(numbers)")}
    for name in ("sender", "instance"):
        if name in columns:
            return name
    return "''"


def read_report(db: sqlite3.Connection) -> ReportData:
    sender = _sender_column(db)
    minutes = [MinuteCount(int(m), s or "", st, n) for m, s, st, n in db.execute(
        f"SELECT CAST(attempt_at / 60 AS INTEGER) AS m, {sender}, state, count(*) "  # noqa: S608
        "FROM numbers WHERE attempt_at IS NOT NULL AND attempts > 0 "
        "GROUP BY m, 2, state ORDER BY m")]
    problems = [ProblemRow(line, number, state, error or "", status, attempts, at, s or "")
                for line, number, state, error, status, attempts, at, s in db.execute(
        f"SELECT line, number, {REPORT_STATE}, error, http_status, attempts, "  # noqa: S608
        f"attempt_at, {sender} FROM numbers WHERE state IN ('failed', 'unknown') ORDER BY id")]
    quota = db.execute("SELECT value FROM meta WHERE key = 'quota'").fetchone()
    return ReportData(minutes, problems, sender != "''", parse_quota(quota and quota[0]))


def jsonl_line(row: tuple[object, ...], at: datetime | None, sender: str | None, *,
               with_sender: bool, opens: float | None = None) -> str:
    """One number as a JSON line: ``row`` is (line, number, state, call_id, http_status,
    error, attempts), ``at`` its last attempt, ``opens`` when its calling window opens (a
    held pending row); both stores write the same text."""
    line, number, state, call_id, status, error, attempts = row
    item = {"line": line, "number": number, "state": state, "call_id": call_id,
            "http_status": status, "error": error, "attempts": attempts,
            "last_attempt_utc": at.astimezone(UTC).isoformat(timespec="seconds") if at else None,
            "window_opens_utc": window_text(opens) or None}
    if with_sender:
        item["sender"] = sender
    return json.dumps(item, ensure_ascii=False) + "\n"


def export_jsonl(db: sqlite3.Connection, out: Path | TextIO) -> int:
    """One JSON object per stored number (input order), the CSV export's fields."""
    if not isinstance(out, Path):
        rows = _write(db, out)
        out.flush()
        return rows
    with open_owner_only(out) as f:
        return _write(db, f)


def _write(db: sqlite3.Connection, f: TextIO) -> int:
    sender = _sender_column(db)
    rows = 0
    cur = db.execute(
        f"SELECT line, number, {REPORT_STATE}, call_id, http_status, error, "  # noqa: S608
        f"attempts, attempt_at, {sender}, {WINDOW_AT} FROM numbers ORDER BY id")
    while chunk := cur.fetchmany(1000):
        for *row, at, s, opens in chunk:
            when = datetime.fromtimestamp(at, UTC) if at else None
            f.write(jsonl_line(tuple(row), when, s, with_sender=sender != "''", opens=opens))
            rows += 1
    return rows
