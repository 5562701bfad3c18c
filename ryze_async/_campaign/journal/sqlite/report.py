"""What ``report --html`` and ``report --format jsonl`` read from a SQLite journal.

The journal keeps one row per number with the time of its last attempt (``attempt_at``), not a
log of every request: the per-minute figures count numbers by the minute of their last
attempt and the state it left them in. A ``sender`` column (the sender pool's) is read when
the journal has one; without it every row is the campaign's one instance ("").
The PostgreSQL store gives the same :class:`ReportData` and the same lines
(:func:`jsonl_line`) from the same queries (``journal/postgres/report.py``).

``report --csv``: one row per stored number, written owner-only (it holds phone numbers).

A journal read for a dry run: every row's state and the input's resume point, read-only.

Nothing here creates, migrates, locks or writes a journal, nor leaves a file behind:

- SQLite: a journal closed cleanly has no ``-wal`` file; a read-only connection would create
  the ``-wal`` and ``-shm`` files and leave them behind (it may not delete them), so such a
  file is read ``immutable`` (no lock, no side file), and the read counts only if the file's
  size and mtime are the same before and after it (a writer that started meanwhile: read
  again). A journal with a ``-wal`` (a campaign running, or killed) is read through a plain
  read-only connection, which WAL lets run beside the writer without blocking it; its
  ``flock`` is never taken, so a campaign is neither refused nor waited for.
- PostgreSQL (``journal/postgres/report.py``): one ``READ ONLY`` repeatable-read transaction.

``peek_journal`` and ``peek_rules`` (in ``journal/__init__.py``, which picks the store a
target names) choose one of the two; ``JournalSnapshot`` and ``snapshot`` here are what both return.
A journal that does not exist is ``None``: the dry run plans a new campaign.

``peek_rules`` is the light read of the same kind: only the recorded rules (SQLite: ``meta``;
PostgreSQL: the campaign's row), one query and no row scan, for a CLI resume that builds its
client by them and for a file whose number column only the record names.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar

from ..recorded_rules import CampaignRules, recorded
from ..schema import (
    REPORT_STATE,
    WINDOW_AT,
    JournalCounts,
    JournalError,
    open_owner_only,
    rekey,
    rekeyed_sqlite,
)

__all__ = [
    "CSV_COLUMNS", "JournalSnapshot", "MinuteCount", "ProblemRow", "ReportData", "SnapshotRow",
    "export_csv", "export_jsonl", "jsonl_line", "peek_sqlite", "peek_sqlite_rules", "read_report",
    "snapshot", "window_text",
]


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
        rows = _write_csv(db, out)
        out.flush()
        return rows
    with open_owner_only(out, newline="") as f:
        return _write_csv(db, f)


def _write_csv(db: sqlite3.Connection, f: TextIO) -> int:
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
        rows = _write_jsonl(db, out)
        out.flush()
        return rows
    with open_owner_only(out) as f:
        return _write_jsonl(db, f)


def _write_jsonl(db: sqlite3.Connection, f: TextIO) -> int:
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


T = TypeVar("T")

#: One valid row: its number, its state (``skipped`` rows by reason: ``removed``,
#: ``excluded``, ``expired``; a PostgreSQL claim is ``pending``) and the pass that last saw it.
SnapshotRow = tuple[str, str, int]
_TRIES = 5
_BUSY_MS = 2000
_LABEL = ("CASE WHEN state != 'skipped' THEN state WHEN error LIKE 'excluded:%' THEN 'excluded' "
          "WHEN error LIKE 'expired:%' THEN 'expired' ELSE 'removed' END")


@dataclass(frozen=True, slots=True)
class JournalSnapshot:
    """A journal as it is now: ``rows`` by dedupe key, and what a resumed run reads first."""

    rows: dict[str, SnapshotRow]
    invalid: int
    duplicates: int
    position: tuple[int, int, str]
    ingest_pass: int
    sweep_due: bool
    #: The stored campaign identity (kind, media, instance), for the identity check.
    identity: dict[str, str]
    elapsed: float = 0.0
    #: The campaign's recorded rules (None: none recorded), which a resumed run would use.
    rules: CampaignRules | None = None
    #: Pending rows held for a calling window: key -> when it opens (Unix time; ``inf``:
    #: never), and the rules key the holds were computed under (``Rules.holds_key``).
    holds: dict[str, float] = field(default_factory=dict)
    hold_key: str | None = None

    def counts(self) -> JournalCounts:
        """The journal's counts as stored (``JournalCounts``: removed rows are ``skipped``)."""
        by_state: dict[str, int] = {}
        for _, label, _ in self.rows.values():
            state = "skipped" if label == "removed" else label
            by_state[state] = by_state.get(state, 0) + 1
        return JournalCounts.build(by_state, self.invalid, {
            "ingest_duplicates": str(self.duplicates), "elapsed": str(self.elapsed)})


