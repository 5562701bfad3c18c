"""The operator's rules (#10): calling windows in the called party's time, opt-out lists,
not-before/not-after, on the virtual clock; the server's own record is the oracle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, CampaignSummary, RyzeClient
from ryze_async._campaign.rules.windows import Windows, parse_window
from ryze_async.testing import FakeRyzeServer, run_virtual

NY = "12125550100"  # America/New_York only
SP = "5511987654321"  # America/Sao_Paulo (no DST)
RU = "79161234567"  # +7 9xx: phonenumbers gives zones from Europe/Bucharest to Kamchatka
TOLL_FREE_US = "18005550100"  # +1 800: every zone of the NANP


def check_invariants(s: CampaignSummary) -> None:
    assert s.skipped == s.duplicates + s.invalid + s.removed + s.excluded + s.expired
    assert s.total == s.placed + s.failed + s.unknown + s.pending + s.in_flight + s.skipped


def calls(server: FakeRyzeServer) -> dict[str, datetime]:
    """When each number reached the server (its clock is the test's wall clock)."""
    return {r.json["number"]: datetime.fromtimestamp(r.received_at, UTC)
            for r in server.requests if r.route == "fake"}


async def virtual_campaign(
    start: datetime, numbers: list[str], journal: Path, **options: Any,
) -> tuple[CampaignSummary, FakeRyzeServer]:
    """A fake-call campaign whose wall clock starts at ``start`` and moves with the loop's."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def now() -> datetime:
        return start + timedelta(seconds=loop.time() - t0)

    server = FakeRyzeServer(rate_limit=None, clock=lambda: start.timestamp() + loop.time() - t0)
    async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                  rate_limit=None) as client:
        summary = await Campaign(client, numbers, journal=journal, fake=True, now=now,
                                 concurrency=2, **options).run()
    return summary, server


def test_windows_follow_each_number_across_the_us_dst_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Sat 7 March 2026; New York springs forward on Sun 8 March. Mon 09:00 there is 13:00
    UTC (EDT), not 14:00 (EST); São Paulo's 09:00 is 12:00 UTC."""
    start = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        return await virtual_campaign(start, [NY, SP], tmp_path / "j.db",
                                      call_windows=["Mon-Fri 09:00-20:00"])

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.placed, summary.pending) == (2, 0)
    at = calls(server)
    assert at[SP] - datetime(2026, 3, 9, 12, 0, tzinfo=UTC) < timedelta(seconds=5)
    assert at[NY] - datetime(2026, 3, 9, 13, 0, tzinfo=UTC) < timedelta(seconds=5)
    assert at[NY] >= datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    # It said until when it waits: first for both, then (São Paulo called) for New York.
    assert "nothing can be called until 2026-03-09T12:00+00:00" in caplog.text
    assert "nothing can be called until 2026-03-09T13:00+00:00" in caplog.text


def test_london_autumn_change_and_a_multi_zone_country(tmp_path: Path) -> None:
    """A +7 number spans UTC+2..UTC+12: callable only while all of them are inside
    09:00-20:00 (07:00-08:00 UTC); the London number follows BST -> GMT (25 Oct 2026)."""
    uk = "447400123456"  # Europe/London (and the Channel Islands, the Isle of Man)
    start = datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # Sat 21:00 BST

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        return await virtual_campaign(start, [uk, RU], tmp_path / "j.db",
                                      call_windows=["09:00-20:00"], timezone="Europe/London")

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    at = calls(server)
    # Sun 25 Oct: GMT again, so London's 09:00 is 09:00 UTC.
    assert datetime(2026, 10, 25, 9, 0, tzinfo=UTC) <= at[uk] < datetime(
        2026, 10, 25, 9, 1, tzinfo=UTC)
    zones = Windows(["09:00-20:00"]).zones(RU)
    assert len(zones) > 5
    for z in zones:
        local = at[RU].astimezone(z)
        assert 9 <= local.hour < 20, (z, local)


