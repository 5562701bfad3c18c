"""``report --html`` and ``report --format jsonl`` for the PostgreSQL journal: the SQLite
store's :class:`~._report.ReportData` and JSON lines (``_report.py``) from the same queries,
so one campaign reads the same from either store (times aside). A number a worker claimed and
has not sent yet is ``pending``, as in the counts and the CSV."""

# Statements are this module's own constants, never built from input.
# ruff: noqa: S608

from __future__ import annotations

import os
from typing import Any, TextIO

from ..queries import REPORT_STATE
from ..sqlite.report import MinuteCount, ProblemRow, ReportData, jsonl_line, parse_quota
from .export import ROWS, write_out

__all__ = ["export_jsonl", "read_report"]

_STATE = REPORT_STATE
# The minute of the last attempt, as SQLite's ``CAST(attempt_at / 60 AS INTEGER)`` (epochs are
# positive: truncating is flooring).
MINUTES = f"""
SELECT floor(extract(epoch FROM attempt_at) / 60)::bigint AS m, sender, {_STATE} AS st,
       count(*) AS n
FROM ryze_numbers WHERE campaign = $1 AND attempt_at IS NOT NULL AND attempts > 0
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
PROBLEMS = f"""
SELECT line, number, {_STATE} AS state, error, http_status, attempts, attempt_at, sender
FROM ryze_numbers WHERE campaign = $1 AND state IN ('failed', 'unknown') ORDER BY id
"""


async def read_report(conn: Any, campaign: str) -> ReportData:
    """Numbers per minute of their last attempt, and the failed/unknown rows (input order).
    The store always records senders (``has_senders``), as a SQLite journal of schema 3 does."""
    minutes = [MinuteCount(int(r["m"]), r["sender"] or "", r["st"], int(r["n"]))
               for r in await conn.fetch(MINUTES, campaign)]
    problems = [ProblemRow(r["line"], r["number"], r["state"], r["error"] or "",
                           r["http_status"], r["attempts"],
                           r["attempt_at"].timestamp() if r["attempt_at"] else None,
                           r["sender"] or "")
                for r in await conn.fetch(PROBLEMS, campaign)]
    # Through the row's JSON: a read-only report on a database made before #15 has no column.
    quota = await conn.fetchval(
        "SELECT to_jsonb(c) ->> 'quota' FROM ryze_campaigns c WHERE campaign = $1", campaign)
    return ReportData(minutes, problems, has_senders=True, quota=parse_quota(quota))


async def export_jsonl(conn: Any, campaign: str, out: str | os.PathLike[str] | TextIO) -> int:
    """One JSON object per number of ``campaign`` (input order); returns how many."""
    return await write_out(out, lambda f: _write(conn, campaign, f))


async def _write(conn: Any, campaign: str, f: TextIO) -> int:
    rows = 0
    async with conn.transaction():  # a cursor lives in a transaction
        async for r in conn.cursor(ROWS, campaign, prefetch=1000):
            f.write(jsonl_line(tuple(r[:7]), r[7], r[8], with_sender=True, opens=r[9]))
            rows += 1
    return rows
