"""Truthful screens while waiting (#15): the progress line says until when nothing can be called
(in the operator's zone), how many numbers wait for a window, and an ETA past the opening;
each new notice is shown; a stopped bar does not say "waiting for quota"; a run that ends with
unknowns does not say every number was dealt with. Timing runs on the virtual clock."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from ryze_async import Campaign, CampaignSummary, RyzeClient
from ryze_async._campaign.rules.gate import WindowWait
from ryze_async._cli._logging import CliLogging
from ryze_async._cli._progress import progress_bar, progress_line
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

SP = [f"55119{i:08d}" for i in range(3)]  # America/Sao_Paulo: Mon 09:00 is 12:00 UTC
NY = "12125550100"  # America/New_York: Mon 9 March 09:00 (EDT) is 13:00 UTC
SATURDAY = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)


def summary(placed: int, pending: int, **more: Any) -> CampaignSummary:
    return CampaignSummary(total=placed + pending, placed=placed, failed=0, unknown=0,
                           pending=pending, skipped=0, duplicates=0, invalid=0, in_flight=0,
                           elapsed=0.0, **more)


def render(fields: dict[str, Any]) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, color_system=None, force_terminal=False)
    progress = progress_bar(console)
    task = progress.add_task("calling", total=None)
    progress.update(task, **fields)
    console.print(progress.get_renderable())
    return buffer.getvalue()


async def _held_campaign(tmp_path: Path) -> tuple[WindowWait | None, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def now() -> datetime:
        return SATURDAY + timedelta(seconds=loop.time() - t0)

    server = FakeRyzeServer(rate_limit=None)
    async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                  rate_limit=60, rate_period=60.0) as client:
        campaign = Campaign(client, [*SP, NY], journal=tmp_path / "j.db", fake=True, now=now,
                            call_windows=["Mon-Fri 09:00-20:00"], timezone="Europe/Berlin",
                            concurrency=2)
        run = asyncio.create_task(campaign.run())
        for _ in range(600):  # up to 60 virtual seconds
            if campaign.waiting_for_window is not None:
                break
            await asyncio.sleep(0.1)
        wait = campaign.waiting_for_window
        fields = progress_line(campaign.snapshot(), None, campaign.waiting_for_quota, wait)
        campaign.stop()
        await asyncio.wait_for(run, 60)
    assert server.requests == []
    return wait, fields


def test_the_progress_line_says_until_when_in_the_operators_zone(tmp_path: Path) -> None:
    wait, fields = run_virtual(_held_campaign(tmp_path), start=1000.0)
    assert wait is not None
    assert wait.until == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    assert wait.held == 4
    # Europe/Berlin (the operator's --timezone) is UTC+1 on 9 March.
    assert "nothing can be called until Mon 09 Mar 13:00 CET" in fields["status"]
    assert "4 waiting for a window" in fields["status"]
    # Two days to the opening, then 4 numbers at 60 a minute.
    assert fields["eta"] == "ETA 48h00m"
    text = render(fields)
    assert "waiting for quota" not in text
    assert "13:00 CET" in text


def test_the_eta_counts_the_wait_for_the_window() -> None:
    wait = WindowWait(until=SATURDAY, held=10, seconds=3600.0, zone=UTC, per_minute=10.0)
    fields = progress_line(summary(0, 10), None, False, wait)
    assert fields["eta"] == "ETA 1h01m"
    assert "10 waiting for a window" in fields["status"]


def test_a_stopped_bar_does_not_say_waiting_for_quota() -> None:
    stopped = summary(3, 7, stop_reason="interrupted", message="interrupted")
    fields = progress_line(stopped, 60.0, True)
    assert "waiting for quota" not in fields["status"]
    assert "stopping" in fields["status"]
    assert "waiting for quota" not in render(fields)


def test_each_new_nothing_can_be_called_notice_is_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """São Paulo's window opens at 12:00 UTC, New York's at 13:00: two notices, both shown."""
    async def main() -> CampaignSummary:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return SATURDAY + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None,
                                clock=lambda: SATURDAY.timestamp() + loop.time() - t0)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            return await Campaign(client, [SP[0], NY], journal=tmp_path / "j.db", fake=True,
                                  now=now, call_windows=["Mon-Fri 09:00-20:00"],
                                  timezone="UTC", concurrency=2).run()

    with CliLogging(verbose=False):
        result = run_virtual(main(), start=1000.0)
    assert result.placed == 2
    err = capsys.readouterr().err
    assert "nothing can be called until 2026-03-09T12:00+00:00" in err
    assert "nothing can be called until 2026-03-09T13:00+00:00" in err


async def test_a_run_that_ends_with_unknowns_does_not_say_every_number_was_dealt_with(
    ryze_server: FakeRyzeServer, tmp_path: Path,
) -> None:
    ryze_server.fail_next(Fault.DROP_AFTER_READ, times=2)
    async with RyzeClient("test-token", "my-instance", base_url=ryze_server.url,
                          rate_limit=None) as client:
        result = await Campaign(client, SP, journal=tmp_path / "j.db", fake=True,
                                concurrency=1).run()
    assert (result.placed, result.unknown) == (1, 2)
    assert "every number was dealt with" not in result.message
    assert "2 numbers may have been placed" in result.message
