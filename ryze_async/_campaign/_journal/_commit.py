"""Group commit for the journal: many ``sending`` marks and outcomes share one transaction.

A mark's caller waits for the commit that includes it (the request may only go out after it);
outcomes are queued without waiting. While one commit runs on the journal's thread, everything
queued meanwhile accumulates and goes into the next one, so under load one fsync covers many
calls and nothing waits for a timer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable

from ._events import MarkSending, Op, RecordOutcome
from ._schema import JournalError

__all__ = ["GroupCommit", "apply_ops"]


def apply_ops(db: sqlite3.Connection, ops: list[Op]) -> set[int]:
    """Apply ``ops`` in order in one transaction; return the ids whose mark was refused.

    A mark is refused when its row is not ``pending`` (then the caller must not send).
    Outcomes only touch rows still ``pending`` or ``sending``.
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


class GroupCommit:
    """Queues ops and commits them in batches through ``commit`` (run on the journal thread)."""

    def __init__(self, commit: Callable[[list[Op]], Awaitable[set[int]]]) -> None:
        self._commit = commit
        self._ops: list[Op] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._broken: BaseException | None = None

    def _check(self) -> None:
        if self._broken is not None:
            raise JournalError(f"the journal cannot be written: {self._broken}")

    async def mark(self, row_id: int, at: float, sender: str | None = None) -> None:
        """Queue ``pending -> sending`` and wait until the commit holding it is done."""
        self._check()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ops.append(MarkSending(row_id, at, sender))
        self._waiters.append((row_id, fut))
        self._kick()
        await fut

    def add(self, op: Op) -> None:
        """Queue an op without waiting for it."""
        self._ops.append(op)
        self._kick()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        while True:
            if self._ops:
                self._kick()
            flusher = self._flusher
            if flusher is None or flusher.done():
                break
            await asyncio.shield(flusher)
        self._check()

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._ops:
            ops, waiters = self._ops, self._waiters
            self._ops, self._waiters = [], []
            try:
                refused = await self._commit(ops)
            except BaseException as exc:
                # Failed or cancelled: nothing more may be marked, so nothing more is sent.
                self._broken = exc if isinstance(exc, Exception) else JournalError("cancelled")
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(JournalError(f"journal write failed: {exc!r}"))
                if not isinstance(exc, Exception):
                    raise
                return
            for row_id, fut in waiters:
                if fut.done():
                    continue
                if row_id in refused:
                    fut.set_exception(JournalError(f"row {row_id} is not pending: not sending"))
                else:
                    fut.set_result(None)
