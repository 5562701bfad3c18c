"""The campaign journal: one SQLite file (WAL) that *is* the campaign.

Every number moves ``pending -> sending -> placed | failed | unknown``. The ``sending`` mark is
committed before the request leaves (the campaign awaits :meth:`Journal.mark_sending` from the
client's ``before_send`` hook), so after any crash a row still ``sending`` may have been called:
opening the journal turns it into ``unknown`` and nothing redials it unless a person asks
(:meth:`Journal.retry`). Invalid numbers are stored ``failed`` (``valid = 0``) and never sent;
duplicates are only counted. A pending number the input no longer holds (it was edited between
runs) becomes ``skipped`` and is never sent (see the ingest functions below). This is the SQLite
implementation of the ``JournalStore`` seam (``journal/__init__.py``).

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

:class:`Journal` holds the file and its thread too: opening (the ``flock``, the connection,
recovery of rows left ``sending``, the identity check), closing, and running work on the
journal's one thread. A commit applies marks and outcomes in order in one transaction
(:func:`apply_ops`, batched by :class:`~..events.GroupCommit`).

Ingestion into the journal: rows, the resume point, and passes over an input that changed. A
*pass* is one read of the input from its first entry. Every row records the pass that last
saw it (``seen``). While the input is only appended to, one pass goes on across runs. When the
input changed under the journal (the source could not resume: ``begin_pass``), a new pass
starts: each entry goes through the dedupe again (a number already in the journal keeps its
state; only a number new to the journal is added as pending), and when the input is exhausted
(``finish_pass``) a pending row this pass did not see is no longer in the input: it becomes
``skipped`` (removed from input) and is never dialed. Until that sweep is done
(``sweep_due``), the campaign dispatches nothing: a pending row might be one the user removed.

Held rows are pending rows outside their calling window (run on the journal's thread). A held
row stays ``pending`` with ``not_before``, the Unix time its window opens (``inf``: no
window ever opens for it under these rules). ``pending_after`` skips held rows; the feeder
reads them back with :func:`due_rows` once their time has come, in ``(not_before, id)`` order
above a keyset it keeps, so a row is offered once per hold without any write. The rules that
computed the times are stored (``hold_rules``): a run under other rules forgets every hold,
and its own rules judge those rows again when they are read.

Opening connects (owner-only files, WAL), recovers, and checks the identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Literal, Self, TextIO, TypeVar

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
    MarkSending,
    Op,
    Rebased,
    RecordOutcome,
    Row,
    State,
    batch_result,
    swept,
)
from ..recorded_rules import CampaignRules, RuleChange, Settled, sqlite_settle, sqlite_trail
from ..schema import (
    SCHEMA,
    CampaignIdentity,
    JournalCounts,
    JournalError,
    add_elapsed,
    check_identity,
    count_rows,
    lock_file,
    migrate,
    owner_only,
    pending_after,
    read_meta,
    rekey_sqlite,
    retry_rows,
    write_meta,
)
from .report import ReportData, export_csv, export_jsonl, read_report

__all__ = [
    "HOLD",
    "NEVER",
    "Journal",
    "apply_ops",
    "begin_pass",
    "connect",
    "due_rows",
    "finish_pass",
    "held_counts",
    "ingest_rows",
    "next_due",
    "prepare_file",
    "recover",
    "set_hold_rules",
    "store_identity",
    "sweep_due",
]


_INTERRUPTED = "interrupted while sending: the call may have been placed"


def connect(path: Path, read_only: bool, synchronous: str) -> sqlite3.Connection:
    if read_only:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    # The umask covers the -wal and -shm files SQLite creates on its first writes below.
    with owner_only():
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            migrate(conn)
            conn.executescript(SCHEMA)
            rekey_sqlite(conn)
        except BaseException:
            conn.close()
            raise
    for suffix in ("", "-wal", "-shm"):
        target = Path(f"{path}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(target.stat().st_mode) & 0o077:
                target.chmod(0o600)
    return conn


def recover(db: sqlite3.Connection) -> int:
    """Rows a previous run left ``sending`` may have been called: ``unknown``, never redialed."""
    cur = db.execute(
        "UPDATE numbers SET state = 'unknown', error = ? WHERE state = 'sending'",
        (_INTERRUPTED,),
    )
    return cur.rowcount


def store_identity(
    db: sqlite3.Connection, path: Path, identity: CampaignIdentity, force: bool
) -> None:
    stored = dict(db.execute("SELECT key, value FROM meta").fetchall())
    # Until some call may have been placed, nothing ties the journal to its first identity
    # (e.g. a mistyped instance that only ever got 404s can be corrected without --force).
    called = db.execute(
        "SELECT 1 FROM numbers WHERE state IN ('placed', 'unknown', 'sending') LIMIT 1"
    ).fetchone()
    check_identity(path, stored, identity, force or called is None)
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
        [(k, v) for k, v in identity.as_meta().items()],
    )
    db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)",
               (str(time.time()),))
    db.execute("COMMIT")


def prepare_file(path: Path, create: bool, read_only: bool) -> int | None:
    """Check the file exists if it must, and lock (creating it owner-only) unless read-only."""
    if not create and not path.exists():
        raise JournalError(f"no journal at {path}")
    return None if read_only else lock_file(path)


_T = TypeVar("_T")


#: ``not_before`` of a row no calling window ever opens for (under the stored rules).
NEVER = float("inf")
HOLD = "UPDATE numbers SET not_before = ? WHERE id = ? AND state = 'pending'"
_HELD = "state = 'pending' AND not_before IS NOT NULL AND valid = 1"


def due_rows(db: sqlite3.Connection, now: float, after: tuple[float, int],
             limit: int) -> list[tuple[int, str, int, float]]:
    """Held rows whose time has come (``not_before <= now``), above the keyset ``after``."""
    return db.execute(
        f"SELECT id, number, line, not_before FROM numbers WHERE {_HELD} "  # noqa: S608
        "AND not_before <= ? AND not_before >= ? AND (not_before > ? OR id > ?) "
        "ORDER BY not_before, id LIMIT ?", (now, after[0], after[0], after[1], limit),
    ).fetchall()


def next_due(db: sqlite3.Connection, after: tuple[float, int]) -> float | None:
    """When the first held row above the keyset ``after`` comes due (None: none will)."""
    row = db.execute(
        f"SELECT not_before FROM numbers WHERE {_HELD} AND not_before >= ? "  # noqa: S608
        "AND not_before < ? AND (not_before > ? OR id > ?) ORDER BY not_before LIMIT 1",
        (after[0], NEVER, after[0], after[1]),
    ).fetchone()
    return None if row is None else float(row[0])


def held_counts(db: sqlite3.Connection, now: float) -> tuple[int, int]:
    """(rows waiting for a window that opens later, rows no window opens for)."""
    waiting, never = db.execute(
        f"SELECT count(*) FILTER (WHERE not_before < ?), count(*) FILTER "  # noqa: S608
        f"(WHERE not_before >= ?) FROM numbers WHERE {_HELD} AND not_before > ?",
        (NEVER, NEVER, now),
    ).fetchone()
    return int(waiting), int(never)


def set_hold_rules(db: sqlite3.Connection, rules: str) -> int:
    """Store the rules holds are computed under; if they changed, forget every hold (the rows
    are judged again under the new rules). How many holds were forgotten."""
    if read_meta(db, "hold_rules", "") == rules:
        return 0
    db.execute("BEGIN IMMEDIATE")
    try:
        cleared = db.execute(
            "UPDATE numbers SET not_before = NULL WHERE state = 'pending' "
            "AND not_before IS NOT NULL").rowcount
        write_meta(db, {"hold_rules": rules})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return int(cleared)


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


def sweep_due(db: sqlite3.Connection) -> bool:
    return read_meta(db, "sweep_due") == "1"


def begin_pass(db: sqlite3.Connection) -> None:
    """Start reading the input again from its first entry (it changed under the journal).

    Invalid rows and the duplicate count describe the input, so they are dropped and rebuilt by
    the new pass; valid rows keep their states (nobody placed, failed or unknown is redialed).
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        pass_no = int(read_meta(db, "ingest_pass")) + 1
        db.execute("DELETE FROM numbers WHERE valid = 0")
        write_meta(db, {"ingest_pass": str(pass_no), "sweep_due": "1", "ingest_duplicates": "0",
                  "ingest_offset": "0", "ingest_line": "0", "ingest_digest": ""})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def finish_pass(db: sqlite3.Connection) -> int:
    """The input is exhausted: if a pass is open, pending rows it did not see are removed."""
    if not sweep_due(db):
        return 0
    db.execute("BEGIN IMMEDIATE")
    try:
        # The rule is ``swept`` (``events.py``), called by SQLite itself, not written again here.
        db.create_function("swept", 3, swept, deterministic=True)
        removed = db.execute(
            "UPDATE numbers SET state = 'skipped', error = ? WHERE valid = 1 "
            "AND swept(state, seen, ?)", (REMOVED, int(read_meta(db, "ingest_pass"))),
        ).rowcount
        write_meta(db, {"sweep_due": "0"})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return removed


