"""A dry run's model of a resumed run's journal (``_plan.py``): the rows of a journal read
read-only (``_journal/_peek.py``) taken through what the resumed run would do to them, in
memory, by the same rules as the stores (``_journal/_ingest.py``, ``_postgres_ingest.py``):

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

from collections.abc import Iterator, Sequence

from .journal.sqlite.peek import JournalSnapshot, Row
from .persons import person_key

__all__ = ["Book"]

_SKIPPED = ("removed", "excluded", "expired")


class Book:
    """The journal's rows as the resumed run would leave them before any call."""

    def __init__(self, journal: JournalSnapshot | None, retry: Sequence[str]) -> None:
        self.rows: dict[str, Row] = {}
        self.retried = 0
        self.invalid = self.duplicates = self.pass_no = 0
        self.sweep = False
        if journal is None:
            return
        self.invalid, self.duplicates = journal.invalid, journal.duplicates
        self.pass_no, self.sweep = journal.ingest_pass, journal.sweep_due
        for key, (number, stored, seen) in journal.rows.items():
            # Recovered at open: a row left sending may have been placed.
            label = "unknown" if stored == "sending" else stored
            if label in retry:
                label = "pending"
                self.retried += 1
            self.rows[key] = (number, label, seen)

    def restart(self) -> None:
        """The input changed under the journal: a new pass from its first entry."""
        self.pass_no += 1
        self.sweep = True
        self.invalid = self.duplicates = 0

    def see(self, number: str) -> None:
        """One valid entry read from the input."""
        key = person_key(number)
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = (number, "pending", self.pass_no)
        elif row[2] == self.pass_no:
            self.duplicates += 1
        elif row[1] in _SKIPPED:
            self.rows[key] = (row[0], "pending", self.pass_no)  # in the input again
        else:
            self.rows[key] = (row[0], row[1], self.pass_no)

    def finish(self) -> int:
        """The input is exhausted: pending rows this pass did not see are removed."""
        if not self.sweep:
            return 0
        removed = 0
        for key, (number, label, seen) in self.rows.items():
            if label == "pending" and seen != self.pass_no:
                self.rows[key] = (number, "removed", seen)
                removed += 1
        return removed

    def pending(self) -> Iterator[str]:
        return (number for number, label, _ in self.rows.values() if label == "pending")

    def kept(self) -> Iterator[str]:
        """The state of each row that is not pending (kept as it is: never called)."""
        return (label for _, label, _ in self.rows.values() if label != "pending")
