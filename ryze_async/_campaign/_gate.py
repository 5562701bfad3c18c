"""The dispatcher's side of the operator's rules (``_rules.py``): a number about to be claimed
is called, skipped (excluded, expired) or held until its calling window opens.

Held rows stay ``pending`` in the journal; the gate keeps them in memory, earliest window first,
and hands them back to the feeder when their window opens.
"""

from __future__ import annotations

import heapq
import logging
from datetime import datetime

from ._journal import JournalStore
from ._rules import Call, Hold, Rules, Skip

__all__ = ["Gate"]

_log = logging.getLogger("ryze_async.campaign")
_Row = tuple[int, str, int]


class Gate:
    """Admits rows under ``rules`` (``None``: every row, at once)."""

    def __init__(self, rules: Rules, journal: JournalStore) -> None:
        self._rules = rules if rules.active else None
        self._journal = journal
        #: Rows outside their calling window: (when it opens, row id, row), earliest first.
        self._held: list[tuple[datetime, int, _Row]] = []

    @property
    def held(self) -> int:
        return len(self._held)

    def delay(self) -> float | None:
        """Seconds until the first held row's window opens (None: nothing held)."""
        if not self._held or self._rules is None:
            return None
        return max(0.0, (self._held[0][0] - self._rules.now()).total_seconds())

    def due(self) -> list[_Row]:
        """The held rows whose window is open now."""
        rows: list[_Row] = []
        while self._held and self.delay() == 0.0:
            rows.append(heapq.heappop(self._held)[2])
        return rows

    def waiting_message(self) -> str:
        until = self._held[0][0].isoformat(timespec="minutes")
        return (f"nothing can be called until {until}, when the next calling window opens "
                f"({len(self._held)} numbers wait for theirs)")

    async def admit(self, row: _Row) -> bool:
        """May ``row`` be called now? Otherwise it is skipped (excluded, expired: recorded) or
        held until its window opens (pending meanwhile)."""
        if self._rules is None:
            return True
        verdict = await self._rules.verdict(row[1])
        if isinstance(verdict, Call):
            return True
        if isinstance(verdict, Skip):
            self._journal.record(row[0], "skipped", error=verdict.reason)
        elif isinstance(verdict, Hold) and verdict.until is not None:
            heapq.heappush(self._held, (verdict.until, row[0], row))
        else:
            _log.warning("line %d: no calling window opens for this number in its time "
                         "zone(s) (--timezone gives one for numbers that cannot be placed); "
                         "left pending", row[2])
        return False

    def late(self) -> bool:
        """Past ``not_after``: a call admitted earlier must not go out now."""
        rules = self._rules
        return rules is not None and rules.not_after is not None and \
            rules.now() >= rules.not_after
