"""Campaign progress for the CLI: a rich live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

from ._campaign_models import CampaignSummary

__all__ = ["format_summary", "show_progress"]

Snapshot = Callable[[], CampaignSummary]


def _rate(done: int, elapsed: float) -> float:
    return done / elapsed * 60 if elapsed > 0 else 0.0


def _eta(remaining: int, per_minute: float) -> str:
    if remaining <= 0:
        return "0s"
    if per_minute <= 0:
        return "?"
    seconds = int(remaining / per_minute * 60)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes \
        else f"{secs}s"


def _counts(s: CampaignSummary) -> str:
    return (f"placed {s.placed}  failed {s.failed}  unknown {s.unknown}  "
            f"skipped {s.skipped}  in flight {s.in_flight}")


async def show_progress(
    snapshot: Snapshot, done_this_run: Callable[[], int], *, tty: bool, out: TextIO,
    interval: float,
) -> None:
    """Display progress until cancelled (then render a last time)."""
    if tty:
        await _rich(snapshot, done_this_run, out)
    else:
        await _plain(snapshot, done_this_run, out, interval)


async def _rich(snapshot: Snapshot, done_this_run: Callable[[], int], out: TextIO) -> None:
    console = Console(file=out)
    progress = Progress(
        SpinnerColumn(), TextColumn("[bold]calling"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("{task.fields[counts]}"), console=console,
    )
    started = time.monotonic()

    def update() -> None:
        s = snapshot()
        per_minute = _rate(done_this_run(), time.monotonic() - started)
        progress.update(task, total=s.placed + s.failed + s.unknown + s.pending + s.in_flight,
                        completed=s.placed + s.failed + s.unknown,
                        rate=f"{per_minute:.0f}/min", counts=_counts(s))

    with progress:
        task = progress.add_task("calling", total=None, rate="", counts="")
        try:
            while True:
                update()
                await asyncio.sleep(0.2)
        finally:
            update()
            progress.refresh()


async def _plain(
    snapshot: Snapshot, done_this_run: Callable[[], int], out: TextIO, interval: float
) -> None:
    started = time.monotonic()

    def line() -> None:
        s = snapshot()
        per_minute = _rate(done_this_run(), time.monotonic() - started)
        done = s.placed + s.failed + s.unknown
        print(f"{time.strftime('%H:%M:%S')} progress {done}/{done + s.pending + s.in_flight} "
              f"{_counts(s)}  pending {s.pending}  {per_minute:.0f}/min  "
              f"ETA {_eta(s.pending + s.in_flight, per_minute)}", file=out, flush=True)

    try:
        while True:
            await asyncio.sleep(interval)
            line()
    finally:
        with contextlib.suppress(Exception):
            line()


def format_summary(s: CampaignSummary, journal: str) -> str:
    """The human summary printed at the end of ``campaign``, ``demo`` and ``report``."""
    rows = [
        f"journal   {journal}",
        f"total     {s.total:>8}   input entries (header, blank and # lines excluded)",
        f"placed    {s.placed:>8}",
        f"failed    {s.failed:>8}",
        f"unknown   {s.unknown:>8}   may have been placed: never redialed automatically",
        f"pending   {s.pending:>8}",
        f"skipped   {s.skipped:>8}   ({s.duplicates} duplicates, {s.invalid} invalid"
        + (f", {s.removed} removed from the input)" if s.removed else ")"),
    ]
    if s.in_flight:
        rows.append(f"in flight {s.in_flight:>8}   (a campaign is running on this journal)")
    rows.append(f"elapsed   {s.elapsed:>8.1f}s")
    if s.message:
        rows.append(s.message)
    return "\n".join(rows)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
