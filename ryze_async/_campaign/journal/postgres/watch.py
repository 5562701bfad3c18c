"""The PostgreSQL journal as a :class:`~._journal.JournalStore`: events for live counts, and
what the dispatcher asks a shared store (``shared``, :meth:`PgStore.held_elsewhere`).

Live counts are a fold over this worker's own committed transitions plus a recount
(``Rebased``) at most once a heartbeat while it claims: other workers move rows too, and a fold
of one worker's events alone would drift from the campaign's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Literal

from ..events import (
    HoldRow,
    Ingested,
    IngestResult,
    JournalEvent,
    Listener,
    Moved,
    Rebased,
    skip_reason,
)
from .commit import Mark, Op
from .store import PgJournal, PgJournalCounts, Row

__all__ = ["PgStore"]

# Pending rows not held for a window count too: recover() may just have given a dead worker's
# claims back, after this worker's last claim found nothing; stopping would leave them uncalled.
_HELD_ELSEWHERE = """
SELECT count(*) FROM ryze_numbers WHERE campaign = $1 AND (state = 'pending' AND not_before IS NULL
    OR state IN ('claimed', 'sending') AND owner IS DISTINCT FROM $2)
"""


class PgStore(PgJournal):
    """:class:`PgJournal` plus the journal-store seam's events."""

    #: Several workers share the campaign: a page of pending rows is a claim (keep it small).
    shared = True

    def __init__(self, dsn: str, campaign: str, *, worker: str, lease: float,
                 heartbeat: float, read_only: bool) -> None:
        super().__init__(dsn, campaign, worker=worker, lease=lease, heartbeat=heartbeat,
                         read_only=read_only)
        self._listeners: list[Listener] = []
        self._sending: set[int] = set()  # rows this worker marked and has not recorded yet
        self._last_rebase = 0.0

    async def watch(self, listener: Listener) -> None:
        """Report committed transitions to ``listener``, starting with the current counts."""
        self._listeners.append(listener)
        await self.counts()

    def _emit(self, event: JournalEvent) -> None:
        for listener in self._listeners:
            listener(event)

    async def held_elsewhere(self) -> int:
        """Rows other workers hold (claimed or sending, lease live or not yet recovered), and
        rows pending unclaimed: while there are any, this worker may have more to call (a dead
        worker's claims come back). Expired leases are applied first, so a caller polling this
        sees them come back."""
        await self.recover()
        return int(await self._run(lambda db: db.fetchval(_HELD_ELSEWHERE, self.campaign,
                                                          self.worker)))

    async def ingest(self, entries: list[tuple[int, str]], *, position: tuple[int, int, str],
                     normalize: Callable[[str], str]) -> IngestResult:
        result = await super().ingest(entries, position=position, normalize=normalize)
        self._emit(Ingested(result))
        return result

    async def finish_pass(self) -> int:
        removed = await super().finish_pass()
        await self.counts()  # a pass rebuilt invalid rows and re-saw known ones: recount
        return removed

    async def claim(self, limit: int) -> list[Row]:
        rows = await super().claim(limit)
        now = asyncio.get_running_loop().time()
        if self._listeners and now - self._last_rebase >= self.heartbeat:
            await self.counts()  # other workers' progress, for the live display
        return rows

    async def _commit(self, ops: list[Op]) -> set[int]:
        refused = await super()._commit(ops)
        for op in ops:
            if isinstance(op, HoldRow):
                continue  # pending (or this worker's claim) it was, pending it is
            if isinstance(op, Mark):
                if op.row_id not in refused:
                    self._sending.add(op.row_id)
                    self._emit(Moved("pending", "sending"))
            elif op.row_id in self._sending:
                self._sending.discard(op.row_id)
                self._emit(Moved("sending", op.state))  # type: ignore[arg-type]
            else:
                self._emit(Moved("pending", op.state,  # type: ignore[arg-type]
                                 skip_reason(op.state, op.error)))
        return refused

    async def counts(self) -> PgJournalCounts:
        counts = await super().counts()
        self._last_rebase = asyncio.get_running_loop().time()
        self._emit(Rebased(counts))
        return counts

    async def retry(self, states: Iterable[Literal["failed", "unknown"]]) -> int:
        moved = await super().retry(states)
        await self.counts()
        return moved
