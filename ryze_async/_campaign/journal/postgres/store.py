"""The campaign journal on PostgreSQL: one campaign, many worker processes, any number of hosts.

The journal itself is the queue. Every number moves ``pending -> claimed -> sending -> placed |
failed | unknown``:

- :meth:`PgStore.claim` takes up to ``limit`` pending numbers for this worker
  (``FOR UPDATE SKIP LOCKED``: each number is claimed by exactly one worker) under a lease
  (``lease`` seconds, default 30) that a heartbeat task renews every ``heartbeat`` seconds
  (default a third of the lease) while the worker lives. Each worker writes its own lease into
  the rows it holds (``lease_until``), so workers of a campaign need not agree on it.
- :meth:`PgStore.mark_sending` commits ``-> sending`` (durable: ``SET LOCAL synchronous_commit``)
  after the quota admitted the call and before its first byte, exactly as in SQLite. It only
  succeeds while this worker's lease is live on the *database's* clock (or the row is pending
  and unheld); otherwise it raises :class:`ClaimLostError` and nothing may be sent.
- A claim whose lease expired returns to ``pending`` (nothing was sent); a ``sending`` row whose
  lease expired becomes ``unknown`` (it may have been placed) and is never redialed
  automatically. Any worker applies this (:meth:`PgStore.recover`) at open and while it claims.
- A number outside its calling window is held (:meth:`PgStore.hold`): ``pending`` with
  ``not_before``, this worker's claim given back; :meth:`PgStore.claim` skips it and
  :meth:`PgStore.due` claims it once that time has come on the worker's rules' clock.
- A worker that stalls longer than the lease while sending (a long GC pause, a suspended VM)
  finds its row ``unknown`` when its answer arrives. Its late result is written only if it comes
  from the server (``placed`` or ``failed``: exact) and the row is still this worker's
  lease-expired ``unknown``; a late "not sent" or "unknown" leaves it ``unknown``.
  Pick a lease well above the longest call (the request timeout plus retries' waits).

``record`` queues outcomes that ride along with the next commit (not awaited: if the process
dies first, the row stays ``sending`` and its lease makes it ``unknown``, which is safe).
Several campaigns share one database: every table is keyed by ``campaign``.

:class:`PgStore` is the PostgreSQL :class:`~..JournalStore`: with events for live counts,
and what the dispatcher asks a shared store (``shared``, :meth:`PgStore.held_elsewhere`). Live
counts are a fold over this worker's own committed transitions plus a recount
(``Rebased``) at most once a heartbeat while it claims: other workers move rows too, and a fold
of one worker's events alone would drift from the campaign's.

It opens the campaign (the schema, the campaign row, the identity check, recovery of expired
leases), renews this worker's leases (the heartbeat), and closes it (unsent claims given back);
the connections themselves, and the work run on them, are a :class:`_Connections` it owns.

A lost connection (a server restart, a terminated backend, a cut proxy) is connected again,
with backoff, within ``reconnect_deadline`` seconds (then :class:`JournalConnectionLostError`,
for good); the unit that found it gone runs again on the new connection (see
:class:`_Connections`). A mark is acknowledged only once committed: a commit whose answer was
lost is applied again and its marks read back (:meth:`PgStore._applier`), and claims this
worker never received or no longer holds go back to pending first (:meth:`PgStore._reconnected`).

Work on the connection runs as in the SQLite journal's one thread (``sqlite/store.py``): each
unit (a query, or a transaction from its BEGIN to its COMMIT) is a task of its own, run one at
a time in the order asked, and a caller cancelled meanwhile (a stopping campaign cancels its
feeder mid-claim) leaves it running to its end. Cancelling asyncpg inside a transaction would
cut it between BEGIN and COMMIT: the connection is then left in the transaction (later commits
refused, or worse, nested as savepoints of a transaction never committed) or its COMMIT's fate
unknown. :meth:`PgStore.close` waits for every unit before it disconnects.

Group commit: marks and outcomes queued meanwhile share a commit. As in the SQLite journal
(``sqlite/store.py``): a ``sending`` mark's caller waits for the commit that holds it (the request
may only go out after it is durable); outcomes are queued without waiting. While one transaction
runs, everything queued meanwhile accumulates and goes into the next one, so under load one
durable commit covers many calls; a commit without a mark is not waited for on disk (see
:func:`apply_ops`). A refused mark raises :class:`ClaimLostError`; a failed commit refuses every
later mark (fail closed: nothing more is sent through this journal).

Ingestion by many workers reading the same input: the rules of the SQLite journal hold
(``sqlite/store.py``: passes, ``seen``, the sweep of removed numbers to ``skipped``), plus what
many readers need. Every ingest transaction locks the campaign's row, so ingestion of one campaign
is serialized; the stored resume point (offset, line, digest) only moves forward, and a batch's
entries at or before the stored line were already ingested in this pass by some worker: they are
dropped, not counted again as duplicates. So each number enters once and each input line is
counted once, however many workers read the file. Inserts are ``ON CONFLICT (campaign, key) DO
NOTHING`` as well.

A changed input starts a new pass only if nobody else started one since this worker read the
resume point (:func:`begin_pass` compares it): two workers that see the same edit start one
pass between them, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self, TextIO, TypeVar

import asyncpg

from .... import ClaimLostError, JournalConnectionLostError
from ...._urls import scrub, shown_url
from .. import postgres as sql
from ..events import (
    REMOVED,
    Batch,
    Committed,
    Decided,
    GroupCommit,
    HoldRow,
    Ingested,
    IngestResult,
    JournalEvent,
    Known,
    Listener,
    Rebased,
    Row,
    State,
    batch_result,
    swept,
)
from ..recorded_rules import PG_SCHEMA as RULES_SCHEMA
from ..recorded_rules import CampaignRules, RuleChange, Settled, pg_settle, pg_trail
from ..schema import CampaignIdentity, JournalCounts, JournalError, check_identity, rekey_postgres
from ..sqlite.report import ReportData
from .report import export_csv, export_jsonl, read_report

__all__ = [
    "ClaimLostError",
    "HoldRow",
    "Mark",
    "Outcome",
    "PgJournalCounts",
    "PgOp",
    "PgStore",
    "apply_ops",
    "begin_pass",
    "build_counts",
    "finish_pass",
    "ingest_rows",
]


_log = logging.getLogger("ryze_async.campaign")
_INTERRUPTED = "interrupted while sending: the call may have been placed"
_T = TypeVar("_T")


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


PgOp = Mark | Outcome | HoldRow


def durability(ops: list[PgOp]) -> str:
    """The commit's durability, set in its own transaction whatever the server's default (no
    session setting survives a pooler in transaction mode).

    A mark must survive a crash of the database host, or the number could be dialed again: it
    waits for the flush to disk. Outcomes alone need no flush of their own: lost in such a
    crash, the row stays ``sending`` and its lease makes it ``unknown`` (safe). The next
    durable mark flushes them anyway (the log is written in order)."""
    durable = any(isinstance(op, Mark) for op in ops)
    return f"SET LOCAL synchronous_commit TO {'on' if durable else 'off'}"


async def apply_ops(conn: Any, campaign: str, worker: str, lease: float,
                    ops: list[PgOp]) -> set[int]:
    """Apply ``ops`` in order in one transaction; return the ids whose mark was refused."""
    refused: set[int] = set()
    async with conn.transaction():
        await conn.execute(durability(ops))
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
                await conn.executemany(sql.HOLD, [
                    (campaign, worker, op.row_id, op.until) for op in holds])
            start = end
    return refused


@dataclass(frozen=True, slots=True)
class PgJournalCounts(JournalCounts):
    """:class:`JournalCounts` plus the workers' view. ``pending`` counts every number not yet
    called, ``claimed`` ones included (a claim is not a call); ``in_flight`` is claimed plus
    sending; ``workers`` hold live leases now."""

    claimed: int = 0
    workers: int = 0

    @property
    def in_flight(self) -> int:
        return self.claimed + self.sending


def build_counts(rows: Iterable[Mapping[str, Any]], head: Mapping[str, Any]) -> PgJournalCounts:
    """From ``COUNTS`` rows (valid, state, n) and the campaign's counters."""
    by_state: dict[str, int] = {}
    invalid = 0
    for r in rows:
        if r["valid"]:
            by_state[r["state"]] = r["n"]
        else:
            invalid += r["n"]
    claimed = by_state.pop("claimed", 0)
    by_state["pending"] = by_state.get("pending", 0) + claimed
    base = JournalCounts.build(by_state, invalid, {
        "ingest_duplicates": str(head["ingest_duplicates"]), "elapsed": str(head["elapsed"])})
    fields = {f: getattr(base, f) for f in JournalCounts.__dataclass_fields__}
    return PgJournalCounts(**fields, claimed=claimed, workers=int(head["workers"]))


