"""``report --csv`` for the PostgreSQL journal: the SQLite columns (``sender`` included: the
instance that placed, or may have placed, the call), streamed through a server-side cursor.
:func:`write_out` is where every export of this store meets its target (stdout, or a file
written owner-only)."""

from __future__ import annotations

import csv
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from ..queries import REPORT_STATE, WINDOW_AT
from ..schema import open_owner_only
from ..sqlite.export import CSV_COLUMNS, window_text

__all__ = ["PG_CSV_COLUMNS", "ROWS", "export_csv", "write_out"]

PG_CSV_COLUMNS = CSV_COLUMNS  # the same columns as SQLite (sender, then the window's opening)
#: Every row of a campaign in input order, its state as the SQLite store shows it (a claim
#: not sent yet is ``pending``, as in counts); its window's opening in Unix seconds as there.
ROWS = f"""
SELECT line, number, {REPORT_STATE}, call_id, http_status, error, attempts, attempt_at,
       sender, extract(epoch FROM {WINDOW_AT})::float8
FROM ryze_numbers WHERE campaign = $1 ORDER BY id
"""  # noqa: S608 - the module's own constants


async def write_out(out: str | os.PathLike[str] | TextIO,
                    write: Callable[[TextIO], Awaitable[int]], *, newline: str | None = None,
                    ) -> int:
    """Run ``write`` on ``out``: an open stream (flushed after), or a path opened owner-only."""
    if not isinstance(out, str | os.PathLike):
        rows = await write(out)
        out.flush()
        return rows
    with open_owner_only(Path(out), newline=newline) as f:
        return await write(f)


async def export_csv(conn: Any, campaign: str, out: str | os.PathLike[str] | TextIO) -> int:
    """Write every row of ``campaign`` (input order); return how many were written."""
    return await write_out(out, lambda f: _write(conn, campaign, f), newline="")


async def _write(conn: Any, campaign: str, f: TextIO) -> int:
    rows = 0
    writer = csv.writer(f)
    writer.writerow(PG_CSV_COLUMNS)
    async with conn.transaction():  # a cursor lives in a transaction
        async for r in conn.cursor(ROWS, campaign, prefetch=1000):
            at = r[7]
            writer.writerow([r[0], r[1], r[2], r[3] or "", r[4] or "", r[5] or "", r[6],
                             at.isoformat(timespec="seconds") if at else "", r[8] or "",
                             window_text(r[9])])
            rows += 1
    return rows
