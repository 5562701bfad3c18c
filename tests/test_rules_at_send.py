"""#10 attacked: the operator's rules hold at the instant a call is sent, not only when its
number was claimed. A number claimed inside its window that then waits for the quota (or for
a retry) must not go out after the window closed; one added to an opt-out list during that
wait must not be called. The fake server's record (with its arrival instants) is the oracle.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, CampaignSummary, RyzeClient
from ryze_async._campaign.rules.windows import Windows
from ryze_async.testing import FakeRyzeServer, run_virtual

from .test_operator_rules import calls, check_invariants

SP = [f"55119{i:08d}" for i in range(1, 6)]  # America/Sao_Paulo, UTC-3, no DST


def quota_campaign(start: datetime, numbers: list[str], tmp_path: Path, *, per_minute: int,
                   on_result: Any = None, **options: Any) -> tuple[CampaignSummary,
                                                                   FakeRyzeServer]:
    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return start + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None,
                                clock=lambda: start.timestamp() + loop.time() - t0)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=per_minute, rate_period=60.0) as client:
            campaign = Campaign(client, numbers, journal=tmp_path / "j.db", fake=True, now=now,
                                **options)
            summary = await campaign.run(on_result) if on_result else await campaign.run()
        return summary, server

    return run_virtual(main(), start=1000.0)


def test_a_window_that_closes_while_calls_wait_for_the_quota(tmp_path: Path) -> None:
    """Mon 11:58 UTC = 08:58 in São Paulo; the window is 09:00-09:02 there; one call a minute.
    All five are claimed when it opens (12:00 UTC); the quota lets two out (12:00, 12:01); the
    three still waiting must not go out at 12:02 and after: they wait for Tuesday's window."""
    start = datetime(2026, 3, 9, 11, 58, tzinfo=UTC)
    spec = "Mon-Fri 09:00-09:02"
    summary, server = quota_campaign(start, SP, tmp_path, per_minute=1, concurrency=5,
                                     call_windows=[spec])
    check_invariants(summary)
    at = calls(server)
    for number, when in at.items():
        local = when.astimezone(Windows([spec]).zones(number)[0])
        assert local.weekday() < 5, local
        assert (9, 0) <= (local.hour, local.minute) < (9, 2), local
    assert summary.placed == 5
    assert sorted(when.date().day for when in at.values()) == [9, 9, 10, 10, 11]


def test_an_opt_out_added_while_a_call_waits_for_the_quota(tmp_path: Path) -> None:
    """Five numbers claimed at once, one call a minute. After the first call the opt-out list
    gains SP[4], which is by then claimed and waiting for the quota: it is not called."""
    optout = tmp_path / "optout.csv"
    optout.write_text("number\n+15550100\n")  # (an empty list is refused at the start)

    async def on_result(_: object) -> None:
        optout.write_text(f"number\n+15550100\n{SP[4]}\n")

    start = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)
    summary, server = quota_campaign(start, SP, tmp_path, per_minute=1, concurrency=5,
                                     exclude=[optout], on_result=on_result)
    check_invariants(summary)
    assert SP[4] not in calls(server)
    assert (summary.placed, summary.excluded) == (4, 1)


def test_not_before_after_not_after_is_refused_before_anything_expires() -> None:
    """Swapped or mistyped dates would expire the whole list at once, finally (expired rows
    are not called again in that journal): refused as a usage error instead."""

    from ryze_async._campaign.rules import Rules

    at = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    for later in (at, at - timedelta(days=1)):
        with pytest.raises(ValueError, match="not_before"):
            Rules(not_before=at, not_after=later)


