"""Live counters of a running campaign, mirroring the journal's rows without querying it."""

from __future__ import annotations

import time

from ._campaign_models import CampaignSummary, StopReason
from ._journal import IngestResult, JournalCounts

__all__ = ["LiveCounts"]


class LiveCounts:
    """Per-state counts kept in step with every journal write (for progress bars).

    Seeded from the journal when a run starts; the final summary is read back from the journal
    itself, so these never decide anything.
    """

    def __init__(self) -> None:
        self.total = self.placed = self.failed = self.unknown = 0
        self.pending = self.in_flight = self.duplicates = self.invalid = self.removed = 0
        #: Outcomes (placed, failed or unknown) reached in this run, for rate and ETA.
        self.done_this_run = 0
        self.started = time.monotonic()

    def reset(self, counts: JournalCounts) -> None:
        self.total, self.placed, self.failed = counts.total, counts.placed, counts.failed
        self.unknown, self.pending = counts.unknown, counts.pending
        self.in_flight = counts.sending
        self.duplicates, self.invalid = counts.duplicates, counts.invalid
        self.removed = counts.removed
        self.started = time.monotonic()

    def ingested(self, entries: int, result: IngestResult) -> None:
        # Entries already in the journal from an earlier pass add no row: not in ``total``.
        self.total += result.added + result.duplicates + len(result.invalid)
        self.pending += result.added + result.restored
        self.removed -= result.restored
        self.duplicates += result.duplicates
        self.invalid += len(result.invalid)

    def sending(self) -> None:
        self.pending -= 1
        self.in_flight += 1

    def finished(self, state: str) -> None:
        """An in-flight row reached ``state`` (``pending`` when provably not placed)."""
        self.in_flight -= 1
        self._add(state)

    def failed_unsent(self) -> None:
        """A pending row failed without being sent (the client refused it up front)."""
        self.pending -= 1
        self._add("failed")

    def _add(self, state: str) -> None:
        if state == "pending":
            self.pending += 1
            return
        self.done_this_run += 1
        if state == "placed":
            self.placed += 1
        elif state == "failed":
            self.failed += 1
        else:
            self.unknown += 1

    @property
    def callable(self) -> int:
        """Distinct valid numbers: the progress bar's total."""
        return self.placed + self.failed + self.unknown + self.pending + self.in_flight

    def snapshot(self, stop_reason: StopReason | None = None, message: str = "") -> (
        CampaignSummary
    ):
        return CampaignSummary(
            total=self.total, placed=self.placed, failed=self.failed, unknown=self.unknown,
            pending=self.pending, skipped=self.duplicates + self.invalid + self.removed,
            duplicates=self.duplicates, invalid=self.invalid, in_flight=self.in_flight,
            elapsed=time.monotonic() - self.started, stop_reason=stop_reason, message=message,
            removed=self.removed,
        )


def summary_from_counts(
    counts: JournalCounts, elapsed: float, stop_reason: StopReason | None, message: str
) -> CampaignSummary:
    """The authoritative summary, from the journal's own counts."""
    return CampaignSummary(
        total=counts.total, placed=counts.placed, failed=counts.failed, unknown=counts.unknown,
        pending=counts.pending, skipped=counts.duplicates + counts.invalid + counts.removed,
        duplicates=counts.duplicates, invalid=counts.invalid, in_flight=counts.sending,
        elapsed=elapsed, stop_reason=stop_reason, message=message, removed=counts.removed,
    )
