"""The journal's schema, identity check, counters, errors and file-safety helpers; the SQLite
store's plain queries (run on the journal's thread) and the SQL fragments both stores count
with; and journals written before person keys (#15), their rows keyed again by ``person_key``.

Until person keys a row's key was its digits (a personal JID's without its domain), so a Brazilian
mobile written once as ``5511987654321`` and once as its old WhatsApp id
``551187654321@s.whatsapp.net`` had two rows, and both could be called. Opening such a journal
for writing keys every valid row by the person it names, once (SQLite: the ``person_keys`` meta
entry; PostgreSQL: the campaign's row in ``ryze_person_keys``), in the transaction that opens it.

When two rows (or more) now name one person, one of them keeps the person's key: the first in
input order that some call was made for (``placed``, ``failed``, ``unknown``, ``sending``), else
the first ``pending`` one, else the first. Every other row keeps its history (state, call id,
attempts) under a key of its own that no number ever has (``<key>#<id>``): a later entry of
that person meets the keeper, never them. A ``pending`` one becomes ``skipped`` with
:data:`SAME_PERSON` and is never called. A dry run of a journal not rekeyed yet applies the
same plan to its rows in memory (``journal/sqlite/report.py``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ... import JournalError, JournalLockedError, JournalMismatchError
from ..inputs import person_key

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process guard
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "REPORT_STATE",
    "SAME_PERSON",
    "SCHEMA",
    "SKIP_REASON",
    "WINDOW_AT",
    "CampaignIdentity",
    "JournalCounts",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "Rekeyed",
    "add_elapsed",
    "check_identity",
    "count_rows",
    "lock_file",
    "migrate",
    "open_owner_only",
    "owner_only",
    "pending_after",
    "read_meta",
    "rekey",
    "rekey_postgres",
    "rekey_sqlite",
    "rekeyed_postgres",
    "rekeyed_sqlite",
    "retry_rows",
    "write_meta",
]

# ``key`` is the dedupe key (``person_key``, below; NULL for invalid rows, and
# NULLs never collide in a UNIQUE index);
# ``id`` order is input order, which is dispatch order; ``seen`` is the last input pass that
# read the row (``sqlite/store.py``); ``skipped`` is a pending row removed from the input;
# ``not_before`` (Unix seconds, UTC; +inf: no window ever opens) holds a pending row until its
# calling window opens (``sqlite/store.py``). The feeder reads pending rows that are not held
# through ``numbers_ready`` and held ones as they come due through ``numbers_held``, so neither
# read walks over the other's rows.
_NUMBERS = """
CREATE TABLE IF NOT EXISTS numbers (
    id          INTEGER PRIMARY KEY,
    number      TEXT NOT NULL,
    key         TEXT,
    valid       INTEGER NOT NULL,
    state       TEXT NOT NULL
                CHECK (state IN ('pending','sending','placed','failed','unknown','skipped')),
    line        INTEGER,
    call_id     TEXT,
    http_status INTEGER,
    error       TEXT,
    attempt_at  REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    seen        INTEGER NOT NULL DEFAULT 0,
    sender      TEXT,
    not_before  REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS numbers_key ON numbers(key);
CREATE INDEX IF NOT EXISTS numbers_ready ON numbers(id)
    WHERE state = 'pending' AND not_before IS NULL;
CREATE INDEX IF NOT EXISTS numbers_held ON numbers(not_before)
    WHERE state = 'pending' AND not_before IS NOT NULL;
"""
SCHEMA = "\n".join((
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    _NUMBERS, "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '4');",
))
_COLUMNS = "id, number, key, valid, state, line, call_id, http_status, error, attempt_at, attempts"
# Schema 1 had no ``seen`` column and no ``skipped`` state (a CHECK cannot be altered in place).
_MIGRATE_1 = "\n".join((
    "BEGIN IMMEDIATE;",
    "ALTER TABLE numbers RENAME TO numbers_v1;",
    "DROP INDEX IF EXISTS numbers_key;",
    "DROP INDEX IF EXISTS numbers_pending;",
    _NUMBERS,
    "INSERT INTO numbers(" + _COLUMNS + ") SELECT " + _COLUMNS + " FROM numbers_v1;",  # noqa: S608
    "DROP TABLE numbers_v1;",
    "UPDATE meta SET value = '4' WHERE key = 'schema';",
    "COMMIT;",
))
# Schema 2 had no ``sender`` column (the instance that placed each call), schema 3 no
# ``not_before`` (held rows lived in the process's memory) and an index of every pending row:
# plain additions, and that index replaced by ``numbers_ready`` (created by ``SCHEMA``).
_ADD_SENDER = "ALTER TABLE numbers ADD COLUMN sender TEXT;"
_ADD_NOT_BEFORE = "\n".join((
    "ALTER TABLE numbers ADD COLUMN not_before REAL;",
    "DROP INDEX IF EXISTS numbers_pending;",
    "UPDATE meta SET value = '4' WHERE key = 'schema';",
))


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a schema-1, -2 or -3 journal to schema 4 (same rows, states and ids)."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'numbers'").fetchone()
    if row is None:
        return
    if "'skipped'" not in row[0]:
        conn.executescript(_MIGRATE_1)  # rebuilds the table with today's columns
    elif "not_before" not in row[0]:
        steps = [] if "sender" in row[0] else [_ADD_SENDER]
        conn.executescript("\n".join(("BEGIN IMMEDIATE;", *steps, _ADD_NOT_BEFORE, "COMMIT;")))


@dataclass(frozen=True, slots=True)
class CampaignIdentity:
    """What a journal's campaign is: call kind, media fingerprint, instance.

    ``media`` is ``Media.fingerprint`` for audio calls and None for fake calls; a None
    ``instance`` (unknown to the caller) is not compared.
    """

    kind: str
    media: str | None
    instance: str | None
    #: The quota this run has ("calls/seconds"): recorded for ``report``, never compared.
    quota: str | None = None

    def as_meta(self) -> dict[str, str]:
        meta = {"kind": self.kind, "media": self.media or ""}
        if self.instance is not None:
            meta["instance"] = self.instance
        if self.quota is not None:
            meta["quota"] = self.quota
        return meta


def check_identity(
    path: Path, stored: Mapping[str, str], identity: CampaignIdentity, force: bool
) -> None:
    if "kind" not in stored or force:
        return
    wanted = identity.as_meta()
    differences = []
    for key, label in (("kind", "call kind"), ("media", "media"), ("instance", "instance")):
        if key in wanted and key in stored and stored[key] != wanted[key]:
            old, new = stored[key] or "(none)", wanted[key] or "(none)"
            if key == "media":
                old, new = old[:12], new[:12]
            differences.append(f"{label} {old!r} (journal) vs {new!r} (now)")
    if differences:
        raise JournalMismatchError(
            f"{path} belongs to a different campaign: " + "; ".join(differences)
            + ". Use a new journal, or force (--force) to continue this one anyway."
        )


@dataclass(frozen=True, slots=True)
class JournalCounts:
    """Counts as stored. ``total`` input entries = valid rows (``removed`` ones included) +
    ``invalid`` + ``duplicates``; ``removed``: pending rows no longer in the input (skipped);
    ``excluded`` / ``expired``: skipped by the operator's rules (their error says which);
    ``held``: of ``pending``, those waiting for their calling window."""

    total: int
    pending: int
    sending: int
    placed: int
    failed: int
    unknown: int
    invalid: int
    duplicates: int
    elapsed: float
    removed: int = 0
    #: Skipped at their claim: on an opt-out list, or still pending at ``not_after``.
    excluded: int = 0
    expired: int = 0
    held: int = 0

    @classmethod
    def build(cls, by_state: Mapping[str, int], invalid: int, meta: Mapping[str, str]) -> (
        JournalCounts
    ):
        duplicates = int(meta.get("ingest_duplicates", 0))
        return cls(
            total=sum(by_state.values()) + invalid + duplicates,
            pending=by_state.get("pending", 0) + by_state.get("held", 0),
            sending=by_state.get("sending", 0),
            placed=by_state.get("placed", 0),
            failed=by_state.get("failed", 0),
            unknown=by_state.get("unknown", 0),
            invalid=invalid,
            duplicates=duplicates,
            elapsed=float(meta.get("elapsed", 0.0)),
            removed=by_state.get("skipped", 0),
            excluded=by_state.get("excluded", 0),
            expired=by_state.get("expired", 0),
            held=by_state.get("held", 0),
        )


@contextlib.contextmanager
def owner_only() -> Iterator[None]:
    """Create files owner-only inside the block (the umask is process-wide: keep it short)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def open_owner_only(path: Path, *, newline: str | None = None) -> TextIO:
    """Open ``path`` to write text, owner-only (0600): an export holds phone numbers. A file
    that already existed keeps its mode through ``O_CREAT``, so it is narrowed here, before a
    byte is written to it."""
    with owner_only():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "w", newline=newline, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def lock_file(path: Path) -> int:
    """Create ``path`` owner-only if missing, and hold an exclusive ``flock`` on it.

    Returns the descriptor, to be closed only after SQLite's connection is closed.
    """
    with owner_only():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLockedError(
            f"{path} is in use by another running campaign; wait for it or stop it first"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_meta(db: sqlite3.Connection, key: str, default: str = "0") -> str:
    """A value of the SQLite journal's ``meta`` table (``default`` when absent)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else str(row[0])


def write_meta(db: sqlite3.Connection, items: dict[str, str]) -> None:
    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(items.items()))


#: A row's state for counting: a ``skipped`` row the rules made counts as its reason (the
#: error texts of ``rules/__init__.py`` start with these words); a pending row held for its calling
#: window counts as ``held`` (``JournalCounts.build`` adds those to ``pending``).
SKIP_REASON = ("CASE WHEN state = 'skipped' AND error LIKE 'excluded:%' THEN 'excluded' "
               "WHEN state = 'skipped' AND error LIKE 'expired:%' THEN 'expired' "
               "WHEN state = 'pending' AND not_before IS NOT NULL THEN 'held' ELSE state END")
#: A row's state as every report form shows it (both stores): an entry that is no number is
#: ``invalid`` (stored ``failed``: it never was a call), a claim not sent yet ``pending``.
REPORT_STATE = ("CASE WHEN NOT valid THEN 'invalid' WHEN state = 'claimed' THEN 'pending' "
                "ELSE state END")
#: When a pending row's calling window opens (NULL: not held); SQLite keeps Unix seconds.
WINDOW_AT = "CASE WHEN state = 'pending' THEN not_before END"


def pending_after(db: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[int, str, int]]:
    return db.execute(
        "SELECT id, number, line FROM numbers WHERE state = 'pending' AND not_before IS NULL "
        "AND id > ? AND valid = 1 ORDER BY id LIMIT ?", (after_id, limit),
    ).fetchall()


def count_rows(db: sqlite3.Connection) -> JournalCounts:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    by_state: dict[str, int] = {}
    invalid = 0
    for valid, state, n in db.execute(
        f"SELECT valid, {SKIP_REASON} AS st, count(*) FROM numbers GROUP BY valid, st"  # noqa: S608
    ):
        if valid:
            by_state[state] = n
        else:
            invalid += n
    return JournalCounts.build(by_state, invalid, meta)


def retry_rows(db: sqlite3.Connection, states: Sequence[str]) -> int:
    marks = ",".join("?" for _ in states)
    return db.execute(
        f"UPDATE numbers SET state = 'pending', not_before = NULL WHERE valid = 1 "  # noqa: S608
        f"AND state IN ({marks})",
        states,
    ).rowcount


def add_elapsed(db: sqlite3.Connection, seconds: float) -> None:
    db.execute(
        "INSERT INTO meta(key, value) VALUES ('elapsed', ?) ON CONFLICT(key) DO UPDATE "
        "SET value = CAST(value AS REAL) + CAST(excluded.value AS REAL)",
        (str(seconds),),
    )


SAME_PERSON = ("duplicate: same person as line {line} ({number}, written another way), "
               "so not called")
_CALLED = frozenset({"placed", "failed", "unknown", "sending"})
_MARK = "person_keys"
#: A row's new key, and for a row merged into another one, that row's id.
Rekeyed = tuple[str, int | None]


def _rank(row: tuple[int, str, str]) -> tuple[int, int]:
    row_id, _, state = row
    return (0 if state in _CALLED else 1 if state in ("pending", "claimed") else 2), row_id


def rekey(rows: Iterable[tuple[int, str, str]]) -> dict[int, Rekeyed]:
    """For valid rows ``(id, number, state)``: each row's key under ``person_key``, and the
    row it merges into (None: it keeps the person's key)."""
    people: dict[str, list[tuple[int, str, str]]] = {}
    for row in rows:
        people.setdefault(person_key(row[1]), []).append(row)
    plan: dict[int, Rekeyed] = {}
    for key, group in people.items():
        keeper = min(group, key=_rank)[0]
        for row_id, _, _ in group:
            plan[row_id] = (key, None) if row_id == keeper else (f"{key}#{row_id}", keeper)
    return plan


def _changes(rows: list[tuple[int, str, str | None, str, int | None]]
             ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(new keys, ``(error, id)`` of pending rows merged away) for rows
    ``(id, number, key, state, line)``."""
    plan = rekey((r[0], r[1], r[3]) for r in rows)
    by_id = {r[0]: r for r in rows}
    keys: list[tuple[str, int]] = []
    merged: list[tuple[str, int]] = []
    for row_id, (key, into) in plan.items():
        _, _, old_key, state, _ = by_id[row_id]
        if key != old_key:
            keys.append((key, row_id))
        if into is not None and state in ("pending", "claimed"):
            _, number, _, _, line = by_id[into]
            merged.append((SAME_PERSON.format(line=line, number=number), row_id))
    return keys, merged


def rekey_sqlite(db: sqlite3.Connection) -> None:
    """Key a journal file's rows by person, once (an autocommit connection, at its opening)."""
    if db.execute("SELECT 1 FROM meta WHERE key = ?", (_MARK,)).fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute("SELECT id, number, key, state, line FROM numbers WHERE valid = 1 "
                          "ORDER BY id").fetchall()
        keys, merged = _changes(rows)
        # Through NULL first: a key may move to a row whose old key another row still holds.
        db.executemany("UPDATE numbers SET key = NULL WHERE id = ?", [(i,) for _, i in keys])
        db.executemany("UPDATE numbers SET key = ? WHERE id = ?", keys)
        db.executemany("UPDATE numbers SET state = 'skipped', not_before = NULL, error = ? "
                       "WHERE id = ?", merged)
        db.execute("INSERT INTO meta(key, value) VALUES (?, '1')", (_MARK,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def rekeyed_sqlite(db: sqlite3.Connection) -> bool:
    """Was this journal file keyed by person (for a read-only look)?"""
    return db.execute("SELECT 1 FROM meta WHERE key = ?", (_MARK,)).fetchone() is not None


_PG_TABLE = """
CREATE TABLE IF NOT EXISTS ryze_person_keys (
    campaign text PRIMARY KEY REFERENCES ryze_campaigns ON DELETE CASCADE
)
"""
_PG_SET_KEYS = """
UPDATE ryze_numbers AS n SET key = m.key
FROM unnest($2::text[], $3::bigint[]) AS m(key, id) WHERE n.campaign = $1 AND n.id = m.id
"""
_PG_MERGE = """
UPDATE ryze_numbers AS n SET state = 'skipped', owner = NULL, lease_until = NULL,
    not_before = NULL, error = m.error
FROM unnest($2::text[], $3::bigint[]) AS m(error, id) WHERE n.campaign = $1 AND n.id = m.id
"""


async def rekey_postgres(conn: Any, campaign: str) -> None:
    """Key a campaign's rows by person, once; inside the transaction that opens it (which holds
    the schema lock, so one worker does it and the others find it done)."""
    await conn.execute(_PG_TABLE)
    if await conn.fetchval("SELECT 1 FROM ryze_person_keys WHERE campaign = $1", campaign):
        return
    rows = [tuple(r) for r in await conn.fetch(
        "SELECT id, number, key, state, line FROM ryze_numbers WHERE campaign = $1 AND valid "
        "ORDER BY id FOR UPDATE", campaign)]
    keys, merged = _changes(rows)
    if keys:
        ids = [i for _, i in keys]
        await conn.execute(_PG_SET_KEYS, campaign, [None] * len(ids), ids)
        await conn.execute(_PG_SET_KEYS, campaign, [k for k, _ in keys], ids)
    if merged:
        await conn.execute(_PG_MERGE, campaign, [e for e, _ in merged], [i for _, i in merged])
    await conn.execute("INSERT INTO ryze_person_keys (campaign) VALUES ($1)", campaign)


async def rekeyed_postgres(conn: Any, campaign: str) -> bool:
    """Was this campaign keyed by person (for a read-only look)?"""
    if not await conn.fetchval("SELECT to_regclass('ryze_person_keys') IS NOT NULL"):
        return False
    found = await conn.fetchval("SELECT 1 FROM ryze_person_keys WHERE campaign = $1", campaign)
    return found is not None
