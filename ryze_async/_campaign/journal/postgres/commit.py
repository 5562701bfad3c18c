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

from dataclasses import dataclass
from typing import Any

from .. import postgres as sql
from ..events import HoldRow
from . import held

__all__ = ["HoldRow", "Mark", "Op", "Outcome", "apply_ops"]


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


Op = Mark | Outcome | HoldRow


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
            holds = [op for op in run if isinstance(op, HoldRow)]
            if marks:
                ids = [op.row_id for op in marks]
                done = await conn.fetch(sql.MARK, campaign, worker, lease, ids,
                                        [op.sender for op in marks])
                refused |= set(ids) - {r["id"] for r in done}
            if outcomes:
                await conn.executemany(sql.OUTCOME, [
                    (campaign, worker, op.row_id, op.state, op.call_id, op.status, op.error,
                     op.sender) for op in outcomes])
            if holds:
                await conn.executemany(held.HOLD, [
                    (campaign, worker, op.row_id, op.until) for op in holds])
            start = end
    return refused