def test_exit_outside_window_stops_and_leaves_the_numbers_pending(tmp_path: Path) -> None:
    start = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # a Saturday

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        return await virtual_campaign(start, [NY, SP], tmp_path / "j.db",
                                      call_windows=["Mon-Fri 09:00-20:00"],
                                      exit_outside_window=True)

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.stop_reason, summary.pending, summary.placed) == ("outside_window", 2, 0)
    assert "2026-03-09T12:00" in summary.message
    assert server.requests == []


def test_not_before_waits_and_not_after_expires_the_rest(tmp_path: Path) -> None:
    """Nothing before not_before; the SP number (window 09:00 there = 12:00 UTC) is past the
    14:00 UTC... no: NY opens 13:00 UTC, after not_after 12:30 UTC: expired, never called."""
    start = datetime(2026, 3, 9, 10, 0, tzinfo=UTC)

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        return await virtual_campaign(
            start, [SP, NY], tmp_path / "j.db", call_windows=["Mon-Fri 09:00-20:00"],
            not_before=datetime(2026, 3, 9, 11, 0, tzinfo=UTC),
            not_after=datetime(2026, 3, 9, 12, 30, tzinfo=UTC))

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.placed, summary.expired, summary.pending) == (1, 1, 0)
    assert set(calls(server)) == {SP}


def test_not_after_past_expires_everything(tmp_path: Path) -> None:
    start = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        return await virtual_campaign(start, [SP, NY], tmp_path / "j.db",
                                      not_after=datetime(2026, 3, 9, 14, 0, tzinfo=UTC))

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.expired, summary.placed) == (2, 0)
    assert server.requests == []


def test_an_exclusion_list_edited_mid_run_takes_effect(tmp_path: Path) -> None:
    """One call a minute; after the first call the list gains the last number: it is
    skipped (excluded), and the server never saw it."""
    wanted = [f"55119{i:08d}" for i in range(5)]
    optout = tmp_path / "optout.csv"
    optout.write_text("number\n+" + wanted[1] + "\n")

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        loop = asyncio.get_running_loop()
        server = FakeRyzeServer(rate_limit=None, clock=lambda: 1.7e9 + loop.time())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=1, rate_period=60.0) as client:
            campaign = Campaign(client, wanted, journal=tmp_path / "j.db", fake=True,
                                concurrency=1, exclude=[optout])

            async def on_result(_: object) -> None:
                if len(server.requests) == 1:
                    optout.write_text("number\n+" + wanted[1] + "\n" + wanted[4] + "\n")

            summary = await campaign.run(on_result)
        return summary, server

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.placed, summary.excluded) == (3, 2)
    assert sorted(r.json["number"] for r in server.requests) == [wanted[0], wanted[2],
                                                                   wanted[3]]


@pytest.mark.parametrize("spec", ["Mon-Fri 20:00-09:00", "Funday 09:00-10:00", "9-17",
                                  "Mon 25:00-26:00"])
def test_bad_windows_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="call window"):
        parse_window(spec)


def test_a_toll_free_us_number_needs_every_nanp_zone_inside() -> None:
    w = Windows(["08:00-21:00"])
    noon_ny = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    assert w.next_open(NY, noon_ny) == noon_ny
    # +1 800 spans Guam (UTC+10) to Pago Pago (UTC-11): at noon in New York it is 02:00 in
    # Guam. The first instant every zone is inside 08:00-21:00 is 22:00 UTC (08:00 in Guam).
    opens = w.next_open(TOLL_FREE_US, noon_ny)
    assert opens == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    zones = w.zones(TOLL_FREE_US)
    assert len(zones) > 30
    assert all(8 <= opens.astimezone(z).hour < 21 for z in zones)
    before = opens - timedelta(minutes=1)
    assert not all(8 <= before.astimezone(z).hour < 21 for z in zones)
    assert Windows(["00:00-24:00"]).next_open(TOLL_FREE_US, noon_ny) == noon_ny


