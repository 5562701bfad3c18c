"""Held rows in the SQLite journal: pending rows outside their calling window (run on the
journal's thread).

A held row stays ``pending`` with ``not_before``, the Unix time its window opens (``inf``: no
window ever opens for it under these rules). ``pending_after`` skips held rows; the feeder
reads them back with :func:`due_rows` once their time has come, in ``(not_before, id)`` order
above a keyset it keeps, so a row is offered once per hold without any write. The rules that
computed the times are stored (``hold_rules``): a run under other rules forgets every hold,
and its own rules judge those rows again when they are read.
"""

from __future__ import annotations

import sqlite3

from .ingest import _meta, _set

__all__ = ["HOLD", "NEVER", "due_rows", "held_counts", "next_due", "set_hold_rules"]

#: ``not_before`` of a row no calling window ever opens for (under the stored rules).
NEVER = float("inf")
HOLD = "UPDATE numbers SET not_before = ? WHERE id = ? AND state = 'pending'"
_HELD = "state = 'pending' AND not_before IS NOT NULL AND valid = 1"


def due_rows(db: sqlite3.Connection, now: float, after: tuple[float, int],
             limit: int) -> list[tuple[int, str, int, float]]:
    """Held rows whose time has come (``not_before <= now``), above the keyset ``after``."""
    return db.execute(
        f"SELECT id, number, line, not_before FROM numbers WHERE {_HELD} "  # noqa: S608
        "AND not_before <= ? AND not_before >= ? AND (not_before > ? OR id > ?) "
        "ORDER BY not_before, id LIMIT ?", (now, after[0], after[0], after[1], limit),
    ).fetchall()


def next_due(db: sqlite3.Connection, after: tuple[float, int]) -> float | None:
    """When the first held row above the keyset ``after`` comes due (None: none will)."""
    row = db.execute(
        f"SELECT not_before FROM numbers WHERE {_HELD} AND not_before >= ? "  # noqa: S608
        "AND not_before < ? AND (not_before > ? OR id > ?) ORDER BY not_before LIMIT 1",
        (after[0], NEVER, after[0], after[1]),
    ).fetchone()
    return None if row is None else float(row[0])


def held_counts(db: sqlite3.Connection, now: float) -> tuple[int, int]:
    """(rows waiting for a window that opens later, rows no window opens for)."""
    waiting, never = db.execute(
        f"SELECT count(*) FILTER (WHERE not_before < ?), count(*) FILTER "  # noqa: S608
        f"(WHERE not_before >= ?) FROM numbers WHERE {_HELD} AND not_before > ?",
        (NEVER, NEVER, now),
    ).fetchone()
    return int(waiting), int(never)


def set_hold_rules(db: sqlite3.Connection, rules: str) -> int:
    """Store the rules holds are computed under; if they changed, forget every hold (the rows
    are judged again under the new rules). How many holds were forgotten."""
    if _meta(db, "hold_rules", "") == rules:
        return 0
    db.execute("BEGIN IMMEDIATE")
    try:
        cleared = db.execute(
            "UPDATE numbers SET not_before = NULL WHERE state = 'pending' "
            "AND not_before IS NOT NULL").rowcount
        _set(db, {"hold_rules": rules})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return int(cleared)
