"""Campaign progress for the CLI: a rich live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from ryze_async import CampaignSummary

if TYPE_CHECKING:
    # rich is loaded only to draw on a terminal: a run whose output is a log or a pipe (cron,
    # CI, a service) does not pay its import (issue 18: start-up CPU).
    from rich.console import Console
    from rich.progress import Progress

    from ryze_async._campaign.rules.gate import WindowWait

__all__ = ["RateWindow", "format_summary", "progress_bar", "progress_line", "show_progress"]

Snapshot = Callable[[], CampaignSummary]
Window = Callable[[], "WindowWait | None"]


class RateWindow:
    """Completions per minute over the last minute, from ``(time, done)`` samples.

    A rate since the run's start misleads twice: a resumed run's first seconds, or a burst
    before the quota bit, would dominate it for the whole run.
    """

    def __init__(self, window: float = 60.0, min_span: float = 1.0) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._window = window
        self._min_span = min_span

    def add(self, now: float, done: int) -> None:
        samples = self._samples
        samples.append((now, done))
        # Keep the last sample at or before the window's start: the span stays a full window.
        while len(samples) > 1 and samples[1][0] <= now - self._window:
            samples.popleft()

    def per_minute(self) -> float | None:
        """None until the samples span ``min_span`` seconds."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        span = t1 - t0
        return None if span < self._min_span else (d1 - d0) * 60 / span


def _eta(remaining: int, per_minute: float | None, window: WindowWait | None = None) -> str:
    if remaining <= 0:
        return "0s"
    if window is not None:
        # Nothing moves before the window opens; then the quota's pace (the last minute's
        # rate is zero while waiting, and says nothing about after).
        calls = remaining / window.per_minute * 60 if window.per_minute else 0.0
        return _duration(int(window.seconds + calls))
    if not per_minute:
        return "?"
    return _duration(int(remaining / per_minute * 60))


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes \
        else f"{secs}s"


def _counts(s: CampaignSummary) -> str:
    return (f"placed {s.placed}  failed {s.failed}  unknown {s.unknown}  "
            f"skipped {s.skipped}  in flight {s.in_flight}")


def progress_bar(console: Console) -> Progress:
    """The rich display (its task's fields come from :func:`progress_line`)."""
    from rich.console import RenderableType  # noqa: PLC0415 - see the imports above
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    class _TwoLineProgress(Progress):
        """The bar with count, rate and ETA on one line, the per-state counts under it: at 80
        columns nothing the user watches is squeezed out."""

        def get_renderables(self) -> Iterator[RenderableType]:
            yield self.make_tasks_table(self.tasks)
            for task in self.tasks:
                yield Text(str(task.fields.get("counts", "")), no_wrap=True,
                           overflow="ellipsis")

    return _TwoLineProgress(
        SpinnerColumn(), BarColumn(bar_width=16), TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[eta]}"),
        TextColumn("[yellow]{task.fields[status]}"), console=console,
    )


def _status(s: CampaignSummary, waiting: bool, window: WindowWait | None) -> str:
    """What the run waits for. A stopped run waits for nothing but its calls in flight."""
    if s.stop_reason is not None:
        return "stopping: no new calls" if s.stop_reason in ("interrupted", "aborted") \
            else "stopping"
    if window is not None:
        at = window.until.astimezone(window.zone)
        return (f"nothing can be called until {at:%a %d %b %H:%M} {at.tzname()} "
                f"({window.held:,} waiting for a window)")
    return "waiting for quota" if waiting else ""


def progress_line(s: CampaignSummary, per_minute: float | None, waiting: bool,
                  window: WindowWait | None = None) -> dict[str, Any]:
    """The task fields for one refresh of the bar (``window``: nothing can be called until
    a calling window opens)."""
    done = s.placed + s.failed + s.unknown
    total = done + s.pending + s.in_flight
    return {
        "total": total, "completed": done, "count": f"{done:,}/{total:,}",
        "rate": "?/min" if per_minute is None else f"{per_minute:,.0f}/min",
        "eta": f"ETA {_eta(s.pending + s.in_flight, per_minute, window)}",
        "status": _status(s, waiting, window), "counts": _counts(s),
    }


async def show_progress(
    snapshot: Snapshot, done_this_run: Callable[[], int], *, tty: bool, out: TextIO,
    interval: float, waiting: Callable[[], bool] = lambda: False,
    window: Window = lambda: None,
) -> None:
    """Display progress until cancelled (then render a last time)."""
    def fields(rate: RateWindow) -> dict[str, Any]:
        rate.add(time.monotonic(), done_this_run())
        return progress_line(snapshot(), rate.per_minute(), waiting(), window())

    if tty:
        await _rich(fields, out)
    else:
        await _plain(fields, snapshot, out, interval)


async def _rich(fields: Callable[[RateWindow], dict[str, Any]], out: TextIO) -> None:
    from rich.console import Console  # noqa: PLC0415 - see the imports above

    progress = progress_bar(Console(file=out))
    window = RateWindow()

    def update() -> None:
        progress.update(task, **fields(window))

    with progress:
        task = progress.add_task("calling", total=None, count="", rate="", eta="", status="",
                                 counts="")
        try:
            while True:
                update()
                await asyncio.sleep(0.2)
        finally:
            update()
            progress.refresh()


async def _plain(
    fields: Callable[[RateWindow], dict[str, Any]], snapshot: Snapshot, out: TextIO,
    interval: float,
) -> None:
    window = RateWindow()
    fields(window)

    def line() -> None:
        f = fields(window)
        s = snapshot()
        status = f"  {f['status']}" if f["status"] else ""
        print(f"{time.strftime('%H:%M:%S')} progress {f['count']} {f['counts']}  pending "
              f"{s.pending}  {f['rate']}  {f['eta']}{status}", file=out, flush=True)

    try:
        while True:
            await asyncio.sleep(interval)
            line()
    finally:
        with contextlib.suppress(Exception):
            line()


def _skipped(s: CampaignSummary) -> str:
    parts = [f"{s.duplicates} duplicates", f"{s.invalid} invalid"]
    for count, what in ((s.removed, "removed from the input"), (s.excluded, "excluded"),
                        (s.expired, "expired")):
        if count:
            parts.append(f"{count} {what}")
    return ", ".join(parts)


def format_summary(s: CampaignSummary, journal: str) -> str:
    """The human summary printed at the end of ``campaign``, ``demo`` and ``report``."""
    rows = [
        f"journal   {journal}",
        f"total     {s.total:>8}   input entries (header, blank and # lines excluded)",
        f"placed    {s.placed:>8}",
        f"failed    {s.failed:>8}",
        f"unknown   {s.unknown:>8}   may have been placed: never redialed automatically",
        f"pending   {s.pending:>8}" + (f"   ({s.held} waiting for a calling window)"
                                          if s.held else ""),
        f"skipped   {s.skipped:>8}   ({_skipped(s)})",
    ]
    if s.in_flight:
        rows.append(f"in flight {s.in_flight:>8}   (a campaign is running on this journal)")
    rows.append(f"elapsed   {s.elapsed:>8.1f}s")
    if s.message:
        rows.append(s.message)
    return "\n".join(rows)
