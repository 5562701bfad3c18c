"""The campaign's rules, as its journal records them (#15): the one home of what decides who is
called and when, its one serialisation, and the one comparison of a run's rules with them.

A field that is ``None`` was not given (a run's rules) or not recorded (a journal of an older
release); every other value, an empty one included, is a rule. :func:`settle` decides which
rules a run uses: the recorded one where the run gives none, the given one where they agree,
and where they differ a refusal naming the rule unless the run changes it on purpose
(``change_rules``), which the journal keeps as an audit trail (:class:`RuleChange`).

Opt-out lists are compared by path; their content is fingerprinted (sha256) when recorded but
read again at every run, so an opt-out added to the file still counts. The retry flags act
once (a person's decision to call numbers again): each use on a journal that holds numbers is
recorded and adds a line to the trail, but a resume without them does not repeat them.

A rule that the run was given only because it was read from the record (``inherited``: the
CLI builds its client with the recorded region, number check and senders when their flags are
absent) is compared like a given one, so a record changed meanwhile by another worker is
refused rather than run by stale values, and is said in the one line like a rule left out.
``senders_file`` is not a rule but where the CLI finds the pool's tokens again: the latest
one given is kept, never compared.

Where each store keeps the campaign's rules and their audit trail: SQLite: the rules in ``meta``
(key ``rules``), the trail in its own table ``rule_changes``. PostgreSQL: the rules in
``ryze_campaigns.rules`` (a column added to older databases), the trail in ``ryze_rule_changes``.
Reading, comparing and writing happen in one transaction that holds the campaign (SQLite's write
lock; PostgreSQL's row lock on the campaign), so two PostgreSQL workers starting at once with
different rules cannot both record theirs: the second compares with the first's and is refused."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .postgres import add_column
from .schema import JournalMismatchError, read_meta, write_meta

__all__ = [
    "PG_SCHEMA",
    "CampaignRules",
    "OptOutList",
    "RuleChange",
    "Settled",
    "legacy_rules",
    "pg_settle",
    "pg_trail",
    "settle",
    "sqlite_settle",
    "sqlite_trail",
]


#: What each rule is called in messages, and the flag that gives it on the command line.
_LABELS: dict[str, tuple[str, str]] = {
    "windows": ("call windows", "--call-window"),
    "timezone": ("time zone", "--timezone"),
    "exclude": ("opt-out lists", "--exclude"),
    "not_before": ("not before", "--not-before"),
    "not_after": ("not after", "--not-after"),
    "default_region": ("default region", "--default-region or RYZE_DEFAULT_REGION"),
    "number_check": ("number check", "--number-check"),
    "column": ("number column", "--column"),
    "sheet": ("sheet", "--sheet"),
    "senders": ("senders", "--senders"),
    "retry": ("retry", "--retry-failed/--retry-unknown"),
}
_NONE = "(none)"
#: Recorded with the rules, but not rules: never compared, never in the trail.
_LOCATIONS = frozenset({"senders_file"})


@dataclass(frozen=True, slots=True)
class OptOutList:
    """An opt-out file: its absolute path and the sha256 of its content when recorded."""

    path: str
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> OptOutList:
        """``path`` resolved (a resume from another directory names the same file)."""
        p = Path(path).resolve()
        try:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError:
            digest = ""  # a missing list is refused by the rules' own check, before any call
        return cls(str(p), digest)


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """Every rule that decides who is called and when (``None``: not given / not recorded)."""

    windows: tuple[str, ...] | None = None
    timezone: str | None = None
    exclude: tuple[OptOutList, ...] | None = None
    #: ISO 8601 instants ("" when there is none).
    not_before: str | None = None
    not_after: str | None = None
    default_region: str | None = None
    number_check: str | None = None
    #: The input's number column and sheet as given ("": found by the input's header).
    column: str | None = None
    sheet: str | None = None
    #: A pool's sender names, sorted (empty: the one instance of the campaign's identity).
    senders: tuple[str, ...] | None = None
    retry: tuple[str, ...] | None = None
    #: The ``--senders`` file's absolute path ("": none; never its content, which holds
    #: tokens), so a CLI resume without the flag reads the pool from it again.
    senders_file: str | None = None

    def to_json(self) -> str:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "exclude":
                value = [[o.path, o.sha256] for o in value]
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> CampaignRules | None:
        if not text:
            return None
        data: Mapping[str, Any] = json.loads(text)
        known: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name == "exclude":
                value = tuple(OptOutList(str(p), str(h)) for p, h in value)
            elif isinstance(value, list):
                value = tuple(str(v) for v in value)
            known[f.name] = value
        return cls(**known)

    def given(self) -> list[str]:
        """The rules with a value (``senders_file`` aside: it is not a rule)."""
        return [f.name for f in fields(self)
                if f.name not in _LOCATIONS and getattr(self, f.name) is not None]

    def describe(self, names: Iterable[str] | None = None) -> str:
        """``call windows Mon-Fri 09:00-20:00; opt-out lists /x.csv`` (rules with a value)."""
        parts = []
        for name in names if names is not None else self.given():
            value = getattr(self, name)
            if value not in (None, "", ()):
                parts.append(f"{_LABELS[name][0]} {_text(name, value)}")
        return "; ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One line of the audit trail: a rule changed on purpose (or a retry decided)."""

    at: datetime
    rule: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Settled:
    """The rules a run uses, what to record, and what to say about it."""

    rules: CampaignRules
    changes: tuple[RuleChange, ...]
    #: One line for the operator (empty: nothing worth saying).
    note: str


