"""``report --csv`` for the PostgreSQL journal: the SQLite columns (``sender`` included: the
instance that placed, or may have placed, the call), streamed through a server-side cursor."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, TextIO

from ._export import CSV_COLUMNS
from ._schema import owner_only

__all__ = ["PG_CSV_COLUMNS", "export_csv"]

PG_CSV_COLUMNS = CSV_COLUMNS  # the same columns, sender last, as SQLite
_QUERY = """
SELECT line, number, CASE WHEN state = 'claimed' THEN 'pending' ELSE state END, call_id,
       http_status, error, attempts, attempt_at, sender
FROM ryze_numbers WHERE campaign = $1 ORDER BY id
"""


async def export_csv(conn: Any, campaign: str, out: str | os.PathLike[str] | TextIO) -> int:
    """Write every row of ``campaign`` (input order); return how many were written."""
    if not isinstance(out, str | os.PathLike):
        rows = await _write(conn, campaign, out)
        out.flush()
        return rows
    with owner_only():
        fd = os.open(Path(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        return await _write(conn, campaign, f)


async def _write(conn: Any, campaign: str, f: TextIO) -> int:
    rows = 0
    writer = csv.writer(f)
    writer.writerow(PG_CSV_COLUMNS)
    async with conn.transaction():  # a cursor lives in a transaction
        async for r in conn.cursor(_QUERY, campaign, prefetch=1000):
            at = r[7]
            writer.writerow([r[0], r[1], r[2], r[3] or "", r[4] or "", r[5] or "", r[6],
                             at.isoformat(timespec="seconds") if at else "", r[8] or ""])
            rows += 1
    return rows