async def begin_pass(conn: Any, campaign: str, expected: tuple[int, int, str] | None) -> bool:
    """Start a new pass unless the stored resume point moved from ``expected``."""
    async with conn.transaction():
        row = await conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, campaign)
        stored = (row["ingest_offset"], row["ingest_line"], row["ingest_digest"])
        if expected is not None and stored != tuple(expected):
            return False
        # Invalid rows and the duplicate count describe the input: the new pass rebuilds them.
        await conn.execute("DELETE FROM ryze_numbers WHERE campaign = $1 AND NOT valid",
                           campaign)
        await conn.execute(sql.RESTART_INPUT, campaign)
    return True


async def finish_pass(conn: Any, campaign: str) -> int:
    """The input is exhausted: if a pass is open, rows it did not see are removed."""
    async with conn.transaction():
        row = await conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, campaign)
        if not row["sweep_due"]:
            return 0
        # The rule is ``swept`` (``events.py``); SQL only narrows to the rows it may touch (a
        # claimed row is pending: a claim is not a call).
        due = [r["id"] for r in await conn.fetch(sql.SWEEP_CANDIDATES, campaign)
               if swept(_AS_PENDING.get(r["state"], r["state"]), r["seen"], row["ingest_pass"])]
        status = await conn.execute(sql.SWEEP_REMOVED, campaign, REMOVED, due)
        await conn.execute("UPDATE ryze_campaigns SET sweep_due = false WHERE campaign = $1",
                           campaign)
    return int(status.split()[-1])


