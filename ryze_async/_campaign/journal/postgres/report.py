"""``report --html`` and ``report --format jsonl`` for the PostgreSQL journal: the SQLite store's
:class:`ReportData` and JSON lines (``sqlite/report.py``) from the same queries, so one
campaign reads the same from either store (times aside). A number a worker claimed and has not
sent yet is ``pending``, as in the counts and the CSV.

``report --csv`` for the PostgreSQL journal: the SQLite columns (``sender`` included: the
instance that placed, or may have placed, the call), streamed through a server-side cursor.
:func:`write_out` is where every export of this store meets its target (stdout, or a file
written owner-only).

A PostgreSQL campaign read for a dry run (as ``sqlite/report.py``): one ``READ ONLY``
repeatable-read transaction; no schema created, no campaign row inserted, no lease recovered or
claim taken. A claimed row is ``pending`` (a claim is not a call), a ``sending`` one stays
``sending``. ``peek_postgres_rules``: the campaign's recorded rules only, one query on its row."""

# Statements are this module's own constants, never built from input.
# ruff: noqa: S608

from __future__ import annotations

import csv
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import asyncpg

from ...._urls import scrub, shown_url
from ..recorded_rules import CampaignRules, recorded
from ..schema import REPORT_STATE, WINDOW_AT, JournalError, open_owner_only, rekeyed_postgres
from ..sqlite.report import (
    CSV_COLUMNS,
    JournalSnapshot,
    MinuteCount,
    ProblemRow,
    ReportData,
    jsonl_line,
    parse_quota,
    snapshot,
    window_text,
)
from . import connect

__all__ = [
    "PG_CSV_COLUMNS", "ROWS", "export_csv", "export_jsonl", "peek_postgres", "peek_postgres_rules",
    "read_report", "write_out",
]


PG_CSV_COLUMNS = CSV_COLUMNS  # the same columns as SQLite (sender, then the window's opening)
#: Every row of a campaign in input order, its state as the SQLite store shows it (a claim
#: not sent yet is ``pending``, as in counts); its window's opening in Unix seconds as there.
ROWS = f"""
SELECT line, number, {REPORT_STATE}, call_id, http_status, error, attempts, attempt_at,
       sender, extract(epoch FROM {WINDOW_AT})::float8
FROM ryze_numbers WHERE campaign = $1 ORDER BY id
"""


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
    return await write_out(out, lambda f: _write_csv(conn, campaign, f), newline="")


async def _write_csv(conn: Any, campaign: str, f: TextIO) -> int:
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
    return await write_out(out, lambda f: _write_jsonl(conn, campaign, f))


async def _write_jsonl(conn: Any, campaign: str, f: TextIO) -> int:
    rows = 0
    async with conn.transaction():  # a cursor lives in a transaction
        async for r in conn.cursor(ROWS, campaign, prefetch=1000):
            f.write(jsonl_line(tuple(r[:7]), r[7], r[8], with_sender=True, opens=r[9]))
            rows += 1
    return rows


T = TypeVar("T")

#: When a held row's window opens, as Unix time; read through JSON, as the rules are, so a
#: database of an older release without the column reads as nothing held.
_HELD = "extract(epoch FROM (to_jsonb(n) ->> 'not_before')::timestamptz)::float8"
_LABEL = ("CASE WHEN state = 'claimed' THEN 'pending' WHEN state != 'skipped' THEN state "
          "WHEN error LIKE 'excluded:%' THEN 'excluded' "
          "WHEN error LIKE 'expired:%' THEN 'expired' ELSE 'removed' END")


async def peek_postgres(url: str, campaign: str) -> JournalSnapshot | None:
    """Campaign ``campaign`` of the database ``url``; None if it (or the journal) is absent."""
    return await _read_only(url, lambda conn: _read(conn, campaign))


async def peek_postgres_rules(url: str, campaign: str) -> CampaignRules | None:
    """The rules campaign ``campaign`` records; None if none (or no such campaign)."""
    return await _read_only(url, lambda conn: _read_rules(conn, campaign))


async def _read_only(url: str, read: Callable[[Any], Awaitable[T]]) -> T:
    try:
        conn: Any = await connect(url, "ryze-async read")  # a READ ONLY transaction below
    except (asyncpg.PostgresError, OSError, ValueError) as exc:
        raise JournalError(f"{shown_url(url)} cannot be read: {scrub(str(exc), url)}") from None
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await read(conn)
    except asyncpg.PostgresError as exc:
        raise JournalError(f"{shown_url(url)} cannot be read: {scrub(str(exc), url)}") from None
    finally:
        await conn.close()


async def _read_rules(conn: Any, campaign: str) -> CampaignRules | None:
    # The row as JSON: a database of an older release may lack the rules column (a worker
    # of this release adds it when it opens the journal; a read-only read must not).
    try:
        row = await conn.fetchrow(
            "SELECT to_jsonb(c) ->> 'rules' AS rules, to_jsonb(c) ->> 'hold_rules' AS "
            "hold_rules FROM ryze_campaigns c WHERE campaign = $1", campaign)
    except asyncpg.UndefinedTableError:
        return None  # no journal in this database yet
    return None if row is None else recorded(row["rules"], row["hold_rules"])


async def _has_journal(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('ryze_campaigns') IS NOT NULL"))


async def _read(conn: Any, campaign: str) -> JournalSnapshot | None:
    if not await _has_journal(conn):
        return None
    head = await conn.fetchrow("SELECT * FROM ryze_campaigns WHERE campaign = $1", campaign)
    if head is None:
        return None
    invalid = await conn.fetchval(
        "SELECT count(*) FROM ryze_numbers WHERE campaign = $1 AND NOT valid", campaign)
    rows = await conn.fetch(
        f"SELECT id, key, number, {_LABEL} AS label, seen, {_HELD} AS not_before "
        "FROM ryze_numbers n WHERE campaign = $1 AND valid ORDER BY id", campaign)
    return snapshot(((r["id"], r["key"], r["number"], r["label"], r["seen"], r["not_before"])
                     for r in rows),
                    int(invalid), dict(head), rekeyed=await rekeyed_postgres(conn, campaign))
