"""The one check of every numeric setting, shared by ``RyzeClient``'s configuration, the retry
policy and ``QuotaLimiter`` (which users also build directly), so they cannot disagree.

A setting is refused at construction with ``InvalidRequestError`` (a ``ValueError``) when it is
the wrong type (a ``bool`` or a ``str`` is not a number here), not finite (NaN passes every
comparison's negation and breaks the limiter's arithmetic; infinity overflows deadlines), or
out of range. The upper bounds keep later arithmetic exact: a period of 1e308 plus its margin
is infinite, and a media cap is a read buffer allocated up front, so 2**40 is a ``MemoryError``
on the first call instead of a refusal now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._exceptions import InvalidRequestError

__all__ = ["MAX_MEDIA_BYTES", "MAX_SECONDS", "check_quota", "check_settings"]

#: About 31 years: any longer duration is a typo, and loop-time sums stay far from overflow.
MAX_SECONDS = 1e9
#: 1 GiB: WhatsApp's own audio limit is 16 MB; this only bounds what a read may allocate.
MAX_MEDIA_BYTES = 2**30


@dataclass(frozen=True, slots=True)
class _Range:
    low: float
    low_open: bool  # the low end itself is refused ("> 0" rather than ">= 0")
    high: float
    integer: bool = False
    optional: bool = False  # None is accepted (it means "off" or "the default")

    def wanted(self) -> str:
        kind = "an int" if self.integer else "a finite number"
        low = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        high = "" if math.isinf(self.high) else f" and <= {self.high:g}"
        return f"{kind} {low}{high}" + (" (or None)" if self.optional else "")

    def accepts(self, value: object) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, int if self.integer else int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        # int-float comparisons are exact in Python: a 10**400 is refused here, not overflowed.
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high


_COUNT = _Range(1, low_open=False, high=math.inf, integer=True)
_SECONDS = _Range(0, low_open=True, high=MAX_SECONDS)
_SECONDS_OR_ZERO = _Range(0, low_open=False, high=MAX_SECONDS)

_RULES: dict[str, _Range] = {
    "rate_limit": _Range(1, low_open=False, high=math.inf, integer=True, optional=True),
    "rate_period": _SECONDS,
    "rate_margin": _Range(0, low_open=False, high=MAX_SECONDS, optional=True),
    "max_retries": _Range(0, low_open=False, high=math.inf, integer=True),
    "interactive_reserve": _Range(0, low_open=False, high=math.inf, integer=True),
    "max_wait": _Range(0, low_open=False, high=MAX_SECONDS, optional=True),
    "timeout": _SECONDS,
    "connect_timeout": _Range(0, low_open=True, high=MAX_SECONDS, optional=True),
    "keepalive_timeout": _SECONDS_OR_ZERO,
    "max_media_bytes": _Range(1, low_open=False, high=MAX_MEDIA_BYTES, integer=True),
    "backoff_initial": _SECONDS_OR_ZERO,
    "backoff_max": _SECONDS_OR_ZERO,
    # QuotaLimiter's own names for the quota settings (there, a limit is required).
    "limit": _COUNT,
    "period": _SECONDS,
    "margin": _Range(0, low_open=False, high=MAX_SECONDS, optional=True),
}


def check_settings(**settings: object) -> None:
    """Raise ``InvalidRequestError`` (``field`` = the setting's name) for the first refused one."""
    for name, value in settings.items():
        rule = _RULES[name]
        if not rule.accepts(value):
            raise InvalidRequestError(f"{name} must be {rule.wanted()}, not {value!r}",
                                      field=name)


def check_quota(limit: int, period: float, margin: float | None) -> None:
    """``QuotaLimiter``'s settings, by the same rules as the client's ``rate_*`` ones."""
    check_settings(limit=limit, period=period, margin=margin)
