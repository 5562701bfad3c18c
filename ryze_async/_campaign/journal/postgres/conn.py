"""A PostgreSQL journal worker's connections: opening (the schema, the campaign row, the
identity check, recovery of expired leases), the heartbeat that renews this worker's leases,
running work on the connection, and closing (unsent claims given back). ``PgJournal``
(``_postgres.py``) is the store built on it.

Work on the connection runs as in the SQLite journal's one thread (``_sqlite_file.py``): each
unit (a query, or a transaction from its BEGIN to its COMMIT) is a task of its own, run one at
a time in the order asked, and a caller cancelled meanwhile (a stopping campaign cancels its
feeder mid-claim) leaves it running to its end. Cancelling asyncpg inside a transaction would
cut it between BEGIN and COMMIT: the connection is then left in the transaction (later commits
refused, or worse, nested as savepoints of a transaction never committed) or its COMMIT's fate
unknown. :meth:`PgConnection.close` waits for every unit before it disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

import asyncpg

from .... import JournalConnectionLostError
from ...._urls import shown_url
from .. import postgres as sql
from ..person_keys import rekey_postgres
from ..rules_store import PG_SCHEMA as RULES_SCHEMA
from ..schema import CampaignIdentity, JournalError, check_identity
from . import held

__all__ = ["PgConnection"]

_INTERRUPTED = "interrupted while sending: the call may have been placed"
_T = TypeVar("_T")


class PgConnection:
    """One worker's connections to a campaign, and its leases' heartbeat."""

    def __init__(self, dsn: str, campaign: str, *, worker: str, lease: float,
                 heartbeat: float, read_only: bool) -> None:
        self.dsn = shown_url(dsn)
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
        self._io = asyncio.Lock()  # one unit at a time on an asyncpg connection (FIFO)
        self._units: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._last_recover = 0.0
        #: Heartbeats sent (renewals of this worker's live leases).
        self.beats = 0

    # -- opening and closing --------------------------------------------------------------------

    @classmethod
    async def open(
        cls, dsn: str, *, campaign: str, identity: CampaignIdentity | None = None,
        force: bool = False, read_only: bool = False, worker: str | None = None,
        lease: float = 30.0, heartbeat: float = 10.0,
    ) -> Self:
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
            await self._conn.execute(held.MIGRATE)
            await self._conn.execute(sql.MIGRATE_QUOTA)
            await self._conn.execute(RULES_SCHEMA)
            await self._conn.execute(
                "INSERT INTO ryze_campaigns (campaign) VALUES ($1) ON CONFLICT DO NOTHING",
                self.campaign)
            await rekey_postgres(self._conn, self.campaign)
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
                "COALESCE($4, instance), quota = COALESCE($5, quota) WHERE campaign = $1",
                self.campaign, meta["kind"], meta["media"], meta.get("instance"),
                meta.get("quota"))

    async def close(self) -> None:
        """Flush, wait for the work under way, give back unsent claims, disconnect. Idempotent.
        Cancelled, it still lets the queued writes land; cancelled again, it drops the
        connections (the server rolls back what was not committed: fail closed)."""
        if self._conn is None:
            return
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        closing = self._closing
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            try:
                await asyncio.shield(closing)
            except asyncio.CancelledError:
                self._abandon()
            raise

    async def _close(self) -> None:
        try:
            if not self.read_only:
                with contextlib.suppress(JournalError):
                    await self.flush()
                # A lost connection gives nothing back: the leases expire instead.
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError,
                                         OSError, JournalError):
                    await self._run(lambda db: db.fetchrow(sql.RELEASE, self.campaign,
                                                           self.worker, _INTERRUPTED))
            await asyncio.gather(*self._units, return_exceptions=True)
        finally:
            await self._disconnect()

    def _abandon(self) -> None:
        """Drop the connections now: a unit was cut short, so the main connection may be
        inside a transaction (the server rolls it back) and nothing more may use it."""
        for conn in (self._conn, self._beat_conn):
            if conn is not None:
                conn.terminate()
        if self._beat is not None:
            self._beat.cancel()
        self._conn = self._beat_conn = None

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _db(self) -> Any:
        if self._conn is None:
            raise JournalError("the journal is closed")
        return self._conn

    async def _run(self, work: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``work(connection)`` alone on the connection and to its end, even if the caller
        is cancelled meanwhile (see the module docstring)."""
        conn = self._db()
        unit = asyncio.get_running_loop().create_task(self._alone(conn, work))
        self._units.add(unit)
        unit.add_done_callback(self._unit_done)
        return await asyncio.shield(unit)

    async def _alone(self, conn: Any, work: Callable[[Any], Awaitable[_T]]) -> _T:
        async with self._io:
            if conn is not self._conn:
                raise JournalError("the journal is closed")
            try:
                return await work(conn)
            except asyncio.CancelledError:
                # Only the loop's teardown cancels a unit itself: whatever it left open on
                # the connection must not be built upon.
                self._abandon()
                raise
            except Exception as exc:
                if conn.is_closed():  # whatever asyncpg called it, the database went away
                    raise self.lost(exc) from None
                raise

    def lost(self, exc: BaseException) -> JournalConnectionLostError:
        """The error of a lost connection: one line, the URL without its password."""
        return JournalConnectionLostError(
            f"lost the connection to the PostgreSQL journal {self.dsn} ({type(exc).__name__});"
            " nothing more is sent: start again once the database is back")

    def _unit_done(self, unit: asyncio.Task[Any]) -> None:
        self._units.discard(unit)
        if not unit.cancelled():
            unit.exception()  # a cancelled caller's unit: its error is nobody's to raise

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

    # -- leases ---------------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Apply expired leases: (claims given back to pending, sending rows made unknown)."""
        row = await self._run(lambda db: db.fetchrow(sql.RECOVER, self.campaign))
        self._last_recover = asyncio.get_running_loop().time()
        return int(row["released"]), int(row["lost"])

    async def flush(self) -> None:
        """Wait until every queued write is committed (the store queues them)."""
