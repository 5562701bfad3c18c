"""What a journal store reports and is asked to apply, as typed values (no string tags).

``Op`` values are the writes the dispatcher queues (a claim for sending, an outcome);
``JournalEvent`` values are what the store reports once it applied them, so the campaign's live
counts are a fold over the store's own transitions (``_campaign/counts.py``) and no caller
keeps them in step by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .schema import JournalCounts

__all__ = [
    "HoldRow",
    "IngestResult",
    "Ingested",
    "JournalEvent",
    "Listener",
    "MarkSending",
    "Moved",
    "Op",
    "Rebased",
    "RecordOutcome",
    "State",
    "skip_reason",
]

State = Literal["pending", "sending", "placed", "failed", "unknown", "skipped"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingested batch did: new pending rows, duplicates (of an entry seen earlier in
    this pass), the invalid entries (line, raw, why), and rows removed earlier that are back in
    the input (``restored``: skipped -> pending)."""

    added: int
    duplicates: int
    invalid: list[tuple[int, str, str]]
    restored: int = 0


@dataclass(frozen=True, slots=True)
class MarkSending:
    """Claim a pending row for sending (``pending -> sending``), stamped ``at``."""

    row_id: int
    at: float
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """Move a ``pending`` or ``sending`` row to ``state`` (``pending``: provably not sent)."""

    row_id: int
    state: State
    call_id: str | None = None
    status: int | None = None
    error: str | None = None
    #: The instance that sent it (None: keep the one the mark stored).
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class HoldRow:
    """Keep a row ``pending`` until ``until`` (Unix seconds; ``inf``: no window opens for it);
    a shared store also gives back this worker's claim on it."""

    row_id: int
    until: float


Op = MarkSending | RecordOutcome | HoldRow


@dataclass(frozen=True, slots=True)
class Moved:
    """A row went from ``old`` to ``new`` (committed)."""

    old: State
    new: State
    #: For a row skipped by the operator's rules: ``excluded`` or ``expired``.
    reason: Literal["excluded", "expired"] | None = None


def skip_reason(state: str, error: str | None) -> Literal["excluded", "expired"] | None:
    """Which rule skipped a row, from its error text (see ``_queries.SKIP_REASON``)."""
    if state != "skipped" or error is None:
        return None
    if error.startswith("excluded:"):
        return "excluded"
    return "expired" if error.startswith("expired:") else None


@dataclass(frozen=True, slots=True)
class Ingested:
    """A batch of input was stored (committed)."""

    result: IngestResult


@dataclass(frozen=True, slots=True)
class Rebased:
    """The store counted its rows: these counts replace whatever was folded so far."""

    counts: JournalCounts


JournalEvent = Moved | Ingested | Rebased
Listener = Callable[[JournalEvent], None]
