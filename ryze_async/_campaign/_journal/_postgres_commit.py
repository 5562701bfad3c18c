"""Group commit for the PostgreSQL journal: marks and outcomes queued meanwhile share a commit.

As in the SQLite journal (``_journal_commit.py``): a ``sending`` mark's caller waits for the
commit that holds it (the request may only go out after it is durable); outcomes are queued
without waiting. While one transaction runs, everything queued meanwhile accumulates and goes
into the next one, so under load one durable commit covers many calls; a commit without a
mark is not waited for on disk (see :func:`apply_ops`). A refused mark raises
:class:`ClaimLostError`; a failed commit refuses every later mark (fail closed: nothing more is
sent through this journal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ... import ClaimLostError, JournalError
from . import _postgres_sql as sql

__all__ = ["ClaimLostError", "Mark", "Outcome", "PgGroupCommit", "apply_ops"]


@dataclass(frozen=True, slots=True)
class Mark:
    row_id: int
    sender: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    row_id: int
    state: str
    call_id: str | None
    status: int | None
    error: str | None
    sender: str | None


Op = Mark | Outcome


async def apply_ops(conn: Any, campaign: str, worker: str, lease: float,
                    ops: list[Op]) -> set[int]:
    """Apply ``ops`` in order in one transaction; return the ids whose mark was refused."""
    refused: set[int] = set()
    async with conn.transaction():
        if not any(isinstance(op, Mark) for op in ops):
            # Outcomes alone need no flush of their own: lost in a crash of the database
            # host, the row stays ``sending`` and its lease makes it ``unknown`` (safe). The
            # next durable mark flushes them anyway (the log is written in order).
            await conn.execute("SET LOCAL synchronous_commit TO off")
        start = 0
        while start < len(ops):
            kind = type(ops[start])
            end = start
            while end < len(ops) and type(ops[end]) is kind:
                end += 1
            run = ops[start:end]
            marks = [op for op in run if isinstance(op, Mark)]
            outcomes = [op for op in run if isinstance(op, Outcome)]
            if marks:
                ids = [op.row_id for op in marks]
                done = await conn.fetch(sql.MARK, campaign, worker, lease, ids,
                                        [op.sender for op in marks])
                refused |= set(ids) - {r["id"] for r in done}
            if outcomes:
                await conn.executemany(sql.OUTCOME, [
                    (campaign, worker, op.row_id, op.state, op.call_id, op.status, op.error,
                     op.sender) for op in outcomes])
            start = end
    return refused


class PgGroupCommit:
    """Queues ops and commits them in batches through ``commit``."""

    def __init__(self, commit: Callable[[list[Op]], Awaitable[set[int]]]) -> None:
        self._commit = commit
        self._ops: list[Op] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._broken: BaseException | None = None

    def check(self) -> None:
        if self._broken is not None:
            raise JournalError(f"the journal cannot be written: {self._broken}")

    async def mark(self, op: Mark) -> None:
        """Queue ``-> sending`` and wait until the commit holding it is done."""
        self.check()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ops.append(op)
        self._waiters.append((op.row_id, fut))
        self._kick()
        await fut

    def add(self, op: Outcome) -> None:
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
        self.check()

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
                    fut.set_exception(ClaimLostError(
                        f"row {row_id} is no longer held by this worker: not sending"))
                else:
                    fut.set_result(None)
