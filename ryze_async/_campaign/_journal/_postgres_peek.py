"""A PostgreSQL campaign read for a dry run (``_peek.py``): one ``READ ONLY`` repeatable-read
transaction; no schema created, no campaign row inserted, no lease recovered or claim taken.
A claimed row is ``pending`` (a claim is not a call), a ``sending`` one stays ``sending``."""

from __future__ import annotations

from typing import Any

import asyncpg

from ..._urls import scrub, shown_url
from ._peek import JournalSnapshot, snapshot
from ._person_keys import rekeyed_postgres
from ._schema import JournalError

__all__ = ["peek_postgres"]

_LABEL = ("CASE WHEN state = 'claimed' THEN 'pending' WHEN state != 'skipped' THEN state "
          "WHEN error LIKE 'excluded:%' THEN 'excluded' "
          "WHEN error LIKE 'expired:%' THEN 'expired' ELSE 'removed' END")


async def peek_postgres(url: str, campaign: str) -> JournalSnapshot | None:
    """Campaign ``campaign`` of the database ``url``; None if it (or the journal) is absent."""
    try:
        conn: Any = await asyncpg.connect(url, server_settings={
            "application_name": "ryze-async dry run", "default_transaction_read_only": "on"})
    except (asyncpg.PostgresError, OSError, ValueError) as exc:
        raise JournalError(f"{shown_url(url)} cannot be read for a dry run: "
                           f"{scrub(str(exc), url)}") from None
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await _read(conn, campaign)
    except asyncpg.PostgresError as exc:
        raise JournalError(f"{shown_url(url)} cannot be read for a dry run: "
                           f"{scrub(str(exc), url)}") from None
    finally:
        await conn.close()


async def _read(conn: Any, campaign: str) -> JournalSnapshot | None:
    if not await conn.fetchval("SELECT to_regclass('ryze_campaigns') IS NOT NULL"):
        return None
    head = await conn.fetchrow("SELECT * FROM ryze_campaigns WHERE campaign = $1", campaign)
    if head is None:
        return None
    invalid = await conn.fetchval(
        "SELECT count(*) FROM ryze_numbers WHERE campaign = $1 AND NOT valid", campaign)
    rows = await conn.fetch(
        f"SELECT id, key, number, {_LABEL} AS label, seen FROM ryze_numbers "  # noqa: S608
        "WHERE campaign = $1 AND valid ORDER BY id", campaign)
    return snapshot(((r["id"], r["key"], r["number"], r["label"], r["seen"]) for r in rows),
                    int(invalid), dict(head), rekeyed=await rekeyed_postgres(conn, campaign))
