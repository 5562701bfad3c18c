"""The SQLite journal's commit: marks and outcomes applied in order in one transaction
(batched by :class:`~._group.GroupCommit`)."""

from __future__ import annotations

import sqlite3

from ..events import HoldRow, MarkSending, Op, RecordOutcome
from .held import HOLD

__all__ = ["apply_ops"]


def apply_ops(db: sqlite3.Connection, ops: list[Op]) -> set[int]:
    """Apply ``ops`` in order in one transaction; return the ids whose mark was refused.

    A mark is refused when its row is not ``pending`` (then the caller must not send).
    Outcomes only touch rows still ``pending`` or ``sending``; a hold, a row still ``pending``.
    """
    refused: set[int] = set()
    db.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            if isinstance(op, MarkSending):
                cur = db.execute(
                    "UPDATE numbers SET state = 'sending', attempt_at = ?, "
                    "attempts = attempts + 1, call_id = NULL, http_status = NULL, "
                    "error = NULL, sender = ? WHERE id = ? AND state = 'pending'",
                    (op.at, op.sender, op.row_id),
                )
                if cur.rowcount != 1:
                    refused.add(op.row_id)
            elif isinstance(op, HoldRow):
                db.execute(HOLD, (op.until, op.row_id))
            else:
                _record(db, op)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return refused


def _record(db: sqlite3.Connection, op: RecordOutcome) -> None:
    db.execute(
        "UPDATE numbers SET state = ?, call_id = ?, http_status = ?, error = ?, "
        "sender = COALESCE(?, sender) WHERE id = ? AND state IN ('pending', 'sending')",
        (op.state, op.call_id, op.status, op.error, op.sender, op.row_id),
    )