def _known(db: sqlite3.Connection, keys: list[str]) -> dict[str, Known]:
    return {key: Known(state, seen) for key, state, seen in db.execute(
        "SELECT key, state, seen FROM numbers WHERE key IN (SELECT value FROM json_each(?))",
        (json.dumps(keys),))}


def _apply(db: sqlite3.Connection, entry: Decided, pass_no: int) -> None:
    """Write one valid entry's decision (``Batch.decide``, the rule's one home)."""
    if entry.decision == "added":
        db.execute("INSERT INTO numbers(number, key, valid, state, line, seen) "
                   "VALUES (?, ?, 1, 'pending', ?, ?)",
                   (entry.number, entry.key, entry.line, pass_no))
    elif entry.decision == "known":
        db.execute("UPDATE numbers SET seen = ?, line = ? WHERE key = ?",
                   (pass_no, entry.line, entry.key))
    elif entry.decision == "restored":
        # Back to pending at the end of the id order, as a new row would be. The feeder reads
        # pending rows above its cursor: rows appended to the input are ingested while it
        # dispatches (no pass holds it), so it may be past the old id, and a row pending there
        # would never be fed in this run.
        db.execute(
            "UPDATE numbers SET id = (SELECT max(id) + 1 FROM numbers), seen = ?, line = ?, "
            "state = 'pending', error = NULL, not_before = NULL WHERE key = ?",
            (pass_no, entry.line, entry.key),
        )