def test_a_number_without_a_zone_waits_unless_a_timezone_is_given() -> None:
    at = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    unplaced = "447700900123"  # a UK number phonenumbers gives no zone for
    assert Windows(["09:00-20:00"]).next_open(unplaced, at) is None
    assert Windows(["09:00-20:00"], "Europe/London").next_open(unplaced, at) == at



def test_dry_run_predicts_the_run_and_calls_nobody(tmp_path: Path) -> None:
    """Monday 12:30 UTC: São Paulo is at 09:30 (open), New York at 08:30 EDT (opens 13:00
    UTC). The plan's counts are what the run then does; the plan wrote and called nothing."""
    start = datetime(2026, 3, 9, 12, 30, tzinfo=UTC)
    journal = tmp_path / "j.db"

    async def main() -> tuple[Any, CampaignSummary, int]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return start + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None, clock=lambda: start.timestamp() + loop.time())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            options: dict[str, Any] = {"journal": journal, "fake": True, "now": now,
                                       "call_windows": ["Mon-Fri 09:00-20:00"],
                                       "exit_outside_window": True}
            plan = await Campaign(client, [NY, SP, SP, "12"], **options).dry_run()
            assert not journal.exists()
            called_during_plan = len(server.requests)
            summary = await Campaign(client, [NY, SP, SP, "12"], **options).run()
        return plan, summary, called_during_plan

    plan, summary, called = run_virtual(main(), start=1000.0)
    assert called == 0
    check_invariants(summary)
    assert (plan.now, plan.later, plan.duplicates, plan.invalid, plan.total) == (
        summary.placed, summary.pending, summary.duplicates, summary.invalid, summary.total)
    assert plan.opens == [(datetime(2026, 3, 9, 13, 0, tzinfo=UTC), 1)]
    assert summary.stop_reason == "outside_window"


def test_live_counts_tell_excluded_and_expired_from_removed() -> None:
    from ryze_async._campaign.journal import Ingested, IngestResult, Moved
    from ryze_async._campaign.outcomes import LiveCounts

    live = LiveCounts()
    live.apply(Ingested(IngestResult(added=4, duplicates=0, invalid=[])))
    live.apply(Moved("pending", "skipped", "excluded"))
    live.apply(Moved("pending", "skipped", "expired"))
    live.apply(Moved("pending", "skipped"))  # removed from the input
    s = live.snapshot()
    check_invariants(s)
    assert (s.excluded, s.expired, s.removed, s.pending, s.skipped) == (1, 1, 1, 1, 3)


async def test_an_opt_out_list_that_disappears_mid_run_keeps_its_last_reading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from ryze_async._campaign.rules import EXCLUDED, Rules, Skip

    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n{SP}\n")
    rules = Rules(exclude=[optout])
    await rules.check_exclusions()
    assert await rules.verdict(SP) == Skip(EXCLUDED)
    optout.unlink()
    rules._exclusions._checked = float("-inf")  # look at the file again now
    assert await rules.verdict(SP) == Skip(EXCLUDED)
    assert "opt-out list not re-read" in caplog.text


def test_the_deadline_passes_while_calls_wait_for_the_quota(tmp_path: Path) -> None:
    """One call a minute, the deadline 150 s in: calls at 0, 60 and 120 s; the two numbers
    still waiting for the quota at 150 s end expired, and nobody is called after it."""
    start = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
    deadline = start + timedelta(seconds=150)
    wanted = [f"55119{i:08d}" for i in range(5)]

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return start + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None, clock=lambda: start.timestamp() + loop.time()
                                - t0)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=1, rate_period=60.0) as client:
            summary = await Campaign(client, wanted, journal=tmp_path / "j.db", fake=True,
                                     now=now, concurrency=3, not_after=deadline).run()
        return summary, server

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.placed, summary.expired, summary.pending) == (3, 2, 0)
    assert all(at < deadline for at in calls(server).values())
