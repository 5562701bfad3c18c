"""The dispatcher's side of the operator's rules (``rules/__init__.py``): a number about to be
claimed is called, skipped (excluded, expired) or held until its calling window opens.

A held row stays ``pending`` in the journal with the time its window opens (``hold``, durable;
on a shared journal the claim is given back, so any worker may take the row then), and the
journal's read of pending rows skips it until that time. The gate keeps only the earliest such
time; when it comes, it reads the due rows back from the journal (``due``, earliest first) and
they are judged again like any row about to be claimed (an opt-out list edited meanwhile
applies; past ``not_after`` they end expired). So memory does not grow with the number of held
rows, and a hold survives a restart without being judged again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from ..journal import JournalStore, Row
from . import Call, Hold, Rules, Skip

__all__ = ["Gate", "WindowWait", "standing_hold"]

_log = logging.getLogger("ryze_async.campaign")
_NEVER = float("inf")
#: Rows due now that another worker is claiming at this instant: look again after this.
_RACE_RECHECK = timedelta(seconds=1)


def _holds_key(rules: Rules) -> str:
    return rules.holds_key() if rules.active else ""


def standing_hold(rules: Rules, made_under: str | None, until: float) -> Hold | None:
    """The hold a pending row keeps when a run under ``rules`` starts: one made under the same
    holds key (``Rules.holds_key``) that has not come due stands, and the row is not judged
    before ``until`` (an opt-out list edited meanwhile counts then); otherwise (None) the row is
    judged now. The stores apply this in their queries (``hold_rules`` forgets holds made under
    another key; ``due`` reads a row back once its time has come); the dry run through this."""
    if made_under != _holds_key(rules) or until <= rules.now().timestamp():
        return None
    return Hold(None if until == _NEVER else datetime.fromtimestamp(until, UTC))


@dataclass(frozen=True, slots=True)
class WindowWait:
    """Nothing can be called before ``until``: what a progress display says meanwhile.

    ``held`` numbers wait for a window; ``seconds`` from now (the campaign's clock) to
    ``until``; ``zone`` the operator's (``timezone``, else the machine's) to show it in;
    ``per_minute`` the calls a minute the quota allows once it opens (None: no quota).
    """

    until: datetime
    held: int
    seconds: float
    zone: tzinfo | None
    per_minute: float | None


class Gate:
    """Admits rows under ``rules`` (inactive: every row, at once)."""

    def __init__(self, rules: Rules, journal: JournalStore) -> None:
        self._rules = rules if rules.active else None
        self._key = _holds_key(rules)
        self._journal = journal
        #: When the first held row comes due, as far as this worker knows (None: none held).
        self._earliest: datetime | None = None
        #: Not before this: due rows were being claimed by another worker a moment ago.
        self._pause: datetime | None = None
        #: The last held row read back: (not_before, id). A store that does not claim what it
        #: reads offers only rows above it, so each hold is offered once.
        self._after: tuple[float, int] = (float("-inf"), 0)

    async def start(self) -> None:
        """Forget holds made under other rules, then learn when the first held row comes due."""
        forgotten = await self._journal.hold_rules(self._key)
        if forgotten:
            _log.info("%d numbers held under other calling rules are judged again", forgotten)
        if self._rules is None:
            return
        await self.next_open()
        _, never = await self._journal.held_counts(self._rules.now().timestamp())
        if never:
            _log.warning("%d numbers have no calling window in their time zone(s) (--timezone "
                         "gives one for numbers that cannot be placed); left pending", never)

    def now(self) -> datetime:
        return self._rules.now() if self._rules is not None else datetime.now(UTC)

    def due_now(self) -> bool:
        """The first held row's window is open (and no other worker is claiming it)."""
        if self._earliest is None:
            return False
        now = self.now()
        return self._earliest <= now and (self._pause is None or self._pause <= now)

    def delay(self) -> float | None:
        """Seconds until held rows may be read back (None: nothing held)."""
        if self._earliest is None:
            return None
        at = max(self._earliest, self._pause) if self._pause is not None else self._earliest
        return max(0.0, (at - self.now()).total_seconds())

    async def due(self, limit: int) -> list[Row]:
        """Up to ``limit`` held rows whose window is open now, read back from the journal."""
        now = self.now()
        rows = await self._journal.due(now.timestamp(), self._after, limit)
        if rows:
            self._after = max(self._after, *((r[3], r[0]) for r in rows))
        elif await self.next_open() is not None and not self._earliest_after(now):
            # Due rows, none read: another worker is claiming them. Look again shortly.
            self._pause = now + _RACE_RECHECK
        return [Row(r[0], r[1], r[2]) for r in rows]

    def _earliest_after(self, now: datetime) -> bool:
        return self._earliest is not None and self._earliest > now

    async def next_open(self) -> datetime | None:
        """Ask the journal when the first held row (above what was read back) comes due."""
        if self._rules is None:
            return None
        await self._journal.flush()  # holds queued by the workers are in it
        at = await self._journal.next_due(self._after)
        now = self._rules.now()
        self._earliest = None if at is None else datetime.fromtimestamp(at, UTC).astimezone(
            now.tzinfo)
        return self._earliest

    async def waiting(self) -> tuple[datetime, int, str]:
        """Nothing can be called before the first held row's window: (when it opens, how many
        numbers wait for a window, the notice that says so in the operator's zone)."""
        if self._earliest is None:
            raise RuntimeError("nothing is held")
        waiting, _ = await self._journal.held_counts(self.now().timestamp())
        zone = self.zone()
        until = self._earliest.astimezone(zone).isoformat(timespec="minutes")
        named = f" ({zone})" if zone is not None else ""
        return self._earliest, waiting, (
            f"nothing can be called until {until}{named}, when the next calling window opens "
            f"({waiting} numbers wait for theirs)")

    def zone(self) -> tzinfo | None:
        """The operator's zone, times are shown in: ``timezone``, else the machine's (None)."""
        return self._rules.windows.fallback if self._rules is not None else None

    async def admit(self, row: Row) -> bool:
        """May ``row`` be called now? Otherwise it is skipped (excluded, expired: recorded) or
        held until its window opens (pending in the journal meanwhile)."""
        if self._rules is None:
            return True
        verdict = await self._rules.verdict(row.number)
        if isinstance(verdict, Call):
            return True
        if isinstance(verdict, Skip):
            self._journal.record(row.id, "skipped", error=verdict.reason)
        elif isinstance(verdict, Hold) and verdict.until is not None:
            self._journal.hold(row.id, verdict.until.timestamp())
            if self._earliest is None or verdict.until < self._earliest:
                self._earliest = verdict.until
        else:
            _log.warning("line %d: no calling window opens for this number in its time "
                         "zone(s) (--timezone gives one for numbers that cannot be placed); "
                         "left pending", row.line)
            self._journal.hold(row.id, _NEVER)
        return False

    def late(self) -> bool:
        """Past ``not_after``: a call admitted earlier must not go out now."""
        rules = self._rules
        return rules is not None and rules.not_after is not None and \
            rules.now() >= rules.not_after