def _text(name: str, value: Any) -> str:
    if value is None or value in ("", ()):
        return _NONE
    if name == "exclude":
        return ", ".join(o.path for o in value)
    if isinstance(value, tuple):
        return "; ".join(value)
    return str(value)


def _same(name: str, a: Any, b: Any) -> bool:
    if name == "exclude":
        return [o.path for o in a] == [o.path for o in b]
    if name in ("not_before", "not_after") and a and b:
        return bool(datetime.fromisoformat(a) == datetime.fromisoformat(b))
    return bool(a == b)


#: How many rules a journal of this release records.
_RULES = len([f for f in fields(CampaignRules) if f.name not in _LOCATIONS])


def _empty(name: str) -> Any:
    return () if name in ("windows", "exclude", "senders", "retry") else ""


def settle(recorded: CampaignRules | None, given: CampaignRules, *, change: bool,
           now: datetime, existing: bool, inherited: Collection[str] = ()) -> Settled:
    """The rules a run on a journal uses (see the module docstring). ``existing``: the journal
    already holds numbers (a journal with rows but no rules was written by an older release).
    ``inherited``: the rules given only because they were read from the record. Raises
    ``JournalMismatchError`` naming each differing rule, unless ``change``."""
    base = recorded or CampaignRules()
    used: dict[str, Any] = {}
    kept: list[str] = []
    changes: list[RuleChange] = []
    refused: list[str] = []
    for f in fields(CampaignRules):
        name, old, new = f.name, getattr(base, f.name), getattr(given, f.name)
        if name in _LOCATIONS:
            used[name] = _first(new, old, "")
        elif new is None or (name in inherited and old is not None and _same(name, old, new)):
            used[name] = _first(old, new, _empty(name))
            kept += [name] if old is not None else []
        elif (why := _differs(name, old, new, change=change, existing=existing)) is None:
            used[name] = new
        elif why:
            refused.append(why)
        else:
            used[name] = new
            changes.append(RuleChange(now, _LABELS[name][0], _text(name, old), _text(name, new)))
    if refused:
        raise JournalMismatchError(
            "this run's rules differ from the campaign's recorded ones: " + "; ".join(refused)
            + ". Leave the flag out to run by the recorded rules, or add --change-rules "
            "(change_rules=True) to change them on purpose (the journal keeps the change).")
    rules = CampaignRules(**used)
    return Settled(rules, tuple(changes), _note(recorded, existing, rules, kept, changes))


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _differs(name: str, old: Any, new: Any, *, change: bool, existing: bool) -> str | None:
    """None: ``new`` is used as it is; "": it replaces ``old`` and the trail keeps it; else
    why it is refused."""
    # A retry is a decision of this run: each one on a journal with numbers is kept.
    logged = name == "retry" and existing
    if old is None or (_same(name, old, new) and not logged):
        return None
    if change or name == "retry":
        return ""
    return _refusal(name, old, new)


def _refusal(name: str, old: Any, new: Any) -> str:
    label, flag = _LABELS[name]
    return f"{label} recorded {_text(name, old)!r}, given {_text(name, new)!r} ({flag})"


def _note(recorded: CampaignRules | None, existing: bool, rules: CampaignRules,
          kept: list[str], changes: list[RuleChange]) -> str:
    if recorded is None or (existing and len(recorded.given()) < _RULES):
        if not existing:
            return ""
        return ("this journal was written before its rules were recorded: recording this "
                f"run's rules ({rules.describe()})")
    said = []
    if any(getattr(rules, name) not in ("", ()) for name in kept):
        said.append(f"resuming with the recorded rules: {rules.describe(kept)}")
    said += [f"rule changed on purpose: {c.rule} {c.old!r} -> {c.new!r}" for c in changes]
    return "; ".join(said)


def legacy_rules(hold_rules: str | None) -> CampaignRules | None:
    """The rules a journal of an older release kept for its held rows (windows, zone, dates),
    so its first run after the upgrade keeps them too; None if it kept none."""
    if not hold_rules:
        return None
    try:
        old = json.loads(hold_rules)
        return CampaignRules(windows=tuple(str(w) for w in old["windows"]),
                             timezone=str(old["timezone"]), not_before=str(old["not_before"]),
                             not_after=str(old["not_after"]))
    except (ValueError, KeyError, TypeError):
        return None


def with_fingerprints(rules: CampaignRules) -> CampaignRules:
    """``rules`` with its opt-out lists fingerprinted now (as they are recorded)."""
    if rules.exclude is None:
        return rules
    return replace(rules, exclude=tuple(OptOutList.of(o.path) for o in rules.exclude))


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
        stored = recorded(read_meta(db, "rules", ""), read_meta(db, "hold_rules", ""))
        settled = settle(stored, given, change=change, now=now, existing=existing,
                         inherited=inherited)
        write_meta(db, {"rules": settled.rules.to_json()})
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
