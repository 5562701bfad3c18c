"""Counts of a PostgreSQL campaign."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..schema import JournalCounts

__all__ = ["PgJournalCounts", "build_counts"]


@dataclass(frozen=True, slots=True)
class PgJournalCounts(JournalCounts):
    """:class:`JournalCounts` plus the workers' view. ``pending`` counts every number not yet
    called, ``claimed`` ones included (a claim is not a call); ``in_flight`` is claimed plus
    sending; ``workers`` hold live leases now."""

    claimed: int = 0
    workers: int = 0

    @property
    def in_flight(self) -> int:
        return self.claimed + self.sending


def build_counts(rows: Iterable[Mapping[str, Any]], head: Mapping[str, Any]) -> PgJournalCounts:
    """From ``COUNTS`` rows (valid, state, n) and the campaign's counters."""
    by_state: dict[str, int] = {}
    invalid = 0
    for r in rows:
        if r["valid"]:
            by_state[r["state"]] = r["n"]
        else:
            invalid += r["n"]
    claimed = by_state.pop("claimed", 0)
    by_state["pending"] = by_state.get("pending", 0) + claimed
    base = JournalCounts.build(by_state, invalid, {
        "ingest_duplicates": str(head["ingest_duplicates"]), "elapsed": str(head["elapsed"])})
    fields = {f: getattr(base, f) for f in JournalCounts.__dataclass_fields__}
    return PgJournalCounts(**fields, claimed=claimed, workers=int(head["workers"]))