def ingest_rows(
    db: sqlite3.Connection, entries: list[tuple[int, str]], position: tuple[int, int, str],
    normalize: Callable[[str], str],
) -> IngestResult:
    """Store a batch and the resume point after it, in one transaction."""
    batch = Batch.read(entries, normalize)
    db.execute("BEGIN IMMEDIATE")
    try:
        pass_no = int(read_meta(db, "ingest_pass"))
        decided = batch.decide(_known(db, batch.person_keys()), pass_no)
        for entry in decided:
            _apply(db, entry, pass_no)
        if batch.invalid:
            db.executemany(
                "INSERT INTO numbers(number, key, valid, state, line, error, seen) "
                "VALUES (?, NULL, 0, 'failed', ?, ?, ?)",
                [(raw, at, why, pass_no) for at, raw, why in batch.invalid],
            )
        result = batch_result(decided, batch.invalid)
        db.execute(
            "INSERT INTO meta(key, value) VALUES ('ingest_duplicates', ?) ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)",
            (str(result.duplicates),),
        )
        offset, line, digest = position
        write_meta(db, {"ingest_offset": str(offset), "ingest_line": str(line),
                  "ingest_digest": digest})
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return result


class Journal:
    """A campaign journal. Open with ``await Journal.open(path, ...)``; use from one event loop."""

    #: One process per file: ``pending_after`` reads, it does not claim (pages may be large).
    shared = False

    def __init__(self, path: Path, executor: ThreadPoolExecutor, lock_fd: int | None) -> None:
        self.path = path
        self._executor = executor
        self._lock_fd = lock_fd
        self._conn: sqlite3.Connection | None = None
        #: Rows found ``sending`` at open and turned ``unknown``.
        self.recovered = 0
        self.read_only = lock_fd is None
        self._group: GroupCommit[Op] = GroupCommit(self._commit, _not_pending)
        self._listeners: list[Listener] = []
        self._committed = Committed()
        self._hold = False  # an input pass is open: ingest events wait for its sweep
        self.commits = 0

    # -- opening and closing --------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        identity: CampaignIdentity | None = None,
        force: bool = False,
        create: bool = True,
        read_only: bool = False,
        synchronous: Literal["full", "normal"] = "full",
    ) -> Self:
        """Open (or create, owner-only) a journal and recover rows left ``sending``.

        ``identity`` is compared with the stored one: once any call may have been placed, a
        different media, instance or call kind raises :class:`JournalMismatchError` unless
        ``force``; the identity given is then stored.
        ``read_only`` takes no lock and changes nothing (a report on a running campaign).
        """
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        p = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ryze-journal")
        loop = asyncio.get_running_loop()
        lock_fd = None
        journal: Self | None = None
        try:
            lock_fd = await loop.run_in_executor(executor, prepare_file, p, create, read_only)
            journal = cls(p, executor, lock_fd)
            await journal._run(journal._connect, read_only, synchronous)
            if not read_only:
                journal.recovered = await journal._run(lambda: recover(journal._db()))
                if identity is not None:
                    await journal._run(store_identity, journal._db(), p, identity, force)
        except BaseException as exc:
            if journal is not None:
                executor.submit(journal._disconnect).result()
            executor.shutdown(wait=True)
            if lock_fd is not None:
                os.close(lock_fd)
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"{p} is not a usable journal: {exc}") from exc
            raise
        return journal

    async def close(self) -> None:
        """Flush what is queued, close the connection, release the lock. Idempotent."""
        if self._conn is None:
            return
        with contextlib.suppress(JournalError):
            await self.flush()
        await self._run(self._disconnect)
        self._executor.shutdown(wait=True)
        if self._lock_fd is not None:
            # Closed after SQLite's own descriptors: closing any descriptor of a file drops
            # the process's POSIX locks on it, and SQLite relies on those.
            os.close(self._lock_fd)
            self._lock_fd = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError("the journal is closed")
        return self._conn

    def _connect(self, read_only: bool, synchronous: str) -> None:
        self._conn = connect(self.path, read_only, synchronous)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
        digest) after it, in one transaction; see :func:`ingest_rows`."""
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

    async def pending_after(self, after_id: int, limit: int) -> list[Row]:
        """Up to ``limit`` pending valid rows with id > ``after_id``: (id, number, line)."""
        rows = await self._run(lambda: pending_after(self._db(), after_id, limit))
        return [Row(*row) for row in rows]

    async def held_elsewhere(self) -> int:
        """Rows other workers hold: none, one process has the file (``flock``)."""
        return 0

    # -- held rows (outside their calling window; the functions below) ----------------------

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
        (``recorded_rules.settle``)."""
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
                    self._emit(self._committed.marked(op.row_id))
            else:
                self._emit(self._committed.recorded(op.row_id, op.state, op.error))
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
