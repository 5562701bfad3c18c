"""Journals written before person keys (#15): their rows keyed again by ``person_key``.

Until then a row's key was its digits (a personal JID's without its domain), so a Brazilian
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
same plan to its rows in memory (``_peek.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from ..persons import person_key

__all__ = [
    "SAME_PERSON", "Rekeyed", "rekey", "rekey_postgres", "rekey_sqlite", "rekeyed_postgres",
    "rekeyed_sqlite",
]

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