_AS_PENDING = {"claimed": "pending"}


async def ingest_rows(
    conn: Any, campaign: str, entries: list[tuple[int, str]], position: tuple[int, int, str],
    normalize: Callable[[str], str],
) -> IngestResult:
    """Store a batch and the resume point after it, in one transaction; the decisions are
    ``Batch.decide``'s (``events.py``), this only reads and writes them."""
    async with conn.transaction():
        head = await conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, campaign)
        pass_no, done_line = head["ingest_pass"], head["ingest_line"]
        # Lines up to the stored one are in already (this pass): another worker read them.
        batch = Batch.read([e for e in entries if e[0] > done_line], normalize)
        known = {r["key"]: Known(_AS_PENDING.get(r["state"], r["state"]), r["seen"])
                 for r in await conn.fetch(sql.KNOWN_KEYS, campaign, batch.person_keys())}
        decided = batch.decide(known, pass_no)
        again = [d for d in decided if d.decision in ("known", "restored")]
        added = await _insert_in_order(conn, campaign, decided, pass_no)
        if again:
            await conn.execute(sql.SEE_AGAIN, campaign, [d.key for d in again],
                               [d.line for d in again], pass_no,
                               [d.decision == "restored" for d in again])
        invalid = batch.invalid
        if invalid:
            await conn.execute(sql.INSERT_INVALID, campaign, [raw for _, raw, _ in invalid],
                               [at for at, _, _ in invalid], [why for _, _, why in invalid],
                               pass_no)
        result = batch_result(decided, invalid, added)
        offset, line, digest = position
        await conn.execute(sql.SET_POSITION, campaign, result.duplicates, offset, line, digest)
    return result


async def _insert_in_order(conn: Any, campaign: str, decided: list[Decided], pass_no: int) -> int:
    """Insert the added rows, and move each restored one to the end of the id order, in input
    order: a restored row is dialed where it stands now, after the rows before it and before
    those after it, as in SQLite (the same order, so both stores call the same people first).
    Restored rows are rare (an input edited between runs): one statement each."""
    added = 0
    run: list[Decided] = []
    for entry in [*decided, None]:
        if entry is not None and entry.decision == "added":
            run.append(entry)
            continue
        if entry is not None and entry.decision != "restored":
            continue
        if run:
            added += len(await conn.fetch(
                sql.INSERT_VALID, campaign, [d.number for d in run], [d.key for d in run],
                [d.line for d in run], pass_no))
            run = []
        if entry is not None:
            await conn.execute(sql.RENUMBER, campaign, entry.key)
    return added


_COMMIT_TRIES = 5


async def _claim(db: Any, query: str, *args: object) -> list[Any]:
    async with db.transaction():
        # A claim lost in a crash of the database host is harmless (the number is pending
        # again, nothing was sent): no flush to disk of its own. A mark always flushes.
        await db.execute("SET LOCAL synchronous_commit TO off")
        rows: list[Any] = await db.fetch(query, *args)
    return rows


def _claim_lost(row_id: int) -> ClaimLostError:
    return ClaimLostError(f"row {row_id} is no longer held by this worker: not sending")


# Pending rows not held for a window count too: recover() may just have given a dead worker's
# claims back, after this worker's last claim found nothing; stopping would leave them uncalled.
_HELD_ELSEWHERE = """
SELECT count(*) FROM ryze_numbers WHERE campaign = $1 AND (state = 'pending' AND not_before IS NULL
    OR state IN ('claimed', 'sending') AND owner IS DISTINCT FROM $2)
"""


#: The first pause before a reconnect attempt and the longest one (seconds); the pauses double
#: in between, each drawn at random in its upper half so that workers cut off together do not
#: all come back at the same instant.
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0
#: What a failed statement says when the server, not the statement, is the matter: the session
#: is over (shutdown, crash, a terminated backend, a restart still starting), whatever asyncpg
#: says of the socket yet.
_SERVER_GONE = (asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
                asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError, ConnectionError)
