"""Opening a SQLite journal: connect (owner-only files, WAL), recover, check the identity."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import time
from pathlib import Path

from ..person_keys import rekey_sqlite
from ..schema import (
    SCHEMA,
    CampaignIdentity,
    JournalError,
    check_identity,
    lock_file,
    migrate,
    owner_only,
)

__all__ = ["connect", "prepare_file", "recover", "store_identity"]

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