async def test_validity_and_window_boundaries_to_the_microsecond() -> None:
    """``not_before`` is the first instant a call may go out, ``not_after`` the first it may
    not; a window's start is inside it, its end is not (24:00 is the end of the day)."""
    from ryze_async._campaign.rules import EXPIRED, Call, Hold, Rules, Skip

    sp = SP[0]
    t = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # Mon 09:00 in São Paulo
    tick = timedelta(microseconds=1)
    clock = [t]
    rules = Rules(not_before=t, not_after=t + timedelta(hours=1), now=lambda: clock[0])
    for at, verdict in [(t - tick, Hold(t)), (t, Call()), (t + timedelta(hours=1) - tick, Call()),
                        (t + timedelta(hours=1), Skip(EXPIRED))]:
        clock[0] = at
        assert await rules.verdict(sp) == verdict, at
    windows = Rules(call_windows=["Mon 09:00-10:00", "Tue 23:00-24:00"], now=lambda: clock[0])
    end = t + timedelta(hours=1)
    tue_midnight = datetime(2026, 3, 11, 3, 0, tzinfo=UTC)  # Tue 24:00 in São Paulo
    for at, callable_ in [(t - tick, False), (t, True), (end - tick, True), (end, False),
                          (tue_midnight - tick, True), (tue_midnight, False)]:
        clock[0] = at
        assert isinstance(await windows.verdict(sp), Call) is callable_, at


def test_day_lists_that_are_not_understood_whole_are_refused() -> None:
    """"Mon Wed" was read as Monday (the first three letters of the part): refused now,
    as is any part that is not a day's name or its abbreviation."""
    from ryze_async._campaign.rules.windows import parse_window

    for spec in ["Mon Wed 09:00-10:00", "Mon-Fri Sat 10:00-14:00", "Monx 09:00-10:00",
                 "Thu, 09:00-10:00"]:
        with pytest.raises(ValueError, match="call window"):
            parse_window(spec)
    assert parse_window("Tues,Thurs 09:00-10:00").days == frozenset({1, 3})
    assert parse_window("monday-friday 09:00-10:00").days == frozenset(range(5))
    assert parse_window("Fri-Mon 09:00-10:00").days == frozenset({4, 5, 6, 0})


def test_the_campaign_clock_catches_up_with_the_wall_after_a_suspend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default clock was the wall time at the start plus the loop's monotonic clock since;
    Linux's monotonic clock stops while the machine sleeps (a laptop lid, a paused VM). After
    two hours asleep the campaign thought it was two hours earlier: calls outside the window
    and past not_after. The wall clock now wins when it is ahead."""
    from ryze_async._campaign import rules as _rules

    wall = [datetime(2026, 3, 9, 22, 0, tzinfo=UTC)]

    class Wall(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Wall:  # type: ignore[override]
            return cls.fromtimestamp(wall[0].timestamp(), tz)

    monkeypatch.setattr(_rules, "datetime", Wall)

    async def main() -> tuple[datetime, datetime, datetime]:
        now = _rules.loop_clock()
        first = now()
        wall[0] += timedelta(hours=2)  # asleep: the loop's clock did not move
        after = now()
        await asyncio.sleep(3600)  # the virtual clock moves, the wall (here) does not
        return first, after, now()

    first, after, later = run_virtual(main(), start=1000.0)
    assert after - first == timedelta(hours=2)
    assert later - first == timedelta(hours=2)  # the later of both, never backwards


def test_an_opt_out_list_broken_mid_run_neither_stalls_the_run_nor_forgets_anyone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """After the first call the list is emptied to its header (refused as input): the calls go
    on, the number it named stays excluded, and the run ends (it used to hold every call at
    its first byte for as long as the file could not be read)."""
    optout = tmp_path / "optout.csv"
    optout.write_text(f"number\n{SP[3]}\n")

    async def on_result(_: object) -> None:
        if optout.read_text() != "number\n":  # once: one new version of the file
            optout.write_text("number\n")

    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        loop = asyncio.get_running_loop()
        server = FakeRyzeServer(rate_limit=None, clock=lambda: 1.7e9 + loop.time())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=1, rate_period=60.0) as client:
            campaign = Campaign(client, SP[:4], journal=tmp_path / "j.db", fake=True,
                                concurrency=4, exclude=[optout])
            summary = await asyncio.wait_for(campaign.run(on_result), timeout=3600)
        return summary, server

    summary, server = run_virtual(main(), start=1000.0)
    check_invariants(summary)
    assert (summary.placed, summary.excluded) == (3, 1)
    assert SP[3] not in calls(server)
    # Said once for that version of the file, not again at every call.
    assert caplog.text.count("opt-out list not re-read") == 1