_CONNECT_FAILED = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
                   JournalError)


@contextlib.contextmanager
def _stall_bound(conn: Any, bound: float | None, dsn: str) -> Iterator[None]:
    """Take ``conn`` as lost once its work has waited ``bound`` seconds (None: no bound) for an
    answer: a connection that stalls without closing (a frozen network path or pooler: no FIN,
    no RST, no answer) would otherwise be awaited forever. The connection is cut, not the work
    cancelled: cancelling asyncpg mid-statement sends a cancel request over a new connection
    and leaves this one's state to guess, while a cut one fails its work as gone (``_gone``)."""
    if bound is None:
        yield
        return
    timer = asyncio.get_running_loop().call_later(bound, _cut_stalled, conn, bound, dsn)
    try:
        yield
    finally:
        timer.cancel()


def _cut_stalled(conn: Any, bound: float, dsn: str) -> None:
    _log.warning("PostgreSQL journal %s: no answer for %g s; the connection is taken as lost",
                 dsn, bound)
    conn.terminate()


def _gone(conn: Any, exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is over (not that the statement failed)."""
    return bool(conn.is_closed()) or isinstance(exc, _SERVER_GONE)


class _Connections:
    """One worker's two connections (the main one; the heartbeat's) and the work run on the main
    one: each unit alone and to its end, even if its caller is cancelled (see the module
    docstring). A unit cut short drops both (:meth:`abandon`): nothing may build upon it.

    A unit whose connection was lost (a server restart, a terminated backend, a cut proxy)
    reconnects (:meth:`reconnect`: bounded exponential backoff with jitter, each attempt logged
    once) and runs again on the new connection, while the units queued behind it wait. Running
    a unit again is what makes this safe, so each unit is one that may run twice: reads, and
    transactions that apply the same way twice (the store reads a mark's fate back, see
    ``PgStore._apply``, and gives back claims it never learned of, ``after_reconnect``). After
    ``deadline`` seconds without a connection it gives up for good: that unit and every later
    one raise :class:`JournalConnectionLostError` at once."""

    def __init__(self, dsn: str, url: str = "", *, name: str = "ryze-async",
                 deadline: float = 0.0) -> None:
        self.dsn = dsn  # as it may be shown: no password
        self._url = url  # to connect again: never shown, never in an error
        self.name = name
        self.deadline = deadline
        #: Seconds a unit of bounded work waits for an answer before its connection is taken
        #: as lost (``_stall_bound``; None: no bound).
        self.stall: float | None = None
        #: Run on the new connection before anything else (the store's reconciliation).
        self.after_reconnect: Callable[[Any], Awaitable[None]] | None = None
        self.main: Any = None
        self.beat: Any = None
        self.beat_task: asyncio.Task[None] | None = None
        self._io = asyncio.Lock()  # one unit at a time on an asyncpg connection (FIFO)
        self.units: set[asyncio.Task[Any]] = set()
        self._gave_up: JournalConnectionLostError | None = None

    def db(self) -> Any:
        if self.main is None:
            raise JournalError("the journal is closed")
        return self.main

    async def run(self, work: Callable[[Any], Awaitable[_T]], *, again: bool = True,
                  bounded: bool = True) -> _T:
        """Run ``work(connection)`` alone on the connection and to its end, even if the caller
        is cancelled meanwhile (see the module docstring); once more after a reconnect unless
        ``again`` is false (work that wrote outside the database, such as an export). Work
        ``bounded`` waits ``stall`` seconds at most for its answer (then the connection is
        taken as lost); work whose size grows with the campaign (ingest, reports) is not."""
        self.db()
        unit = asyncio.get_running_loop().create_task(
            self._alone(work, again, self.stall if bounded else None))
        self.units.add(unit)
        unit.add_done_callback(self._unit_done)
        return await asyncio.shield(unit)

    async def _alone(self, work: Callable[[Any], Awaitable[_T]], again: bool,
                     bound: float | None) -> _T:
        async with self._io:
            while True:
                if self._gave_up is not None:
                    raise JournalConnectionLostError(str(self._gave_up))
                conn = self.db()
                try:
                    with _stall_bound(conn, bound, self.dsn):
                        return await work(conn)
                except asyncio.CancelledError:
                    # Only the loop's teardown cancels a unit itself: whatever it left open on
                    # the connection must not be built upon.
                    self.abandon()
                    raise
                except Exception as exc:
                    if not _gone(conn, exc):
                        raise
                    conn.terminate()
                    if not again:
                        raise self.lost(exc) from None
                    await self.reconnect(exc)

    def lost(self, exc: BaseException) -> JournalConnectionLostError:
        """The error of a lost connection: one line, the URL without its password."""
        return JournalConnectionLostError(
            f"lost the connection to the PostgreSQL journal {self.dsn} ({type(exc).__name__});"
            " nothing more is sent: start again once the database is back")

    async def reconnect(self, exc: BaseException) -> None:
        """Connect again (backoff with jitter, within ``deadline`` seconds of the loss), then
        run ``after_reconnect``; raise :class:`JournalConnectionLostError` (and keep it for
        every later unit) once the deadline has passed."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.deadline
        reason = type(exc).__name__
        for attempt in itertools.count(1):
            left = give_up - loop.time()
            if left <= 0:
                self._gave_up = JournalConnectionLostError(
                    f"lost the connection to the PostgreSQL journal {self.dsn} ({reason}) and "
                    f"could not reconnect within {self.deadline:g} s (the reconnect deadline);"
                    " nothing more is sent: start again once the database is back")
                raise self._gave_up
            ceiling = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (attempt - 1))
            pause = min(left, random.uniform(ceiling / 2, ceiling))
            _log.warning("PostgreSQL journal %s unreachable (%s): reconnect attempt %d in "
                         "%.1f s", self.dsn, reason, attempt, pause)
            await asyncio.sleep(pause)
            if self.main is None:
                raise JournalError("the journal is closed")
            try:
                await self._replace(max(0.1, give_up - loop.time()))
            except _CONNECT_FAILED as failed:
                reason = type(failed).__name__
                continue
            _log.warning("PostgreSQL journal %s: reconnected (attempt %d)", self.dsn, attempt)
            return

    async def _replace(self, bound: float) -> None:
        conn = await asyncio.wait_for(sql.connect(self._url, self.name), bound)
        try:
            if self.after_reconnect is not None:
                await self.after_reconnect(conn)
        except BaseException:
            conn.terminate()
            raise
        self.main = conn

    async def revive_beat(self, bound: float) -> None:
        """The heartbeat's connection, connected again if it was lost (one try, ``bound``
        seconds): the main connection's units own the deadline, the heartbeat just keeps up."""
        if self.main is None or (self.beat is not None and not self.beat.is_closed()):
            return
        self.beat = await asyncio.wait_for(sql.connect(self._url, self.name),
                                           bound)

    def _unit_done(self, unit: asyncio.Task[Any]) -> None:
        self.units.discard(unit)
        if not unit.cancelled():
            unit.exception()  # a cancelled caller's unit: its error is nobody's to raise

    def abandon(self) -> None:
        """Drop the connections now: a unit was cut short, so the main connection may be
        inside a transaction (the server rolls it back) and nothing more may use it."""
        for conn in (self.main, self.beat):
            if conn is not None:
                conn.terminate()
        if self.beat_task is not None:
            self.beat_task.cancel()
        self.main = self.beat = None

    async def disconnect(self) -> None:
        if self.beat_task is not None:
            self.beat_task.cancel()
            with contextlib.suppress(BaseException):
                await self.beat_task
            self.beat_task = None
        for conn in (self.beat, self.main):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self.main = self.beat = None


