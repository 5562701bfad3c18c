"""``campaign --dry-run``: print what the campaign would do (``Campaign.dry_run``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ryze_async import CampaignPlan
    from ryze_async._campaign.journal import JournalCounts

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
    if p.journal is not None:
        _resumed(p, p.journal, job, say)
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
    if p.invalid > len(p.first_invalid):
        say(f"  ... and {p.invalid - len(p.first_invalid)} more invalid lines not listed")
    print("\n".join(lines), file=out, flush=True)


def _resumed(p: CampaignPlan, j: JournalCounts, job: CampaignJob,
             say: Callable[[str], None]) -> None:
    """What the journal holds, and what resuming it keeps: read from it, never written."""
    from ryze_async._campaign.journal import describe  # noqa: PLC0415 - light import

    name = describe(job.journal) + (f" campaign {job.campaign!r}" if job.campaign else "")
    in_flight = f", {j.sending} sending (a run in progress, or killed)" if j.sending else ""
    say(f"  journal {name} (read only): {j.placed} placed, {j.failed} failed, {j.unknown} "
        f"unknown, {j.pending} pending, {j.removed} skipped{in_flight}; resuming it:")
    if p.restarted:
        say("  the input changed since the journal read it: read again from the start")
    say(f"  already placed:  {p.placed} (not called again)")
    say(f"  already failed:  {p.failed} (not called again; --retry-failed calls them)")
    say(f"  already unknown: {p.unknown} (may have been placed: not called again; "
        "--retry-unknown calls them)")
    if p.retried:
        say(f"  put back:        {p.retried} (--retry-failed/--retry-unknown: counted below)")
    say(f"  removed:         {p.removed} (no longer in the input: skipped, not called)")
