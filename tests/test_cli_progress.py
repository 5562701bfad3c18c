"""The campaign progress display: rate over the last minute, quota waits, 80 columns (#7 CLI)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ryze_async import CampaignSummary
from ryze_async._cli._progress import RateWindow, progress_bar, progress_line


def summary(placed: int, pending: int, in_flight: int = 0) -> CampaignSummary:
    return CampaignSummary(total=placed + pending + in_flight, placed=placed, failed=0,
                           unknown=0, pending=pending, skipped=0, duplicates=0, invalid=0,
                           in_flight=in_flight, elapsed=0.0)


def test_the_rate_is_over_the_last_minute_not_since_the_start() -> None:
    window = RateWindow()
    # A burst of 1000 completions in the first second, then a steady 4 per second (240/min).
    window.add(0.0, 0)
    window.add(1.0, 1000)
    t, done = 1.0, 1000
    for _ in range(120):
        t += 1.0
        done += 4
        window.add(t, done)
    assert window.per_minute() == 240.0


def test_the_rate_is_unknown_until_a_second_has_passed() -> None:
    window = RateWindow()
    window.add(100.0, 0)
    window.add(100.2, 5)
    assert window.per_minute() is None
    window.add(101.2, 8)
    assert window.per_minute() == pytest.approx(400.0)


def test_a_quiet_minute_reads_zero() -> None:
    window = RateWindow()
    window.add(0.0, 0)
    window.add(10.0, 50)
    window.add(200.0, 50)
    assert window.per_minute() == 0.0


def render(s: CampaignSummary, per_minute: float | None, waiting: bool) -> list[str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None, force_terminal=False)
    progress = progress_bar(console)
    task = progress.add_task("calling", total=None)
    progress.update(task, **progress_line(s, per_minute, waiting))
    console.print(progress.get_renderable())
    return buffer.getvalue().rstrip("\n").splitlines()


def test_the_bar_keeps_count_and_eta_at_80_columns() -> None:
    lines = render(summary(placed=12_345, pending=98_765, in_flight=10), 240.0, waiting=False)
    assert all(len(line) <= 80 for line in lines)
    assert "12,345/111,120" in lines[0]
    assert "ETA 6h51m" in lines[0]
    assert "240/min" in lines[0]


def test_the_bar_says_when_it_waits_for_quota() -> None:
    lines = render(summary(placed=100, pending=900), 0.0, waiting=True)
    assert all(len(line) <= 80 for line in lines)
    assert "waiting for quota" in "\n".join(lines)
    assert "100/1,000" in lines[0]
