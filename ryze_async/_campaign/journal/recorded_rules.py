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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .schema import JournalMismatchError

__all__ = ["CampaignRules", "OptOutList", "RuleChange", "Settled", "legacy_rules", "settle"]

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
