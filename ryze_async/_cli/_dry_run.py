"""``campaign --dry-run``: print what the campaign would do (``Campaign.dry_run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ryze_async import CampaignPlan

    from ._campaign import CampaignJob

__all__ = ["format_duration", "print_plan"]

#: How many distinct window openings the dry run lists.
_OPENINGS = 10


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def print_plan(p: CampaignPlan, job: CampaignJob, out: TextIO) -> None:
    """The plan as a person reads it; nobody was called and no journal was touched."""
    lines: list[str] = []
    say = lines.append
    say(f"dry run: {job.numbers}: {p.total} entries; nobody called, no journal written")
    say(f"  call now:        {p.now}")
    say(f"  wait for window: {p.later}")
    if p.never:
        say(f"  no window opens: {p.never} (their zone(s) never share a window; --timezone "
            "gives a zone to numbers that cannot be placed)")
    say(f"  excluded:        {p.excluded} (opt-out lists)")
    say(f"  expired:         {p.expired} (no window before --not-after)")
    say(f"  invalid:         {p.invalid}")
    say(f"  duplicates:      {p.duplicates}")
    quota = (f"{len(job.senders)} senders, each " if job.senders else "") + (
        f"{job.rate_limit} calls per {job.rate_period:g}s")
    say(f"  calling time at the quota ({quota}): about {format_duration(p.seconds)}, "
        "plus the waits for windows")
    for at, count in p.opens[:_OPENINGS]:
        say(f"  window opens {at.isoformat(timespec='minutes')}: {count} numbers")
    if len(p.opens) > _OPENINGS:
        say(f"  ... and {len(p.opens) - _OPENINGS} more openings")
    for line, raw, why in p.first_invalid:
        say(f"  invalid line {line}: {raw!r}: {why}")
    print("\n".join(lines), file=out, flush=True)
