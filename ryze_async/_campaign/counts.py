"""Live counts of a running campaign: a fold over the journal store's own events.

The store reports every committed transition (``_journal/_events.py``); nothing else moves these
counters, so no caller can forget one. They feed progress displays only; the final summary is
read from the store itself. Both are built by :func:`summary_from_counts`.
"""

from __future__ import annotations

import time

from .journal import Ingested, JournalCounts, JournalEvent, Moved, Rebased, State
from .outcomes import CampaignSummary, StopReason

__all__ = ["LiveCounts", "summary_from_counts"]

_DONE = ("placed", "failed", "unknown")


class LiveCounts:
    """Per-state counts (for progress bars), kept by :meth:`apply` from the store's events."""

    def __init__(self) -> None:
        self.total = self.duplicates = self.invalid = 0
        #: Of the skipped rows: those the operator's rules skipped, by rule.
        self.ruled: dict[str, int] = {"excluded": 0, "expired": 0}
        self.by_state: dict[str, int] = dict.fromkeys(("pending", "sending", *_DONE, "skipped"), 0)
        #: Outcomes (placed, failed or unknown) reached in this run, for rate and ETA.
        self.done_this_run = 0
        self.started = time.monotonic()

    def apply(self, event: JournalEvent) -> None:
        if isinstance(event, Moved):
            self.by_state[event.old] -= 1
            self._enter(event.new)
            if event.reason is not None:
                self.ruled[event.reason] += 1
        elif isinstance(event, Ingested):
            result = event.result
            # Entries already in the journal from an earlier pass add no row: not in ``total``.
            self.total += result.added + result.duplicates + len(result.invalid)
            self.by_state["pending"] += result.added + result.restored
            self.by_state["skipped"] -= result.restored
            self.duplicates += result.duplicates
            self.invalid += len(result.invalid)
        elif isinstance(event, Rebased):
            c = event.counts
            self.total, self.duplicates, self.invalid = c.total, c.duplicates, c.invalid
            self.by_state.update(pending=c.pending, sending=c.sending, placed=c.placed,
                                 failed=c.failed, unknown=c.unknown,
                                 skipped=c.removed + c.excluded + c.expired)
            self.ruled.update(excluded=c.excluded, expired=c.expired)

    def _enter(self, state: State) -> None:
        self.by_state[state] += 1
        if state in _DONE:
            self.done_this_run += 1

    def counts(self) -> JournalCounts:
        s = self.by_state
        return JournalCounts(
            total=self.total, pending=s["pending"], sending=s["sending"], placed=s["placed"],
            failed=s["failed"], unknown=s["unknown"], invalid=self.invalid,
            duplicates=self.duplicates, elapsed=0.0,
            removed=s["skipped"] - self.ruled["excluded"] - self.ruled["expired"],
            excluded=self.ruled["excluded"], expired=self.ruled["expired"],
        )

    def snapshot(self, stop_reason: StopReason | None = None, message: str = "") -> (
        CampaignSummary
    ):
        return summary_from_counts(self.counts(), time.monotonic() - self.started, stop_reason,
                                   message)


def summary_from_counts(
    counts: JournalCounts, elapsed: float, stop_reason: StopReason | None, message: str
) -> CampaignSummary:
    """The one place a :class:`CampaignSummary` is built (live or final)."""
    return CampaignSummary(
        total=counts.total, placed=counts.placed, failed=counts.failed, unknown=counts.unknown,
        pending=counts.pending,
        skipped=(counts.duplicates + counts.invalid + counts.removed + counts.excluded
                 + counts.expired),
        duplicates=counts.duplicates, invalid=counts.invalid, in_flight=counts.sending,
        elapsed=elapsed, stop_reason=stop_reason, message=message, removed=counts.removed,
        excluded=counts.excluded, expired=counts.expired, held=counts.held,
    )
