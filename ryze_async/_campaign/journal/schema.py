"""The journal's schema, identity check, counters, errors and file-safety helpers."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ... import JournalError, JournalLockedError, JournalMismatchError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process guard
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SCHEMA",
    "CampaignIdentity",
    "JournalCounts",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "check_identity",
    "lock_file",
    "migrate",
    "open_owner_only",
    "owner_only",
]

# ``key`` is the dedupe key (``person_key``, ``_person_keys.py``; NULL for invalid rows, and
# NULLs never collide in a UNIQUE index);
# ``id`` order is input order, which is dispatch order; ``seen`` is the last input pass that
# read the row (``_ingest.py``); ``skipped`` is a pending row removed from the input;
# ``not_before`` (Unix seconds, UTC; +inf: no window ever opens) holds a pending row until its
# calling window opens (``_held.py``). The feeder reads pending rows that are not held through
# ``numbers_ready`` and held ones as they come due through ``numbers_held``, so neither read
# walks over the other's rows.
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
