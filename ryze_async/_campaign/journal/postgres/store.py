"""The campaign journal on PostgreSQL: one campaign, many worker processes, any number of hosts.

The journal itself is the queue. Every number moves ``pending -> claimed -> sending -> placed |
failed | unknown``:

- :meth:`PgJournal.claim` takes up to ``limit`` pending numbers for this worker
  (``FOR UPDATE SKIP LOCKED``: each number is claimed by exactly one worker) under a lease
  (``lease`` seconds, default 30) that a heartbeat task renews every ``heartbeat`` seconds
  (default 10) while the worker lives.
- :meth:`PgJournal.mark_sending` commits ``-> sending`` (``synchronous_commit=on``: durable)
  after the quota admitted the call and before its first byte, exactly as in SQLite. It only
  succeeds while this worker's lease is live on the *database's* clock (or the row is pending
  and unheld); otherwise it raises :class:`ClaimLostError` and nothing may be sent.
- A claim whose lease expired returns to ``pending`` (nothing was sent); a ``sending`` row whose
  lease expired becomes ``unknown`` (it may have been placed) and is never redialed
  automatically. Any worker applies this (:meth:`PgJournal.recover`) at open and while it claims.
- A number outside its calling window is held (:meth:`PgJournal.hold`): ``pending`` with
  ``not_before``, this worker's claim given back; :meth:`PgJournal.claim` skips it and
  :meth:`PgJournal.due` claims it once that time has come on the worker's rules' clock.
- A worker that stalls longer than the lease while sending (a long GC pause, a suspended VM)
  finds its row ``unknown`` when its answer arrives. Its late result is written only if it comes
  from the server (``placed`` or ``failed``: exact) and the row is still this worker's
  lease-expired ``unknown``; a late "not sent" or "unknown" leaves it ``unknown``.
  Pick a lease well above the longest call (the request timeout plus retries' waits).

``record`` queues outcomes that ride along with the next commit (not awaited: if the process
dies first, the row stays ``sending`` and its lease makes it ``unknown``, which is safe).
Several campaigns share one database: every table is keyed by ``campaign``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any, Literal, TextIO

import asyncpg

from .... import ClaimLostError
from .. import postgres as sql
from ..events import HoldRow, IngestResult
from ..group import GroupCommit
from ..recorded_rules import CampaignRules, RuleChange, Settled
from ..rules_store import pg_settle, pg_trail
from ..sqlite.report import ReportData
from . import held, ingest
from .commit import Mark, Op, Outcome, apply_ops
from .conn import PgConnection
from .counts import PgJournalCounts, build_counts
from .export import export_csv
from .report import export_jsonl, read_report

__all__ = ["ClaimLostError", "PgJournal", "PgJournalCounts"]

State = Literal["pending", "sending", "placed", "failed", "unknown", "skipped"]
Row = tuple[int, str, int]
_COMMIT_TRIES = 5


class PgJournal(PgConnection):
    """One worker's handle on a campaign in PostgreSQL. Open with ``await PgJournal.open(...)``;
    use from one event loop."""

    def __init__(self, dsn: str, campaign: str, *, worker: str, lease: float,
                 heartbeat: float, read_only: bool) -> None:
        super().__init__(dsn, campaign, worker=worker, lease=lease, heartbeat=heartbeat,
                         read_only=read_only)
        self._group: GroupCommit[Op] = GroupCommit(self._commit, _claim_lost)

    # -- meta -----------------------------------------------------------------------------------

    async def _campaign_row(self) -> Any:
        return await self._run(lambda db: db.fetchrow(
            "SELECT * FROM ryze_campaigns WHERE campaign = $1", self.campaign))

    async def ingest_position(self) -> tuple[int, int, str]:
        """Where ingestion stopped (any worker's): (offset, line, digest of the input)."""
        row = await self._campaign_row()
        return int(row["ingest_offset"]), int(row["ingest_line"]), str(row["ingest_digest"])

    async def add_elapsed(self, seconds: float) -> None:
        """Add a run's duration (with many workers: the sum of their run times)."""
        await self._run(lambda db: db.execute(
            "UPDATE ryze_campaigns SET elapsed = elapsed + $2 WHERE campaign = $1",
            self.campaign, seconds))

    # -- ingestion ------------------------------------------------------------------------------

    async def ingest(self, entries: list[tuple[int, str]], *, position: tuple[int, int, str],
                     normalize: Callable[[str], str]) -> IngestResult:
        """Store a batch of ``(line, raw)`` entries and the resume point after it; entries
        another worker already ingested in this pass are skipped (``_postgres_ingest.py``)."""
        return await self._run(lambda db: ingest.ingest_rows(db, self.campaign, entries,
                                                             position, normalize))

    async def begin_pass(self, expected: tuple[int, int, str] | None = None) -> bool:
        """The input changed: read it again from its first entry, unless the resume point is
        no longer ``expected`` (another worker began the new pass). True if this call did."""
        return await self._run(lambda db: ingest.begin_pass(db, self.campaign, expected))

    async def finish_pass(self) -> int:
        return await self._run(lambda db: ingest.finish_pass(db, self.campaign))

    async def sweep_due(self) -> bool:
        return bool((await self._campaign_row())["sweep_due"])

    # -- dispatch -------------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Row]:
        """Claim up to ``limit`` pending numbers for this worker, in input order:
        ``(id, number, line)``. Expired leases are recovered first (at most once a heartbeat)."""
        if asyncio.get_running_loop().time() - self._last_recover >= self.heartbeat:
            await self.recover()
        rows = await self._run(lambda db: _claim(db, sql.CLAIM, self.campaign, self.worker,
                                                 self.lease, limit))
        return sorted((r["id"], r["number"], r["line"]) for r in rows)

    async def pending_after(self, after_id: int, limit: int) -> list[Row]:
        """The SQLite journal's feeder call, served by :meth:`claim`: claimed rows are no
        longer pending, so no cursor is needed (``after_id`` is ignored)."""
        return await self.claim(limit)

    # -- held rows (outside their calling window) -----------------------------------------------

    def hold(self, row_id: int, until: float) -> None:
        """Queue: the row is pending until ``until`` (Unix seconds; inf: no window opens), and
        this worker's claim on it is given back (any worker may take it then)."""
        self._group.add(HoldRow(row_id, until))

    async def due(self, now: float, after: tuple[float, int],
                  limit: int) -> list[tuple[int, str, int, float]]:
        """Claim held rows due at ``now`` (the rules' clock), earliest first: (id, number,
        line, not_before). Claimed rows are no longer pending: ``after`` is ignored."""
        rows = await self._run(lambda db: _claim(db, held.CLAIM_DUE, self.campaign,
                                                 self.worker, self.lease, limit, now))
        return [(r["id"], r["number"], r["line"], r["not_before"]) for r in rows]

    async def next_due(self, after: tuple[float, int] = (float("-inf"), 0)) -> float | None:
        """When the first held row (any worker's) comes due (None: none will)."""
        at = await self._run(lambda db: db.fetchval(held.NEXT_DUE, self.campaign))
        return None if at is None else float(at)

    async def held_counts(self, now: float) -> tuple[int, int]:
        """(rows waiting for a later window, rows no window opens for)."""
        row = await self._run(lambda db: db.fetchrow(held.HELD_COUNTS, self.campaign, now))
        return int(row[0]), int(row[1])

    async def hold_rules(self, rules: str) -> int:
        """The rules holds are computed under; other rules than the stored ones forget every
        hold (queued holds are written first). How many were forgotten."""
        await self.flush()
        return int(await self._run(lambda db: db.fetchval(held.HOLD_RULES, self.campaign,
                                                          rules)))

    async def settle_rules(self, given: CampaignRules, *, change: bool, now: datetime,
                           inherited: Collection[str] = ()) -> Settled:
        """Compare ``given`` with the campaign's recorded rules (the campaign's row locked)
        and record what this worker uses (``_recorded_rules.settle``)."""
        return await self._run(lambda db: pg_settle(db, self.campaign, given, change, now,
                                                    inherited=inherited))

    async def rule_changes(self) -> list[RuleChange]:
        """The audit trail: rules changed on purpose, oldest first."""
        return await self._run(lambda db: pg_trail(db, self.campaign))

    async def mark_sending(self, row_id: int, *, sender: str | None = None) -> None:
        """Commit ``-> sending`` for a row this worker holds (or an unheld pending one);
        returns once durable. Raises :class:`ClaimLostError` if the row is no longer this
        worker's (the caller must not send), :class:`JournalError` if the journal failed."""
        await self._group.mark(row_id, Mark(row_id, sender))

    def record(self, row_id: int, state: State, *, call_id: str | None = None,
               status: int | None = None, error: str | None = None,
               sender: str | None = None) -> None:
        """Queue an outcome (``pending`` gives the row back: provably not sent)."""
        self._group.add(Outcome(row_id, state, call_id, status, error, sender))

    def back_to_pending(self, row_id: int, error: str | None = None) -> None:
        """Refused or never sent: the number goes back for any worker to call."""
        self.record(row_id, "pending", error=error)

    async def flush(self) -> None:
        await self._group.flush()

    async def _commit(self, ops: list[Op]) -> set[int]:
        # A deadlock or serialization failure rolled the whole transaction back (no mark was
        # committed, so nothing was sent on it): applying the same ops again is safe.
        for attempt in range(_COMMIT_TRIES):
            try:
                return await self._run(lambda db: apply_ops(db, self.campaign, self.worker,
                                                            self.lease, ops))
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == _COMMIT_TRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reporting ------------------------------------------------------------------------------

    async def counts(self) -> PgJournalCounts:
        """Counts by state (valid rows), invalid rows, duplicates; readable while workers run."""
        if not self.read_only:
            await self.flush()
        rows, head = await self._run(self._read_counts)
        return build_counts(rows, head)

    async def _read_counts(self, db: Any) -> tuple[Any, Any]:
        return (await db.fetch(sql.COUNTS, self.campaign),
                await db.fetchrow(sql.COUNTS_HEAD, self.campaign))

    async def retry(self, states: Iterable[Literal["failed", "unknown"]]) -> int:
        """Move valid rows in ``states`` back to ``pending``: a person decided to call again."""
        wanted = sorted(set(states))
        if not wanted or not set(wanted) <= {"failed", "unknown"}:
            raise ValueError("retry takes 'failed' and/or 'unknown'")
        status = await self._run(lambda db: db.execute(
            "UPDATE ryze_numbers SET state = 'pending', owner = NULL, lease_until = NULL, "
            "not_before = NULL WHERE campaign = $1 AND valid AND state = ANY($2::text[])",
            self.campaign, wanted))
        return int(status.split()[-1])

    async def export_csv(self, out: str | os.PathLike[str] | TextIO) -> int:
        """One CSV row per stored number (the SQLite columns plus ``sender``)."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda db: export_csv(db, self.campaign, out))

    async def report_data(self) -> ReportData:
        """Per-minute attempt counts and the failed/unknown rows, as the SQLite store's."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda db: read_report(db, self.campaign))

    async def export_jsonl(self, out: str | os.PathLike[str] | TextIO) -> int:
        """Like :meth:`export_csv`, one JSON object per line (the SQLite store's lines)."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda db: export_jsonl(db, self.campaign, out))


async def _claim(db: Any, query: str, *args: object) -> list[Any]:
    async with db.transaction():
        # A claim lost in a crash of the database host is harmless (the number is pending
        # again, nothing was sent): no flush to disk of its own. A mark always flushes.
        await db.execute("SET LOCAL synchronous_commit TO off")
        rows: list[Any] = await db.fetch(query, *args)
    return rows


def _claim_lost(row_id: int) -> ClaimLostError:
    return ClaimLostError(f"row {row_id} is no longer held by this worker: not sending")
