"""The campaign journal: one SQLite file (WAL) that *is* the campaign.

Every number moves ``pending -> sending -> placed | failed | unknown``. The ``sending`` mark is
committed before the request leaves (the campaign awaits :meth:`Journal.mark_sending` from the
client's ``before_send`` hook), so after any crash a row still ``sending`` may have been called:
opening the journal turns it into ``unknown`` and nothing redials it unless a person asks
(:meth:`Journal.retry`). Invalid numbers are stored ``failed`` (``valid = 0``) and never sent;
duplicates are only counted. A pending number the input no longer holds (it was edited between
runs) becomes ``skipped`` and is never sent (``_ingest.py``). This is the SQLite implementation
of the ``JournalStore`` seam (``__init__.py``).

Durability: ``synchronous="full"`` (the default) fsyncs the WAL at every commit, so a committed
``sending`` mark survives ``kill -9``, an OS crash and a power cut (if the disk honours fsync).
``synchronous="normal"`` survives ``kill -9`` and any process crash, but an OS crash or power cut
may roll back the last commits, a ``sending`` mark included: the number could then be dialed
again. Either way the file stays consistent. Commits are shared: every ``mark_sending`` waiting
while a commit runs joins the next one (group commit), and outcomes ride along without being
awaited, so one fsync covers many calls.

All SQLite work runs on one dedicated thread with its own connection; a sidecar ``flock`` on the
journal file keeps a second campaign process out (two processes dialing one journal would call
people twice).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Literal, TextIO

from ..events import (
    HoldRow,
    Ingested,
    IngestResult,
    JournalEvent,
    Listener,
    MarkSending,
    Moved,
    Op,
    Rebased,
    RecordOutcome,
    State,
    skip_reason,
)
from ..group import GroupCommit
from ..queries import add_elapsed, count_rows, pending_after, retry_rows
from ..recorded_rules import CampaignRules, RuleChange, Settled
from ..rules_store import sqlite_settle, sqlite_trail
from ..schema import (
    JournalCounts,
    JournalError,
)
from .commit import apply_ops
from .export import export_csv
from .file import SqliteFile
from .held import due_rows, held_counts, next_due, set_hold_rules
from .ingest import begin_pass, finish_pass, ingest_rows, sweep_due
from .report import ReportData, export_jsonl, read_report

__all__ = ["Journal"]


class Journal(SqliteFile):
    """A campaign journal. Open with ``await Journal.open(path, ...)``; use from one event loop."""

    #: One process per file: ``pending_after`` reads, it does not claim (pages may be large).
    shared = False

    def __init__(self, path: Path, executor: ThreadPoolExecutor, lock_fd: int | None) -> None:
        super().__init__(path, executor, lock_fd)
        self._group: GroupCommit[Op] = GroupCommit(self._commit, _not_pending)
        self._listeners: list[Listener] = []
        self._sending: set[int] = set()  # rows this store marked sending and not yet recorded
        self._hold = False  # an input pass is open: ingest events wait for its sweep
        self.commits = 0

    # -- events ---------------------------------------------------------------------------------

    async def watch(self, listener: Listener) -> None:
        """Report every committed transition to ``listener``, starting with the current counts."""
        self._listeners.append(listener)
        await self.counts()

    def _emit(self, event: JournalEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # -- meta -----------------------------------------------------------------------------------

    async def meta(self) -> dict[str, str]:
        return await self._run(lambda: dict(self._db().execute("SELECT key, value FROM meta")))

    async def ingest_position(self) -> tuple[int, int, str]:
        """Where ingestion stopped: (offset, line, digest of the consumed input)."""
        meta = await self.meta()
        return (int(meta.get("ingest_offset", 0)), int(meta.get("ingest_line", 0)),
                meta.get("ingest_digest", ""))

    async def add_elapsed(self, seconds: float) -> None:
        await self._run(lambda: add_elapsed(self._db(), seconds))

    # -- ingestion ------------------------------------------------------------------------------

    async def ingest(
        self,
        entries: list[tuple[int, str]],
        *,
        position: tuple[int, int, str],
        normalize: Callable[[str], str],
    ) -> IngestResult:
        """Store a batch of ``(line, raw)`` entries and the resume point (offset, line,
        digest) after it, in one transaction; see ``_ingest.py``."""
        result = await self._run(lambda: ingest_rows(self._db(), entries, position, normalize))
        if not self._hold:
            self._emit(Ingested(result))
        return result

    async def begin_pass(self, expected: tuple[int, int, str] | None = None) -> bool:
        """The input changed under the journal: it is read again from its first entry.
        (``expected`` matters to shared stores only: one process holds this file.)"""
        await self._run(lambda: begin_pass(self._db()))
        self._hold = True
        return True

    async def finish_pass(self) -> int:
        """The input is exhausted: pending rows an open pass did not see become ``skipped``."""
        removed = await self._run(lambda: finish_pass(self._db()))
        if self._hold:
            # The pass rebuilt invalid rows and re-saw known ones: count afresh, once.
            self._hold = False
            await self.counts()
        return removed

    async def sweep_due(self) -> bool:
        """True while a pass is open: a pending row may be one removed from the input."""
        due = await self._run(lambda: sweep_due(self._db()))
        self._hold = self._hold or due
        return due

    # -- dispatch -------------------------------------------------------------------------------

    async def pending_after(self, after_id: int, limit: int) -> list[tuple[int, str, int]]:
        """Up to ``limit`` pending valid rows with id > ``after_id``: (id, number, line)."""
        return await self._run(lambda: pending_after(self._db(), after_id, limit))

    async def held_elsewhere(self) -> int:
        """Rows other workers hold: none, one process has the file (``flock``)."""
        return 0

    # -- held rows (outside their calling window; ``_held.py``) ---------------------------------

    def hold(self, row_id: int, until: float) -> None:
        """Queue: the pending row waits until ``until`` (Unix seconds; inf: no window opens)."""
        self._group.add(HoldRow(row_id, until))

    async def due(self, now: float, after: tuple[float, int],
                  limit: int) -> list[tuple[int, str, int, float]]:
        """Held rows due at ``now`` above the keyset ``after``: (id, number, line, not_before)."""
        return await self._run(lambda: due_rows(self._db(), now, after, limit))

    async def next_due(self, after: tuple[float, int] = (float("-inf"), 0)) -> float | None:
        """When the first held row above ``after`` comes due (None: none will)."""
        return await self._run(lambda: next_due(self._db(), after))

    async def held_counts(self, now: float) -> tuple[int, int]:
        """(rows waiting for a later window, rows no window opens for)."""
        return await self._run(lambda: held_counts(self._db(), now))

    async def hold_rules(self, rules: str) -> int:
        """The rules holds are computed under; other rules than the stored ones forget every
        hold (queued holds are written first). How many were forgotten."""
        await self.flush()
        return await self._run(lambda: set_hold_rules(self._db(), rules))

    async def settle_rules(self, given: CampaignRules, *, change: bool, now: datetime,
                           inherited: Collection[str] = ()) -> Settled:
        """Compare ``given`` with the recorded rules and record what this run uses
        (``_recorded_rules.settle``)."""
        return await self._run(lambda: sqlite_settle(self._db(), given, change, now,
                                                       inherited=inherited))

    async def rule_changes(self) -> list[RuleChange]:
        """The audit trail: rules changed on purpose, oldest first."""
        return await self._run(lambda: sqlite_trail(self._db()))

    async def mark_sending(self, row_id: int, *, sender: str | None = None) -> None:
        """Commit ``pending -> sending`` for one row; returns once that commit is durable.

        Raises :class:`JournalError` (and the caller must not send) if the row was not pending
        or the journal cannot be written.
        """
        await self._group.mark(row_id, MarkSending(row_id, time.time(), sender))

    def record(
        self, row_id: int, state: State, *, call_id: str | None = None,
        status: int | None = None, error: str | None = None, sender: str | None = None,
    ) -> None:
        """Queue an outcome (or ``pending`` for a provably unsent request); flushed promptly.

        Not awaited: if the process dies first, the row stays ``sending`` and becomes
        ``unknown``, which is safe. :meth:`flush` waits for everything queued.
        """
        self._group.add(RecordOutcome(row_id, state, call_id, status, error, sender))

    async def flush(self) -> None:
        """Wait until every queued mark and outcome is committed."""
        await self._group.flush()

    def _apply(self, ops: list[Op]) -> set[int]:
        refused = apply_ops(self._db(), ops)
        self.commits += 1
        return refused

    async def _commit(self, ops: list[Op]) -> set[int]:
        refused = await self._run(self._apply, ops)
        for op in ops:
            if isinstance(op, HoldRow):
                continue  # pending it was, pending it stays
            if isinstance(op, MarkSending):
                if op.row_id not in refused:
                    self._sending.add(op.row_id)
                    self._emit(Moved("pending", "sending"))
            elif op.row_id in self._sending:
                self._sending.discard(op.row_id)
                self._emit(Moved("sending", op.state))
            else:
                self._emit(Moved("pending", op.state, skip_reason(op.state, op.error)))
        return refused

    # -- reporting ------------------------------------------------------------------------------

    async def counts(self) -> JournalCounts:
        """Row counts by state (valid rows), invalid rows, and the ingestion counters."""
        if not self.read_only:
            await self.flush()
        counts = await self._run(lambda: count_rows(self._db()))
        self._emit(Rebased(counts))
        return counts

    async def retry(self, states: Iterable[Literal["failed", "unknown"]]) -> int:
        """Move valid rows in ``states`` back to ``pending``: a person decided to call again."""
        wanted = sorted(set(states))
        if not wanted or not set(wanted) <= {"failed", "unknown"}:
            raise ValueError("retry takes 'failed' and/or 'unknown'")
        moved = await self._run(lambda: retry_rows(self._db(), wanted))
        await self.counts()
        return moved

    async def export_csv(self, out: str | os.PathLike[str] | TextIO) -> int:
        """Write one CSV row per stored number (owner-only file, or an open text stream such
        as stdout); returns the row count."""
        if not self.read_only:
            await self.flush()
        target = Path(out) if isinstance(out, str | os.PathLike) else out
        return await self._run(lambda: export_csv(self._db(), target))

    async def report_data(self) -> ReportData:
        """Per-minute attempt counts and the failed/unknown rows (``report --html``)."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda: read_report(self._db()))

    async def export_jsonl(self, out: str | os.PathLike[str] | TextIO) -> int:
        """Like :meth:`export_csv`, one JSON object per line."""
        if not self.read_only:
            await self.flush()
        target = Path(out) if isinstance(out, str | os.PathLike) else out
        return await self._run(lambda: export_jsonl(self._db(), target))


def _not_pending(row_id: int) -> JournalError:
    return JournalError(f"row {row_id} is not pending: not sending")
