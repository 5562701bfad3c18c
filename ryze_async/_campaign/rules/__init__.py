"""The operator's rules, checked when a number is about to be claimed: opt-out lists
(``exclude=``), calling windows (``rules/windows.py``) and the campaign's validity
(``not_before``/``not_after``).

Time is read from one ``now`` function: by default the wall clock at the start plus the event
loop's clock since, so a test on the virtual clock moves both together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..inputs import number_normalizer
from ..journal import CampaignRules
from .optouts import Exclusions
from .windows import Windows

__all__ = [
    "EXCLUDED", "EXPIRED", "Call", "Hold", "Rules", "Skip", "Verdict", "loop_clock", "parse_iso",
]

#: Error texts of ``skipped`` rows the rules made (the counts tell them apart by these prefixes).
EXCLUDED = "excluded: on an opt-out list"
EXPIRED = "expired: still pending at the campaign's not-after time, so not called"
Now = Callable[[], datetime]
_log = logging.getLogger("ryze_async.campaign")


@dataclass(frozen=True, slots=True)
class Call:
    """May be called now."""


@dataclass(frozen=True, slots=True)
class Skip:
    """Never call in this campaign (the row becomes ``skipped`` with ``reason``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Not now: wait until ``until`` (None: no window opens; left pending for this run)."""

    until: datetime | None


Verdict = Call | Skip | Hold


def loop_clock(start: datetime | None = None) -> Now:
    """Wall time = ``start`` (default: now) + the running loop's clock since the first call,
    or the wall clock when it is ahead (and never backwards).

    The loop's clock is monotonic, which on Linux stops while the machine sleeps (a laptop's
    lid, a paused VM): alone, it would leave the campaign hours behind the called people's
    clocks after a suspend, calling outside their windows and past ``not_after``. The loop's
    clock alone moves a virtual clock in tests (and time from a given ``start``).
    """
    anchor = start or datetime.now(UTC)
    base: list[float] = []
    last = [anchor]

    def now() -> datetime:
        t = asyncio.get_running_loop().time()
        if not base:
            base.append(t)
        wall = datetime.now(UTC) if start is None else anchor  # a given start: simulated
        last[0] = max(last[0], anchor + timedelta(seconds=t - base[0]), wall)
        return last[0]

    return now


class Rules:
    """All the rules a number passes at its claim; ``Rules()`` lets everything through."""

    def __init__(
        self, *, call_windows: Sequence[str] = (), timezone: str | None = None,
        exclude: Sequence[str | os.PathLike[str]] = (), not_before: datetime | None = None,
        not_after: datetime | None = None, now: Now | None = None,
        default_region: str | None = None,
    ) -> None:
        for name, at in (("not_before", not_before), ("not_after", not_after)):
            if at is not None and at.tzinfo is None:
                raise ValueError(f"{name} needs a time zone (ISO 8601 with an offset)")
        if not_before is not None and not_after is not None and not_before >= not_after:
            # Swapped dates would expire every number at once, for good.
            raise ValueError(f"not_before ({not_before.isoformat()}) must be before not_after "
                             f"({not_after.isoformat()}): nothing could ever be called")
        self.windows = Windows(list(call_windows), timezone)
        self.not_before, self.not_after = not_before, not_after
        self._exclusions = Exclusions(exclude, number_normalizer(default_region, "possible"))
        self._now = now
        self.exclude = list(exclude)
        self._call_windows, self._timezone = list(call_windows), timezone
        self._default_region = default_region

    def recorded_as(self, rules: CampaignRules) -> Rules:
        """The rules a run uses once settled with the journal (``CampaignRules``), on this
        one's clock."""
        return Rules(
            call_windows=rules.windows or (), timezone=rules.timezone or None,
            exclude=[o.path for o in rules.exclude or ()],
            not_before=parse_iso(rules.not_before) if rules.not_before else None,
            not_after=parse_iso(rules.not_after) if rules.not_after else None,
            now=self.now, default_region=self._default_region)

    def holds_key(self) -> str:
        """What the time a number is held until depends on (not the opt-out lists: they are
        checked again when the row comes due). A journal's holds made under another key are
        forgotten, and those rows judged again."""
        at = [t.isoformat() if t is not None else "" for t in (self.not_before, self.not_after)]
        return json.dumps({"windows": self._call_windows, "timezone": self._timezone or "",
                           "not_before": at[0], "not_after": at[1]}, sort_keys=True)

    @property
    def active(self) -> bool:
        return bool(self.windows.windows or self.exclude or self.not_before or self.not_after)

    def now(self) -> datetime:
        if self._now is None:
            self._now = loop_clock()
        return self._now()

    async def check_exclusions(self) -> None:
        """Read the opt-out files now (a missing one fails the run before any call)."""
        await self._exclusions.refresh()

    async def verdict(self, number: str, *, sending: bool = False) -> Verdict:
        """Call, skip or hold ``number`` now. ``sending``: at the first byte, once the quota
        admitted the call, where no file is read (a changed opt-out list holds the number
        until it is claimed again, which reads it)."""
        if sending and self._exclusions.changed():
            return Hold(self.now())
        excluded = self._exclusions.holds(number) if sending else \
            await self._exclusions.contains(number)
        if excluded:
            return Skip(EXCLUDED)
        now = self.now()
        if self.not_after is not None and now >= self.not_after:
            return Skip(EXPIRED)
        opens = self.windows.next_open(number, now)
        if opens is not None and self.not_before is not None and opens < self.not_before:
            opens = self.windows.next_open(number, self.not_before)
        if opens == now:
            return Call()
        if opens is not None and self.not_after is not None and opens >= self.not_after:
            return Skip(EXPIRED)
        return Hold(opens)


def parse_iso(text: str) -> datetime:
    """An ISO 8601 instant with its zone (``2026-03-09T09:00:00-04:00``, ``...Z``)."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add an offset such as -03:00 or Z")
    return at
