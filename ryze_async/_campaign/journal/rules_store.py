"""Where each store keeps the campaign's rules (``_recorded_rules.py``) and their audit trail.

SQLite: the rules in ``meta`` (key ``rules``), the trail in its own table ``rule_changes``.
PostgreSQL: the rules in ``ryze_campaigns.rules`` (a column added to older databases), the
trail in ``ryze_rule_changes``. Reading, comparing and writing happen in one transaction that
holds the campaign (SQLite's write lock; PostgreSQL's row lock on the campaign), so two
PostgreSQL workers starting at once with different rules cannot both record theirs: the second
compares with the first's and is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from .postgres import add_column
from .recorded_rules import CampaignRules, RuleChange, Settled, legacy_rules, settle
from .sqlite.ingest import _meta, _set

__all__ = ["PG_SCHEMA", "pg_settle", "pg_trail", "sqlite_settle", "sqlite_trail"]

_SQLITE_TRAIL = """
CREATE TABLE IF NOT EXISTS rule_changes (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, rule TEXT NOT NULL, old TEXT NOT NULL,
    new TEXT NOT NULL)
"""

# Databases made before #15 recorded no rules: the column is added (see ``add_column``).
PG_SCHEMA = add_column("ryze_campaigns", "rules", "text") + """
CREATE TABLE IF NOT EXISTS ryze_rule_changes (
    campaign text NOT NULL REFERENCES ryze_campaigns ON DELETE CASCADE,
    id       bigint GENERATED ALWAYS AS IDENTITY,
    at       timestamptz NOT NULL,
    rule     text NOT NULL,
    old      text NOT NULL,
    new      text NOT NULL,
    PRIMARY KEY (campaign, id)
);
"""


def recorded(rules: str | None, hold_rules: str | None) -> CampaignRules | None:
    """The recorded rules, or for a journal of an older release those its holds kept."""
    return CampaignRules.from_json(rules) or legacy_rules(hold_rules)


def sqlite_settle(db: sqlite3.Connection, given: CampaignRules, change: bool,
                  now: datetime, *, inherited: Collection[str] = ()) -> Settled:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_SQLITE_TRAIL)
        existing = db.execute("SELECT 1 FROM numbers LIMIT 1").fetchone() is not None
        settled = settle(recorded(_meta(db, "rules", ""), _meta(db, "hold_rules", "")), given,
                         change=change, now=now, existing=existing, inherited=inherited)
        _set(db, {"rules": settled.rules.to_json()})
        db.executemany("INSERT INTO rule_changes(at, rule, old, new) VALUES (?, ?, ?, ?)",
                       [(c.at.isoformat(), c.rule, c.old, c.new) for c in settled.changes])
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return settled


def sqlite_trail(db: sqlite3.Connection) -> list[RuleChange]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rule_changes'").fetchone() is None:
        return []
    return [RuleChange(datetime.fromisoformat(at), rule, old, new) for at, rule, old, new in
            db.execute("SELECT at, rule, old, new FROM rule_changes ORDER BY id")]


async def pg_settle(conn: Any, campaign: str, given: CampaignRules, change: bool,
                    now: datetime, *, inherited: Collection[str] = ()) -> Settled:
    async with conn.transaction():
        # NO KEY UPDATE: settles queue behind each other, but not behind another worker's
        # ingest, whose inserted numbers hold a KEY SHARE lock on this row (FOR UPDATE would
        # wait for it while holding the row's lock that ingest's own update then waits for:
        # a deadlock).
        head = await conn.fetchrow(
            "SELECT rules, hold_rules FROM ryze_campaigns WHERE campaign = $1 "
            "FOR NO KEY UPDATE", campaign)
        existing = await conn.fetchval(
            "SELECT 1 FROM ryze_numbers WHERE campaign = $1 LIMIT 1", campaign) is not None
        settled = settle(recorded(head["rules"], head["hold_rules"]), given, change=change,
                         now=now, existing=existing, inherited=inherited)
        await conn.execute("UPDATE ryze_campaigns SET rules = $2 WHERE campaign = $1",
                           campaign, settled.rules.to_json())
        await conn.executemany(
            "INSERT INTO ryze_rule_changes (campaign, at, rule, old, new) "
            "VALUES ($1, $2, $3, $4, $5)",
            [(campaign, c.at.astimezone(UTC), c.rule, c.old, c.new) for c in settled.changes])
    return settled


async def pg_trail(conn: Any, campaign: str) -> list[RuleChange]:
    if not await conn.fetchval("SELECT to_regclass('ryze_rule_changes') IS NOT NULL"):
        return []
    rows = await conn.fetch("SELECT at, rule, old, new FROM ryze_rule_changes "
                            "WHERE campaign = $1 ORDER BY id", campaign)
    return [RuleChange(r["at"], r["rule"], r["old"], r["new"]) for r in rows]
