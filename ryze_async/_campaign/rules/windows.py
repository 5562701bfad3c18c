"""Calling windows in the called party's local time (``call_windows=``, ``--call-window``).

A window is ``"Mon-Fri 09:00-20:00"`` (days optional: every day). A number's zones come from
phonenumbers' time-zone data; a country (or area) that spans several zones is callable only
when every one of them is inside a window, because the library cannot know where in it the
person is. A number phonenumbers cannot place takes the ``timezone`` fallback, or is held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

__all__ = ["CallWindow", "Windows", "parse_window", "zone"]

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SPEC = re.compile(r"^\s*(?:(?P<days>[A-Za-z,\- ]+?)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*"
                   r"(?P<end>\d{1,2}:\d{2})\s*$")
_UNKNOWN = "Etc/Unknown"


@dataclass(frozen=True, slots=True)
class CallWindow:
    """Days of the week (0 = Monday) and a local time span ``[start, end)``."""

    days: frozenset[int]
    start: time
    end: time  # time.max stands for 24:00

    def holds(self, local: datetime) -> bool:
        at = local.time()
        # 24:00 is time.max, a time of day itself: the day's last microsecond is inside.
        before_end = at < self.end or self.end == time.max
        return local.weekday() in self.days and self.start <= at and before_end


def _day(name: str, spec: str) -> int:
    # The whole word, a day's name or its abbreviation: "Mon Wed" read by its first letters
    # was Monday alone.
    key = name.strip().lower()
    for i, day in enumerate(_DAYS):
        if len(key) >= 3 and day.startswith(key):
            return i
    raise ValueError(f"call window {spec!r}: {name.strip()!r} is not a day (Mon..Sun); "
                     "list days with commas: 'Mon,Wed 09:00-12:00'")


def _days(text: str | None, spec: str) -> frozenset[int]:
    if not text or text.strip().lower() in ("daily", "every day"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        a = _day(first, spec)
        b = _day(last, spec) if last else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return frozenset(days)


def _clock(text: str, spec: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    if (hours, minutes) == (24, 0):
        return time.max
    if hours > 23 or minutes > 59:
        raise ValueError(f"call window {spec!r}: {text} is not a time of day")
    return time(hours, minutes)


def parse_window(spec: str) -> CallWindow:
    """``"Mon-Fri 09:00-20:00"``, ``"Sat 10:00-14:00"``, ``"09:00-18:00"`` (every day)."""
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(f"call window {spec!r}: expected e.g. 'Mon-Fri 09:00-20:00'")
    start, end = _clock(match["start"], spec), _clock(match["end"], spec)
    if end <= start:
        raise ValueError(f"call window {spec!r}: the end must be after the start (a window "
                         "over midnight is two windows)")
    return CallWindow(_days(match["days"], spec), start, end)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as "
                         "'America/Sao_Paulo')") from None


@lru_cache(maxsize=4096)
def _number_zones(digits: str) -> tuple[str, ...]:
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return ()
    # The time-zone tables (a few ms to load) only for a campaign with calling windows.
    from phonenumbers import timezone as pn_timezone  # noqa: PLC0415
    return tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != _UNKNOWN)


class Windows:
    """The campaign's windows and the fallback zone; answers "may this number be called now,
    and if not, when first?"."""

    def __init__(self, specs: list[str], fallback: str | None = None) -> None:
        self.windows = [parse_window(s) for s in specs]
        self.fallback = zone(fallback) if fallback else None

    def zones(self, number: str) -> list[ZoneInfo]:
        digits = number.split("@", 1)[0].lstrip("+")
        names = _number_zones(digits)
        if names:
            return [ZoneInfo(n) for n in names]
        return [self.fallback] if self.fallback is not None else []

    def _inside(self, at: datetime, zones: list[ZoneInfo]) -> bool:
        return all(any(w.holds(at.astimezone(z)) for w in self.windows) for z in zones)

    def next_open(self, number: str, now: datetime) -> datetime | None:
        """``now`` if callable now, else when every zone of the number is first inside a
        window (within 8 days), else None (never: the zones' windows do not overlap, or no
        zone is known)."""
        if not self.windows:
            return now
        zones = self.zones(number)
        if not zones:
            return None
        if self._inside(now, zones):
            return now
        # The zones' common window opens when one of them opens a window: try those instants.
        candidates: set[datetime] = set()
        for z in zones:
            local_day = now.astimezone(z).date()
            for offset in range(9):
                day = local_day + timedelta(days=offset)
                for w in self.windows:
                    if day.weekday() in w.days:
                        start = datetime.combine(day, w.start, tzinfo=z)
                        # A start in a DST gap does not exist: round-trip to the real instant.
                        candidates.add(start.astimezone(now.tzinfo))
        for at in sorted(c for c in candidates if c > now):
            if self._inside(at, zones):
                return at
        return None
