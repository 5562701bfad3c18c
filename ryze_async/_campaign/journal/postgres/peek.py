"""A PostgreSQL campaign read for a dry run (``_peek.py``): one ``READ ONLY`` repeatable-read
transaction; no schema created, no campaign row inserted, no lease recovered or claim taken.
A claimed row is ``pending`` (a claim is not a call), a ``sending`` one stays ``sending``.
``peek_postgres_rules``: the campaign's recorded rules only, one query on its row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from ...._urls import scrub, shown_url
from ..person_keys import rekeyed_postgres
from ..recorded_rules import CampaignRules
from ..rules_store import recorded
from ..schema import JournalError
from ..sqlite.peek import JournalSnapshot, snapshot

__all__ = ["peek_postgres", "peek_postgres_rules"]

T = TypeVar("T")

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
        conn: Any = await asyncpg.connect(url, server_settings={
            "application_name": "ryze-async read", "default_transaction_read_only": "on"})
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
        f"SELECT id, key, number, {_LABEL} AS label, seen FROM ryze_numbers "  # noqa: S608
        "WHERE campaign = $1 AND valid ORDER BY id", campaign)
    return snapshot(((r["id"], r["key"], r["number"], r["label"], r["seen"]) for r in rows),
                    int(invalid), dict(head), rekeyed=await rekeyed_postgres(conn, campaign))
