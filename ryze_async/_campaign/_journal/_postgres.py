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
import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from typing import Any, Literal, TextIO

import asyncpg

from ... import ClaimLostError
from . import _postgres_ingest as ingest
from . import _postgres_sql as sql
from ._events import IngestResult
from ._group import GroupCommit
from ._postgres_commit import Mark, Op, Outcome, apply_ops
from ._postgres_counts import PgJournalCounts, build_counts, redact
from ._postgres_export import export_csv
from ._schema import CampaignIdentity, JournalError, check_identity

__all__ = ["ClaimLostError", "PgJournal", "PgJournalCounts"]

State = Literal["pending", "sending", "placed", "failed", "unknown", "skipped"]
Row = tuple[int, str, int]
_COMMIT_TRIES = 5
_INTERRUPTED = "interrupted while sending: the call may have been placed"


class PgJournal:
    """One worker's handle on a campaign in PostgreSQL. Open with ``await PgJournal.open(...)``;
    use from one event loop."""

    def __init__(self, dsn: str, campaign: str, *, worker: str, lease: float,
                 heartbeat: float, read_only: bool) -> None:
        self.dsn = redact(dsn)
        self.campaign = campaign
        #: This worker's identity in ``owner`` (host, pid and a random part: unique per open).
        self.worker = worker
        self.lease = lease
        self.heartbeat = heartbeat
        self.read_only = read_only
        #: Rows found ``sending`` with an expired lease at open and turned ``unknown``.
        self.recovered = 0
        self._conn: Any = None
        self._beat_conn: Any = None
        self._io = asyncio.Lock()  # one query at a time on an asyncpg connection
        self._beat: asyncio.Task[None] | None = None
        self._group: GroupCommit[Op] = GroupCommit(self._commit, _claim_lost)
        self._last_recover = 0.0
        #: Heartbeats sent (renewals of this worker's live leases).
        self.beats = 0

    # -- opening and closing --------------------------------------------------------------------

    @classmethod
    async def open(
        cls, dsn: str, *, campaign: str, identity: CampaignIdentity | None = None,
        force: bool = False, read_only: bool = False, worker: str | None = None,
        lease: float = 30.0, heartbeat: float = 10.0,
    ) -> PgJournal:
        """Connect, create the tables and the campaign if missing, check ``identity`` (as the
        SQLite journal does), recover expired leases, and start the heartbeat.

        ``read_only`` (a report on running workers) changes nothing and holds no lease.
        """
        if not campaign:
            raise ValueError("a campaign name is required")
        if not 0 < heartbeat < lease:
            raise ValueError("heartbeat must be positive and shorter than the lease")
        worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        journal = cls(dsn, campaign, worker=worker, lease=lease, heartbeat=heartbeat,
                      read_only=read_only)
        try:
            await journal._connect(dsn, identity, force)
        except BaseException as exc:
            await journal._disconnect()
            if isinstance(exc, asyncpg.PostgresError | OSError):
                raise JournalError(f"{journal.dsn} is not a usable journal: {exc}") from None
            raise
        return journal

    async def _connect(self, dsn: str, identity: CampaignIdentity | None, force: bool) -> None:
        # Durable commits whatever the server's default: a ``sending`` mark must survive a
        # crash of the database host, or the number could be dialed again.
        settings = {"synchronous_commit": "on", "application_name": "ryze-async"}
        self._conn = await asyncpg.connect(dsn, server_settings=settings)
        if self.read_only:
            exists = await self._conn.fetchval(
                "SELECT to_regclass('ryze_campaigns') IS NOT NULL")
            if not exists or await self._conn.fetchrow(
                    "SELECT 1 FROM ryze_campaigns WHERE campaign = $1", self.campaign) is None:
                raise JournalError(f"no campaign {self.campaign!r} in {self.dsn}")
            return
        async with self._conn.transaction():
            await self._conn.execute("SELECT pg_advisory_xact_lock($1)", sql.SCHEMA_LOCK)
            await self._conn.execute(sql.SCHEMA)
            await self._conn.execute(
                "INSERT INTO ryze_campaigns (campaign) VALUES ($1) ON CONFLICT DO NOTHING",
                self.campaign)
        if identity is not None:
            await self._check_identity(identity, force)
        self.recovered = (await self.recover())[1]
        self._beat_conn = await asyncpg.connect(dsn, server_settings=settings)
        self._beat = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _check_identity(self, identity: CampaignIdentity, force: bool) -> None:
        async with self._conn.transaction():
            row = await self._conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, self.campaign)
            stored = {k: row[k] for k in ("kind", "media", "instance") if row[k] is not None}
            called = await self._conn.fetchval(
                "SELECT 1 FROM ryze_numbers WHERE campaign = $1 AND state IN "
                "('placed', 'unknown', 'sending') LIMIT 1", self.campaign)
            check_identity(f"campaign {self.campaign!r}", stored,  # type: ignore[arg-type]
                           identity, force or called is None)
            meta = identity.as_meta()
            await self._conn.execute(
                "UPDATE ryze_campaigns SET kind = $2, media = $3, instance = "
                "COALESCE($4, instance) WHERE campaign = $1", self.campaign, meta["kind"],
                meta["media"], meta.get("instance"))

    async def close(self) -> None:
        """Flush, stop the heartbeat, give back unsent claims. Idempotent."""
        if self._conn is None:
            return
        if not self.read_only:
            with contextlib.suppress(JournalError):
                await self.flush()
            # A lost connection gives nothing back: the leases expire instead.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                async with self._io:
                    await self._conn.fetchrow(sql.RELEASE, self.campaign, self.worker,
                                              _INTERRUPTED)
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(BaseException):
                await self._beat
            self._beat = None
        for conn in (self._beat_conn, self._conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._conn = self._beat_conn = None

    async def __aenter__(self) -> PgJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _db(self) -> Any:
        if self._conn is None:
            raise JournalError("the journal is closed")
        return self._conn

    async def _heartbeat(self) -> None:
        """Renew this worker's live leases; one that already expired is never revived."""
        while True:
            await asyncio.sleep(self.heartbeat)
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await self.beat()

    async def beat(self) -> int:
        """Renew this worker's live leases now (its own connection); how many were renewed.
        Never waits for a row another transaction holds (that one is renewed next time)."""
        if self._beat_conn is None:
            raise JournalError("a read-only or closed journal holds no leases")
        status = await self._beat_conn.execute(sql.HEARTBEAT, self.campaign, self.worker,
                                               self.lease)
        self.beats += 1
        return int(status.split()[-1])

    # -- meta -----------------------------------------------------------------------------------

    async def _campaign_row(self) -> Any:
        async with self._io:
            return await self._db().fetchrow(
                "SELECT * FROM ryze_campaigns WHERE campaign = $1", self.campaign)

    async def ingest_position(self) -> tuple[int, int, str]:
        """Where ingestion stopped (any worker's): (offset, line, digest of the input)."""
        row = await self._campaign_row()
        return int(row["ingest_offset"]), int(row["ingest_line"]), str(row["ingest_digest"])

    async def add_elapsed(self, seconds: float) -> None:
        """Add a run's duration (with many workers: the sum of their run times)."""
        async with self._io:
            await self._db().execute(
                "UPDATE ryze_campaigns SET elapsed = elapsed + $2 WHERE campaign = $1",
                self.campaign, seconds)

    # -- ingestion ------------------------------------------------------------------------------

    async def ingest(self, entries: list[tuple[int, str]], *, position: tuple[int, int, str],
                     normalize: Callable[[str], str]) -> IngestResult:
        """Store a batch of ``(line, raw)`` entries and the resume point after it; entries
        another worker already ingested in this pass are skipped (``_postgres_ingest.py``)."""
        async with self._io:
            return await ingest.ingest_rows(self._db(), self.campaign, entries, position,
                                            normalize)

    async def begin_pass(self, expected: tuple[int, int, str] | None = None) -> bool:
        """The input changed: read it again from its first entry, unless the resume point is
        no longer ``expected`` (another worker began the new pass). True if this call did."""
        async with self._io:
            return await ingest.begin_pass(self._db(), self.campaign, expected)

    async def finish_pass(self) -> int:
        async with self._io:
            return await ingest.finish_pass(self._db(), self.campaign)

    async def sweep_due(self) -> bool:
        return bool((await self._campaign_row())["sweep_due"])

    # -- dispatch -------------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Apply expired leases: (claims given back to pending, sending rows made unknown)."""
        async with self._io:
            row = await self._db().fetchrow(sql.RECOVER, self.campaign)
        self._last_recover = asyncio.get_running_loop().time()
        return int(row["released"]), int(row["lost"])

    async def claim(self, limit: int) -> list[Row]:
        """Claim up to ``limit`` pending numbers for this worker, in input order:
        ``(id, number, line)``. Expired leases are recovered first (at most once a heartbeat)."""
        if asyncio.get_running_loop().time() - self._last_recover >= self.heartbeat:
            await self.recover()
        async with self._io, self._db().transaction():
            # A claim lost in a crash of the database host is harmless (the number is pending
            # again, nothing was sent): no flush to disk of its own. A mark always flushes.
            await self._db().execute("SET LOCAL synchronous_commit TO off")
            rows = await self._db().fetch(sql.CLAIM, self.campaign, self.worker, self.lease,
                                          limit)
        return sorted((r["id"], r["number"], r["line"]) for r in rows)

    async def pending_after(self, after_id: int, limit: int) -> list[Row]:
        """The SQLite journal's feeder call, served by :meth:`claim`: claimed rows are no
        longer pending, so no cursor is needed (``after_id`` is ignored)."""
        return await self.claim(limit)

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
                async with self._io:
                    return await apply_ops(self._db(), self.campaign, self.worker, self.lease,
                                           ops)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == _COMMIT_TRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- reporting ------------------------------------------------------------------------------

    async def counts(self) -> PgJournalCounts:
        """Counts by state (valid rows), invalid rows, duplicates; readable while workers run."""
        if not self.read_only:
            await self.flush()
        async with self._io:
            rows = await self._db().fetch(sql.COUNTS, self.campaign)
            head = await self._db().fetchrow(sql.COUNTS_HEAD, self.campaign)
        return build_counts(rows, head)

    async def retry(self, states: Iterable[Literal["failed", "unknown"]]) -> int:
        """Move valid rows in ``states`` back to ``pending``: a person decided to call again."""
        wanted = sorted(set(states))
        if not wanted or not set(wanted) <= {"failed", "unknown"}:
            raise ValueError("retry takes 'failed' and/or 'unknown'")
        async with self._io:
            status = await self._db().execute(
                "UPDATE ryze_numbers SET state = 'pending', owner = NULL, lease_until = NULL "
                "WHERE campaign = $1 AND valid AND state = ANY($2::text[])",
                self.campaign, wanted)
        return int(status.split()[-1])

    async def export_csv(self, out: str | os.PathLike[str] | TextIO) -> int:
        """One CSV row per stored number (the SQLite columns plus ``sender``)."""
        if not self.read_only:
            await self.flush()
        async with self._io:
            return await export_csv(self._db(), self.campaign, out)


def _claim_lost(row_id: int) -> ClaimLostError:
    return ClaimLostError(f"row {row_id} is no longer held by this worker: not sending")
