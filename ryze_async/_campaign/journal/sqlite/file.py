"""The SQLite journal's file and thread: opening (the ``flock``, the connection, recovery of
rows left ``sending``, the identity check), closing, and running work on the journal's one
thread. ``Journal`` (``_sqlite.py``) is the store built on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Self, TypeVar

from ..schema import CampaignIdentity, JournalError
from .open import connect, prepare_file, recover, store_identity

__all__ = ["SqliteFile"]

_T = TypeVar("_T")


class SqliteFile:
    """One journal file: its lock, its connection, the one thread that uses it."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor, lock_fd: int | None) -> None:
        self.path = path
        self._executor = executor
        self._lock_fd = lock_fd
        self._conn: sqlite3.Connection | None = None
        #: Rows found ``sending`` at open and turned ``unknown``.
        self.recovered = 0
        self.read_only = lock_fd is None

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

    async def flush(self) -> None:
        """Wait until every queued write is committed (the store queues them)."""
