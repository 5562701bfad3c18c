"""A dry run: what a campaign would do with its list now, without writing a journal or
calling anyone.

It reads the input as the campaign does (same parsing, normalisation and dedupe key), applies
the operator's rules (``rules/__init__.py``) at the current time, and estimates how long the calls
take at the quota. With no journal yet it plans a new campaign. With one (read read-only:
``journal/sqlite/report.py``) it plans the resumed run: the input read from where the journal
stopped (or again from its start if it changed), numbers already placed, failed or unknown
kept (unless put back by ``retry_failed`` / ``retry_unknown``), numbers no longer in the input
removed.

Its model of a resumed run's journal (:class:`Book`): the rows of a journal read read-only
(``journal/sqlite/report.py``) taken through what the resumed run would do to them, in memory, by
the rules both stores apply, from their one home (``journal/events.py``: ``resumed``,
``Batch.decide``, ``swept``):

1. at open, a row left ``sending`` becomes ``unknown`` (never redialed automatically); then
   ``retry_failed`` / ``retry_unknown`` put those rows back to ``pending``;
2. if the input changed since the journal read it (the source cannot seek to its resume
   point), a new pass reads it from its first entry: invalid rows and the duplicate count are
   rebuilt, and a row ``skipped`` earlier that is in the input again is ``pending`` again;
3. each number read is a duplicate if this pass saw it already, else new (``pending``) or
   known (its state kept);
4. when the pass ends, a ``pending`` row it did not see is ``skipped`` (removed from input).

Every row left ``pending`` is then judged by the rules; the rest keep their state.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .._public import public
from .inputs import Position
from .inputs.source import NumberSource
from .journal.events import Batch, Known, resumed, swept
from .journal.schema import JournalCounts
from .journal.sqlite.report import JournalSnapshot, SnapshotRow
from .rules import EXCLUDED, Call, Hold, Rules, Skip, Verdict
from .rules.gate import standing_hold

__all__ = ["Book", "CampaignPlan", "plan"]


_SKIPPED = ("removed", "excluded", "expired")


class Book:
    """The journal's rows as the resumed run would leave them before any call: the stores' own
    rules (``journal/events.py``: ``resumed``, ``Batch.decide``, ``swept``) applied to a
    snapshot in memory."""

    def __init__(self, journal: JournalSnapshot | None, retry: Sequence[str]) -> None:
        self.rows: dict[str, SnapshotRow] = {}
        self.retried = 0
        self.invalid = self.duplicates = self.pass_no = 0
        self.sweep = False
        #: Pending rows held for a window (key -> when), and the key the holds were made under.
        self.holds: dict[str, float] = {}
        self.hold_key: str | None = None
        if journal is None:
            return
        self.holds, self.hold_key = dict(journal.holds), journal.hold_key
        self.invalid, self.duplicates = journal.invalid, journal.duplicates
        self.pass_no, self.sweep = journal.ingest_pass, journal.sweep_due
        for key, (number, stored, seen) in journal.rows.items():
            label = resumed(stored, retry)
            self.retried += label == "pending" and stored != "pending"
            self.rows[key] = (number, label, seen)

    def restart(self) -> None:
        """The input changed under the journal: a new pass from its first entry."""
        self.pass_no += 1
        self.sweep = True
        self.invalid = self.duplicates = 0

    def ingest(self, batch: Batch) -> None:
        """One batch read from the input (its invalid entries are counted by the caller)."""
        known = {key: Known("skipped" if row[1] in _SKIPPED else row[1], row[2])
                 for key in batch.person_keys() if (row := self.rows.get(key)) is not None}
        for entry in batch.decide(known, self.pass_no):
            if entry.decision == "duplicate":
                self.duplicates += 1
            elif entry.decision == "added":
                self.rows[entry.key] = (entry.number, "pending", self.pass_no)
            else:
                number, label, _ = self.rows[entry.key]
                back = "pending" if entry.decision == "restored" else label
                if entry.decision == "restored":
                    self.holds.pop(entry.key, None)  # a skipped row put back holds nothing
                self.rows[entry.key] = (number, back, self.pass_no)

    def finish(self) -> int:
        """The input is exhausted: pending rows this pass did not see are removed."""
        if not self.sweep:
            return 0
        removed = 0
        for key, (number, label, seen) in self.rows.items():
            if swept(label, seen, self.pass_no):
                self.rows[key] = (number, "removed", seen)
                removed += 1
        return removed

    def pending(self) -> Iterator[tuple[str, str]]:
        """(key, number) of each row left pending."""
        return ((key, number) for key, (number, label, _) in self.rows.items()
                if label == "pending")

    def kept(self) -> Iterator[str]:
        """The state of each row that is not pending (kept as it is: never called)."""
        return (label for _, label, _ in self.rows.values() if label != "pending")


#: How many invalid lines a plan keeps, for the user to fix the first ones.
_FIRST_INVALID = 10


@public
@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """What a campaign would do with its list now (``Campaign.dry_run()``; ``--dry-run``).

    ``total == now + later + never + excluded + expired + invalid + duplicates + placed +
    failed + unknown + removed``: ``now`` can be called at once, ``later`` wait for their
    calling window (``opens``: when, and how many), ``never`` have no window that opens in
    their zone(s) (left pending), ``excluded`` are on an opt-out list, ``expired`` cannot be
    called before ``not_after``. ``seconds`` is how long the calls of ``now`` and ``later``
    take at the quota (their windows' waits not included).

    Resuming a journal (``journal``: its counts as stored; None for a new campaign):
    ``placed``, ``failed`` and ``unknown`` numbers keep that state and are not called again
    (``retried``: how many of them ``retry_failed`` / ``retry_unknown`` put back, counted
    with ``now``/``later``); ``removed`` are (or become) ``skipped``: pending numbers the input
    no longer holds. ``restarted``: the input changed since the journal read it, so it is read
    again from its start. ``total`` is then the journal's total after the run.
    """

    total: int
    now: int
    later: int
    never: int
    excluded: int
    expired: int
    invalid: int
    duplicates: int
    seconds: float
    opens: list[tuple[datetime, int]] = field(default_factory=list)
    first_invalid: list[tuple[int, str, str]] = field(default_factory=list)
    placed: int = 0
    failed: int = 0
    unknown: int = 0
    removed: int = 0
    retried: int = 0
    restarted: bool = False
    journal: JournalCounts | None = None


async def plan(
    source: NumberSource, rules: Rules, normalize: Callable[[str], str], *,
    calls_per_second: float, journal: JournalSnapshot | None = None,
    retry: Sequence[str] = (),
) -> CampaignPlan:
    """Plan ``source`` under ``rules`` (resuming ``journal`` if given): call nobody, write
    nothing."""
    book = Book(journal, retry)
    invalid: list[tuple[int, str, str]] = []
    read_invalid = 0
    await rules.check_exclusions()
    batches = await source.open(Position(*journal.position) if journal else Position())
    if journal is not None and source.restarted:
        book.restart()
    async for batch in batches:
        read = Batch.read(batch.entries, normalize)
        read_invalid += len(read.invalid)
        invalid.extend(read.invalid[:max(0, _FIRST_INVALID - len(invalid))])
        book.ingest(read)
    book.finish()
    tally: collections.Counter[str] = collections.Counter(book.kept())
    opens = await _judge(book, rules, tally)
    tally["invalid"] = book.invalid + read_invalid
    tally["duplicates"] = book.duplicates
    calls = tally["now"] + tally["later"]
    return CampaignPlan(
        total=sum(tally.values()), now=tally["now"], later=tally["later"],
        never=tally["never"], excluded=tally["excluded"], expired=tally["expired"],
        invalid=tally["invalid"], duplicates=tally["duplicates"],
        seconds=calls / calls_per_second if calls_per_second > 0 else 0.0,
        opens=sorted(opens.items()), first_invalid=invalid,
        placed=tally["placed"], failed=tally["failed"], unknown=tally["unknown"],
        removed=tally["removed"], retried=book.retried,
        restarted=journal is not None and source.restarted,
        journal=None if journal is None else journal.counts(),
    )


async def _judge(book: Book, rules: Rules, tally: collections.Counter[str],
                 ) -> collections.Counter[datetime]:
    """Every number left pending, judged by the rules now (as its claim would be), except one
    whose hold stands (``standing_hold``): it waits, as the run leaves it."""
    opens: collections.Counter[datetime] = collections.Counter()
    for key, number in book.pending():
        verdict: Verdict | None = None
        if key in book.holds:
            verdict = standing_hold(rules, book.hold_key, book.holds[key])
        if verdict is None:
            verdict = await rules.verdict(number)
        if isinstance(verdict, Call):
            tally["now"] += 1
        elif isinstance(verdict, Skip):
            tally["excluded" if verdict.reason == EXCLUDED else "expired"] += 1
        elif isinstance(verdict, Hold) and verdict.until is not None:
            tally["later"] += 1
            opens[verdict.until] += 1
        else:
            tally["never"] += 1
    return opens
