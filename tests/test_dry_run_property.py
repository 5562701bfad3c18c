"""#10 dry run, a property: for random lists (valid, invalid, duplicates, excluded, expired,
out of window, never placeable) the dry run's counts are what the real run then does on the
fake server, and the dry run itself sends nothing and creates no journal."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import Campaign, CampaignPlan, CampaignSummary, RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

from .conftest import examples

POOL = [
    "5511987654321", "+55 (11) 98765-4321", "5511987654322", "5511987654323",  # São Paulo
    "12125550100", "+1 212 555 0101",  # New York
    "79161234567",  # +7: UTC+2..+12
    "447700900123",  # no zone known: never placeable without --timezone
    "551187654321@s.whatsapp.net",  # a JID
    "12", "abc", "4930123456.0", "",  # invalid (and a blank entry, not counted)
]
SPECS = [["Mon-Fri 09:00-20:00"], ["Mon-Fri 09:00-20:00", "Sat 10:00-14:00"], ["08:00-21:00"],
         ["Tue 00:00-00:30"], []]
STARTS = [datetime(2026, 3, 9, 12, 30, 30, tzinfo=UTC), datetime(2026, 3, 7, 3, 0, 30, tzinfo=UTC),
          datetime(2026, 11, 27, 16, 32, 30, tzinfo=UTC)]


async def both(start: datetime, numbers: list[str], options: dict[str, Any], journal: Path,
               ) -> tuple[CampaignPlan, int, bool, CampaignSummary]:
    loop = asyncio.get_running_loop()
    server = FakeRyzeServer(rate_limit=None, clock=lambda: start.timestamp() + loop.time())
    async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                  rate_limit=None) as client:
        def clock() -> Any:
            t0 = loop.time()
            return lambda: start + timedelta(seconds=loop.time() - t0)

        plan = await Campaign(client, numbers, journal=journal, fake=True, now=clock(),
                              **options).dry_run()
        sent, created = len(server.requests), await asyncio.to_thread(journal.exists)
        summary = await Campaign(client, numbers, journal=journal, fake=True, now=clock(),
                                 exit_outside_window=True, **options).run()
    return plan, sent, created, summary


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numbers=st.lists(st.sampled_from(POOL), min_size=1, max_size=15),
       excluded=st.lists(st.sampled_from(POOL[:9]), max_size=3),
       windows=st.sampled_from(SPECS), start=st.sampled_from(STARTS),
       deadline_hours=st.one_of(st.none(), st.integers(1, 72)))
def test_the_dry_run_predicts_the_run(numbers: list[str], excluded: list[str],
                                      windows: list[str], start: datetime,
                                      deadline_hours: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        optout = Path(tmp) / "optout.csv"
        optout.write_text("number\n+15550199\n" + "".join(f"{n}\n" for n in excluded))
        options: dict[str, Any] = {"call_windows": windows, "exclude": [optout]}
        if deadline_hours is not None:
            options["not_after"] = start + timedelta(hours=deadline_hours)
        plan, sent, created, s = run_virtual(
            both(start, numbers, options, Path(tmp) / "j.db"), start=1000.0)
    assert (sent, created) == (0, False)
    assert (plan.total, plan.invalid, plan.duplicates) == (s.total, s.invalid, s.duplicates)
    assert (plan.now, plan.excluded, plan.expired) == (s.placed, s.excluded, s.expired), (
        plan, s)
    assert plan.later + plan.never == s.pending
