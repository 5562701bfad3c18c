"""The SQLite store's plain queries (run on the journal's thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .schema import JournalCounts

__all__ = ["REPORT_STATE", "SKIP_REASON", "WINDOW_AT", "add_elapsed", "count_rows",
           "pending_after", "retry_rows"]

#: A row's state for counting: a ``skipped`` row the rules made counts as its reason (the
#: error texts of ``_rules.py`` start with these words); a pending row held for its calling
#: window counts as ``held`` (``JournalCounts.build`` adds those to ``pending``).
SKIP_REASON = ("CASE WHEN state = 'skipped' AND error LIKE 'excluded:%' THEN 'excluded' "
               "WHEN state = 'skipped' AND error LIKE 'expired:%' THEN 'expired' "
               "WHEN state = 'pending' AND not_before IS NOT NULL THEN 'held' ELSE state END")
#: A row's state as every report form shows it (both stores): an entry that is no number is
#: ``invalid`` (stored ``failed``: it never was a call), a claim not sent yet ``pending``.
REPORT_STATE = ("CASE WHEN NOT valid THEN 'invalid' WHEN state = 'claimed' THEN 'pending' "
                "ELSE state END")
#: When a pending row's calling window opens (NULL: not held); SQLite keeps Unix seconds.
WINDOW_AT = "CASE WHEN state = 'pending' THEN not_before END"


def pending_after(db: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[int, str, int]]:
    return db.execute(
        "SELECT id, number, line FROM numbers WHERE state = 'pending' AND not_before IS NULL "
        "AND id > ? AND valid = 1 ORDER BY id LIMIT ?", (after_id, limit),
    ).fetchall()


def count_rows(db: sqlite3.Connection) -> JournalCounts:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    by_state: dict[str, int] = {}
    invalid = 0
    for valid, state, n in db.execute(
        f"SELECT valid, {SKIP_REASON} AS st, count(*) FROM numbers GROUP BY valid, st"  # noqa: S608
    ):
        if valid:
            by_state[state] = n
        else:
            invalid += n
    return JournalCounts.build(by_state, invalid, meta)


def retry_rows(db: sqlite3.Connection, states: Sequence[str]) -> int:
    marks = ",".join("?" for _ in states)
    return db.execute(
        f"UPDATE numbers SET state = 'pending', not_before = NULL WHERE valid = 1 "  # noqa: S608
        f"AND state IN ({marks})",
        states,
    ).rowcount


def add_elapsed(db: sqlite3.Connection, seconds: float) -> None:
    db.execute(
        "INSERT INTO meta(key, value) VALUES ('elapsed', ?) ON CONFLICT(key) DO UPDATE "
        "SET value = CAST(value AS REAL) + CAST(excluded.value AS REAL)",
        (str(seconds),),
    )