def snapshot(rows: Iterable[tuple[int, str, str, str, int, float | None]], invalid: int,
             meta: Mapping[str, object], *, rekeyed: bool) -> JournalSnapshot:
    """From ``(id, key, number, label, seen, not_before)`` rows in id order and the resume meta
    (either store). A journal not ``rekeyed`` by person yet is, in memory, as its next opening
    will rekey it (``journal/schema.py``): a row merged into another one is ``removed``."""
    listed = list(rows)
    plan = {} if rekeyed else rekey((i, number, label) for i, _, number, label, *_ in listed)
    keyed: dict[str, SnapshotRow] = {}
    holds: dict[str, float] = {}
    for row_id, stored, number, label, seen, not_before in listed:
        key, into = plan.get(row_id, (stored, None))
        merged = into is not None and label == "pending"
        keyed[key] = (number, "removed" if merged else label, int(seen))
        if label == "pending" and not merged and not_before is not None:
            holds[key] = float(not_before)
    return JournalSnapshot(
        rows=keyed, holds=holds, hold_key=_text(meta.get("hold_rules")),
        invalid=invalid, duplicates=int(str(meta.get("ingest_duplicates", 0))),
        position=(int(str(meta.get("ingest_offset", 0))), int(str(meta.get("ingest_line", 0))),
                  str(meta.get("ingest_digest", ""))),
        ingest_pass=int(str(meta.get("ingest_pass", 0))),
        sweep_due=str(meta.get("sweep_due", "0")) in ("1", "True", "true"),
        identity={k: str(meta[k]) for k in ("kind", "media", "instance")
                  if meta.get(k) is not None},
        elapsed=float(str(meta.get("elapsed", 0.0))),
        rules=recorded(_text(meta.get("rules")), _text(meta.get("hold_rules"))),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def peek_sqlite(path: Path) -> JournalSnapshot | None:
    return _consistent(path, _read)


def peek_sqlite_rules(path: Path) -> CampaignRules | None:
    return _consistent(path, _read_rules)


def _consistent(path: Path, read: Callable[[sqlite3.Connection], T | None]) -> T | None:
    """``read`` on a read-only connection to ``path`` (see the module docstring); None if
    there is no such file."""
    if not path.exists():
        return None
    for _ in range(_TRIES):
        wal = Path(f"{path}-wal").exists()
        before = _stamp(path)
        try:
            found = _connected(path, read, immutable=not wal)
        except sqlite3.Error as exc:
            raise JournalError(f"{path} cannot be read read-only: {exc}") from None
        if wal or _stamp(path) == before:
            return found
    raise JournalError(f"{path} kept changing while it was read: try again")


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _connected(path: Path, read: Callable[[sqlite3.Connection], T | None], *,
               immutable: bool) -> T | None:
    mode = "immutable=1" if immutable else "mode=ro"
    db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        db.execute("BEGIN")  # one snapshot for every read, beside a writer in WAL mode
        found = read(db)
        db.execute("COMMIT")
        return found
    finally:
        db.close()


def _read_rules(db: sqlite3.Connection) -> CampaignRules | None:
    try:
        meta = dict(db.execute(
            "SELECT key, value FROM meta WHERE key IN ('rules', 'hold_rules')").fetchall())
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return None  # a file created and never written
    return recorded(_text(meta.get("rules")), _text(meta.get("hold_rules")))


def _read(db: sqlite3.Connection) -> JournalSnapshot | None:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"meta", "numbers"} <= tables:
        return None  # an empty file (a journal created and never written): nothing to read
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    invalid = db.execute("SELECT count(*) FROM numbers WHERE valid = 0").fetchone()[0]
    # A schema-1 journal (a resume migrates it) had no ``seen``: every row from pass 0.
    columns = {r[1] for r in db.execute("PRAGMA table_info(numbers)")}
    seen = "seen" if "seen" in columns else "0"
    held = "not_before" if "not_before" in columns else "NULL"
    rows = db.execute(f"SELECT id, key, number, {_LABEL}, {seen}, {held} "  # noqa: S608
                      "FROM numbers WHERE valid = 1 ORDER BY id")
    return snapshot(rows, int(invalid), meta, rekeyed=rekeyed_sqlite(db))