class PgStore:
    """One worker's handle on a campaign in PostgreSQL: its connections and its leases'
    heartbeat, the journal-store seam (claims, marks, group commit, reads) and its events.
    Open with ``await PgStore.open(...)``; use from one event loop."""

    #: Several workers share the campaign: a page of pending rows is a claim (keep it small).
    shared = True

    def __init__(self, dsn: str, campaign: str, *, worker: str, lease: float,
                 heartbeat: float, read_only: bool, reconnect_deadline: float = 0.0) -> None:
        self.dsn = shown_url(dsn)
        self.campaign = campaign
        #: This worker's identity in ``owner`` (host, pid and a random part: unique per open).
        self.worker = worker
        self.lease = lease
        self.heartbeat = heartbeat
        self.read_only = read_only
        #: Rows found ``sending`` with an expired lease at open and turned ``unknown``.
        self.recovered = 0
        self._runs = 0  # add_elapsed calls so far: each one's id in ryze_elapsed
        #: Seconds a lost connection is tried again before the store gives up (0: at once).
        self.reconnect_deadline = reconnect_deadline
        # The worker's name in pg_stat_activity too: an operator sees whose session is whose.
        self._link = _Connections(self.dsn, dsn, name=f"ryze-async {worker}"[:63],
                                  deadline=reconnect_deadline)
        self._link.after_reconnect = self._reconnected
        # A call's unit of work (a claim, a mark, a commit) answers in milliseconds; one still
        # unanswered after a lease has lost its connection, whatever the socket says.
        self._link.stall = lease
        self._claimed: set[int] = set()  # ids claim()/due() handed out, not yet marked or recorded
        self._closing: asyncio.Task[None] | None = None
        self._last_recover = 0.0
        #: Heartbeats sent (renewals of this worker's live leases).
        self.beats = 0
        self._group: GroupCommit[PgOp] = GroupCommit(self._commit, _claim_lost)
        self._listeners: list[Listener] = []
        self._committed = Committed()
        self._last_rebase = 0.0

    # -- opening and closing --------------------------------------------------------------------

    @classmethod
    async def open(
        cls, dsn: str, *, campaign: str, identity: CampaignIdentity | None = None,
        force: bool = False, read_only: bool = False, worker: str | None = None,
        lease: float = sql.DEFAULT_LEASE, heartbeat: float | None = None,
        reconnect_deadline: float = sql.DEFAULT_RECONNECT_DEADLINE,
    ) -> Self:
        """Connect, create the tables and the campaign if missing, check ``identity`` (as the
        SQLite journal does), recover expired leases, and start the heartbeat.

        ``read_only`` (a report on running workers) changes nothing and holds no lease.
        ``lease``: seconds a claim outlives its worker's last heartbeat (every ``heartbeat``
        seconds, a third of the lease unless given). ``reconnect_deadline``: seconds a lost
        connection is tried again (backoff with jitter) before the store gives up with
        :class:`JournalConnectionLostError`.
        """
        if not campaign:
            raise ValueError("a campaign name is required")
        sql.check_worker_settings(lease=lease, reconnect_deadline=reconnect_deadline)
        heartbeat = lease / 3 if heartbeat is None else heartbeat
        if not 0 < heartbeat < lease:
            raise ValueError("heartbeat must be positive and shorter than the lease")
        worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        journal = cls(dsn, campaign, worker=worker, lease=lease, heartbeat=heartbeat,
                      read_only=read_only, reconnect_deadline=reconnect_deadline)
        try:
            await journal._connect(dsn, identity, force)
        except BaseException as exc:
            await journal._link.disconnect()
            if isinstance(exc, asyncpg.PostgresError | OSError):
                raise JournalError(f"{journal.dsn} is not a usable journal: "
                                   f"{scrub(str(exc), dsn)}") from None
            raise
        return journal

    async def _connect(self, dsn: str, identity: CampaignIdentity | None, force: bool) -> None:
        self._link.main = await sql.connect(dsn, self._link.name)
        if self.read_only:
            exists = await self._link.main.fetchval(
                "SELECT to_regclass('ryze_campaigns') IS NOT NULL")
            if not exists or await self._link.main.fetchrow(
                    "SELECT 1 FROM ryze_campaigns WHERE campaign = $1", self.campaign) is None:
                raise JournalError(f"no campaign {self.campaign!r} in {self.dsn}")
            return
        async with self._link.main.transaction():
            await self._link.main.execute("SELECT pg_advisory_xact_lock($1)", sql.SCHEMA_LOCK)
            await self._link.main.execute(sql.SCHEMA)
            await self._link.main.execute(sql.MIGRATE)
            await self._link.main.execute(sql.MIGRATE_QUOTA)
            await self._link.main.execute(RULES_SCHEMA)
            await self._link.main.execute(
                "INSERT INTO ryze_campaigns (campaign) VALUES ($1) ON CONFLICT DO NOTHING",
                self.campaign)
            await rekey_postgres(self._link.main, self.campaign)
        if identity is not None:
            await self._check_identity(identity, force)
        self.recovered = (await self.recover())[1]
        self._link.beat = await sql.connect(dsn, self._link.name)
        self._link.beat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _check_identity(self, identity: CampaignIdentity, force: bool) -> None:
        async with self._link.main.transaction():
            row = await self._link.main.fetchrow(sql.CAMPAIGN_FOR_UPDATE, self.campaign)
            stored = {k: row[k] for k in ("kind", "media", "instance") if row[k] is not None}
            called = await self._link.main.fetchval(
                "SELECT 1 FROM ryze_numbers WHERE campaign = $1 AND state IN "
                "('placed', 'unknown', 'sending') LIMIT 1", self.campaign)
            check_identity(f"campaign {self.campaign!r}", stored,  # type: ignore[arg-type]
                           identity, force or called is None)
            meta = identity.as_meta()
            await self._link.main.execute(
                "UPDATE ryze_campaigns SET kind = $2, media = $3, instance = "
                "COALESCE($4, instance), quota = COALESCE($5, quota) WHERE campaign = $1",
                self.campaign, meta["kind"], meta["media"], meta.get("instance"),
                meta.get("quota"))

    async def close(self) -> None:
        """Flush, wait for the work under way, give back unsent claims, disconnect. Idempotent.
        Cancelled, it still lets the queued writes land; cancelled again, it drops the
        connections (the server rolls back what was not committed: fail closed)."""
        if self._link.main is None:
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
                self._link.abandon()
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
            await asyncio.gather(*self._link.units, return_exceptions=True)
        finally:
            await self._link.disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _db(self) -> Any:
        return self._link.db()

    async def _run(self, work: Callable[[Any], Awaitable[_T]], *, again: bool = True,
                   bounded: bool = True) -> _T:
        return await self._link.run(work, again=again, bounded=bounded)

    async def _heartbeat(self) -> None:
        """Renew this worker's live leases; one that already expired is never revived. A lost
        heartbeat connection is connected again at the next beat."""
        pause = self.heartbeat
        while True:
            await asyncio.sleep(pause)
            try:
                await self._link.revive_beat(self.heartbeat)
                await self.beat()
            except _CONNECT_FAILED:
                pause = self.heartbeat / 4  # the leases run out meanwhile: try again soon
            else:
                pause = self.heartbeat

    async def _reconnected(self, db: Any) -> None:
        """On a new connection, before any unit runs again: claims this worker holds but never
        learned of (a claim committed as its connection died) and claims whose lease ran out
        while it was cut off are given back; the latter are no longer this worker's to send
        (a mark refuses them: :class:`ClaimLostError`, nothing sent)."""
        if self.read_only:
            return
        row = await db.fetchrow(sql.RECONCILE, self.campaign, self.worker, sorted(self._claimed))
        if row["strays"] or row["expired"]:
            _log.warning("PostgreSQL journal %s: after the reconnect, %d claims this worker "
                         "never received and %d whose lease ran out meanwhile went back to "
                         "pending (not sent)", self.dsn, row["strays"], row["expired"])

    async def beat(self) -> int:
        """Renew this worker's live leases now (its own connection); how many were renewed.
        Never waits for a row another transaction holds (that one is renewed next time)."""
        if self._link.beat is None:
            raise JournalError("a read-only or closed journal holds no leases")
        # Half a beat: cut and connected again, the next one still comes before the lease ends.
        with _stall_bound(self._link.beat, self.heartbeat / 2, self.dsn):
            status = await self._link.beat.execute(sql.HEARTBEAT, self.campaign, self.worker,
                                                    self.lease)
        self.beats += 1
        return int(status.split()[-1])

    # -- leases ---------------------------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Apply expired leases: (claims given back to pending, sending rows made unknown)."""
        row = await self._run(lambda db: db.fetchrow(sql.RECOVER, self.campaign))
        self._last_recover = asyncio.get_running_loop().time()
        return int(row["released"]), int(row["lost"])

    # -- meta -----------------------------------------------------------------------------------

    async def _campaign_row(self) -> Any:
        return await self._run(lambda db: db.fetchrow(
            "SELECT * FROM ryze_campaigns WHERE campaign = $1", self.campaign))

    async def ingest_position(self) -> tuple[int, int, str]:
        """Where ingestion stopped (any worker's): (offset, line, digest of the input)."""
        row = await self._campaign_row()
        return int(row["ingest_offset"]), int(row["ingest_line"]), str(row["ingest_digest"])

    async def add_elapsed(self, seconds: float) -> None:
        """Add a run's duration (with many workers: the sum of their run times), once even
        when the commit's answer is lost and the statement is tried again."""
        self._runs += 1
        run = f"{self.worker}:{self._runs}"
        await self._run(lambda db: db.execute(sql.ADD_ELAPSED, self.campaign, seconds, run))

    # -- ingestion ------------------------------------------------------------------------------

    async def ingest(self, entries: list[tuple[int, str]], *, position: tuple[int, int, str],
                     normalize: Callable[[str], str]) -> IngestResult:
        """Store a batch of ``(line, raw)`` entries and the resume point after it; entries
        another worker already ingested in this pass are skipped (see :func:`ingest_rows`)."""
        result = await self._run(lambda db: ingest_rows(db, self.campaign, entries,
                                                        position, normalize))
        self._emit(Ingested(result))
        return result

    async def begin_pass(self, expected: tuple[int, int, str] | None = None) -> bool:
        """The input changed: read it again from its first entry, unless the resume point is
        no longer ``expected`` (another worker began the new pass). True if this call did."""
        return await self._run(lambda db: begin_pass(db, self.campaign, expected), bounded=False)

    async def finish_pass(self) -> int:
        removed = await self._run(lambda db: finish_pass(db, self.campaign), bounded=False)
        await self.counts()  # a pass rebuilt invalid rows and re-saw known ones: recount
        return removed

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
        self._claimed.update(r["id"] for r in rows)
        now = asyncio.get_running_loop().time()
        if self._listeners and now - self._last_rebase >= self.heartbeat:
            await self.counts()  # other workers' progress, for the live display
        return sorted(Row(r["id"], r["number"], r["line"]) for r in rows)

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
        rows = await self._run(lambda db: _claim(db, sql.CLAIM_DUE, self.campaign,
                                                 self.worker, self.lease, limit, now))
        self._claimed.update(r["id"] for r in rows)
        return [(r["id"], r["number"], r["line"], r["not_before"]) for r in rows]

    async def next_due(self, after: tuple[float, int] = (float("-inf"), 0)) -> float | None:
        """When the first held row (any worker's) comes due (None: none will)."""
        at = await self._run(lambda db: db.fetchval(sql.NEXT_DUE, self.campaign))
        return None if at is None else float(at)

    async def held_counts(self, now: float) -> tuple[int, int]:
        """(rows waiting for a later window, rows no window opens for)."""
        row = await self._run(lambda db: db.fetchrow(sql.HELD_COUNTS, self.campaign, now))
        return int(row[0]), int(row[1])

    async def hold_rules(self, rules: str) -> int:
        """The rules holds are computed under; other rules than the stored ones forget every
        hold (queued holds are written first). How many were forgotten."""
        await self.flush()
        return int(await self._run(lambda db: db.fetchval(sql.HOLD_RULES, self.campaign,
                                                          rules), bounded=False))

    async def settle_rules(self, given: CampaignRules, *, change: bool, now: datetime,
                           inherited: Collection[str] = ()) -> Settled:
        """Compare ``given`` with the campaign's recorded rules (the campaign's row locked)
        and record what this worker uses (``recorded_rules.settle``)."""
        return await self._run(lambda db: pg_settle(db, self.campaign, given, change, now,
                                                    inherited=inherited))

    async def rule_changes(self) -> list[RuleChange]:
        """The audit trail: rules changed on purpose, oldest first."""
        return await self._run(lambda db: pg_trail(db, self.campaign), bounded=False)

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

    async def _commit(self, ops: list[PgOp]) -> set[int]:
        refused = await self._apply(ops)
        for op in ops:
            self._claimed.discard(op.row_id)  # marked, refused, recorded or held: not a claim
            if isinstance(op, HoldRow):
                continue  # pending (or this worker's claim) it was, pending it is
            if isinstance(op, Mark):
                if op.row_id not in refused:
                    self._emit(self._committed.marked(op.row_id))
            else:
                self._emit(self._committed.recorded(
                    op.row_id, op.state, op.error))  # type: ignore[arg-type]
        return refused

    async def _apply(self, ops: list[PgOp]) -> set[int]:
        # A deadlock or serialization failure rolled the whole transaction back (no mark was
        # committed, so nothing was sent on it): applying the same ops again is safe.
        for attempt in range(_COMMIT_TRIES):
            try:
                return await self._run(self._applier(ops))
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == _COMMIT_TRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _applier(self, ops: list[PgOp]) -> Callable[[Any], Awaitable[set[int]]]:
        """The unit applying ``ops``. Run again after a reconnect, the commit's fate is unknown
        (the connection died before its answer): applying the ops again changes nothing they
        already changed (a mark moves only a pending or claimed row; an outcome only a row in
        flight), and a mark refused then, whose row is ``sending`` under this worker's live
        lease, is the lost commit's own: acknowledged, so its call goes out once. A mark is
        never acknowledged unless it is committed and read back as such."""
        runs = 0

        async def unit(db: Any) -> set[int]:
            nonlocal runs
            runs += 1
            refused = await apply_ops(db, self.campaign, self.worker, self.lease, ops)
            if runs > 1 and refused:
                mine = await db.fetch(sql.STILL_SENDING, self.campaign, self.worker,
                                      sorted(refused))
                refused -= {r["id"] for r in mine}
            return refused

        return unit

    # -- reporting ------------------------------------------------------------------------------

    async def counts(self) -> PgJournalCounts:
        """Counts by state (valid rows), invalid rows, duplicates; readable while workers run."""
        if not self.read_only:
            await self.flush()
        rows, head = await self._run(self._read_counts)
        counts = build_counts(rows, head)
        self._last_rebase = asyncio.get_running_loop().time()
        self._emit(Rebased(counts))
        return counts

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
            self.campaign, wanted), bounded=False)
        await self.counts()
        return int(status.split()[-1])

    async def export_csv(self, out: str | os.PathLike[str] | TextIO) -> int:
        """One CSV row per stored number (the SQLite columns plus ``sender``)."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda db: export_csv(db, self.campaign, out), again=False,
                               bounded=False)

    async def report_data(self) -> ReportData:
        """Per-minute attempt counts and the failed/unknown rows, as the SQLite store's."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda db: read_report(db, self.campaign), bounded=False)

    async def export_jsonl(self, out: str | os.PathLike[str] | TextIO) -> int:
        """Like :meth:`export_csv`, one JSON object per line (the SQLite store's lines)."""
        if not self.read_only:
            await self.flush()
        return await self._run(lambda db: export_jsonl(db, self.campaign, out), again=False,
                               bounded=False)

    # -- events ---------------------------------------------------------------------------------

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
