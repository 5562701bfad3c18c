"""#10 calling windows, a property on the virtual clock against a brute-force oracle.

Random windows (days, start, end), a random start instant around the 2026 DST changes, a
quota that makes calls wait, numbers from one zone, from a multi-zone country (+7 mobiles,
+1 800, Australian mobiles) and with no zone (the ``timezone`` fallback). The oracle is
independent of ``rules/windows.py``: phonenumbers' zone list and ``zoneinfo`` for each call the
fake server recorded. No call may reach the server at an instant when any zone of its number
is outside every window, or at/after ``not_after``, and nobody is called twice.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as pn_timezone

from ryze_async import Campaign, CampaignSummary, RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

from .conftest import examples

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
POOL = {
    "5511987654321": None,  # São Paulo (four of them: they queue for the quota together)
    "5511987654322": None,
    "5511987654323": None,
    "5511987654324": None,
    "12125550100": None,  # New York
    "12125550101": None,
    "447400123456": None,  # London
    "79161234567": None,  # +7 mobile: Kaliningrad .. Kamchatka
    "18005550100": None,  # +1 800: every NANP zone
    "61412345678": None,  # Australian mobile: several zones
    "447700900123": "Europe/Lisbon",  # phonenumbers cannot place it: the fallback zone
}
FALLBACK = "Europe/Lisbon"
# Days around the 2026 changes: US 8 Mar / 1 Nov, EU 29 Mar / 25 Oct, AU 5 Apr / 4 Oct.
STARTS = [datetime(2026, m, d, tzinfo=UTC) for m, d in
          ((3, 7), (3, 28), (4, 4), (10, 3), (10, 24), (10, 31), (7, 1))]

Window = tuple[frozenset[int], int, int]  # days, start and end minute of the day


def zones(number: str) -> list[ZoneInfo]:
    names = [z for z in pn_timezone.time_zones_for_number(phonenumbers.parse("+" + number))
             if z != "Etc/Unknown"]
    return [ZoneInfo(n) for n in names or [FALLBACK]]


def inside(at: datetime, number: str, windows: list[Window]) -> bool:
    for z in zones(number):
        local = at.astimezone(z)
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        if not any(local.weekday() in days and start <= minute < end
                   for days, start, end in windows):
            return False
    return True


def spec(window: Window) -> str:
    days, start, end = window
    names = ",".join(_DAYS[d] for d in sorted(days))
    clock = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return f"{names} {clock}"


windows_st = st.lists(
    st.tuples(st.frozensets(st.integers(0, 6), min_size=1), st.integers(0, 23 * 60 + 59),
              # Short windows too: they close while calls wait for the quota.
              st.one_of(st.integers(1, 10), st.integers(1, 16 * 60)),
              ).map(lambda w: (w[0], w[1], min(24 * 60, w[1] + w[2]))),
    min_size=1, max_size=3)


def campaign(start: datetime, numbers: list[str], windows: list[Window], per_minute: int,
             concurrency: int, journal: Path) -> tuple[CampaignSummary, FakeRyzeServer]:
    async def main() -> tuple[CampaignSummary, FakeRyzeServer]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return start + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None,
                                clock=lambda: start.timestamp() + loop.time() - t0)
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=per_minute, rate_period=60.0) as client:
            summary = await Campaign(
                client, numbers, journal=journal, fake=True, now=now, concurrency=concurrency,
                call_windows=[spec(w) for w in windows], timezone=FALLBACK,
                not_after=start + timedelta(days=4)).run()
        return summary, server

    return run_virtual(main(), start=1000.0)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows=windows_st, day=st.sampled_from(STARTS),
       offset=st.integers(0, 48 * 60 - 1),
       numbers=st.lists(st.sampled_from(sorted(POOL)), min_size=1, max_size=14),
       per_minute=st.integers(1, 3), concurrency=st.integers(1, 4))
def test_no_call_outside_any_zone_of_its_number(
    windows: list[Window], day: datetime, offset: int, numbers: list[str], per_minute: int,
    concurrency: int,
) -> None:
    start = day + timedelta(minutes=offset)
    with tempfile.TemporaryDirectory() as tmp:
        summary, server = campaign(start, numbers, windows, per_minute, concurrency,
                                   Path(tmp) / "j.db")
    deadline = start + timedelta(days=4)
    sent = [(r.json["number"], datetime.fromtimestamp(r.received_at, UTC))
            for r in server.requests if r.route == "fake"]
    assert len({n for n, _ in sent}) == len(sent), "someone called twice"
    for number, at in sent:
        assert at < deadline
        assert inside(at, number, windows), (number, at, [spec(w) for w in windows])
    assert summary.total == summary.placed + summary.pending + summary.skipped + \
        summary.failed + summary.unknown + summary.in_flight


def test_the_oracle_is_not_vacuous() -> None:
    # The property must be able to fail: 02:00 in São Paulo is outside 09:00-20:00 there.
    w: list[Window] = [(frozenset(range(7)), 9 * 60, 20 * 60)]
    assert not inside(datetime(2026, 7, 1, 5, 0, tzinfo=UTC), "5511987654321", w)
    assert inside(datetime(2026, 7, 1, 15, 0, tzinfo=UTC), "5511987654321", w)
    assert len(zones("79161234567")) > 5
