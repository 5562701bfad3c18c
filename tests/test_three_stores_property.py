"""#17, one home per rule, as a property: one random history of runs over an input edited
between them (lines added, removed, reordered, a person's number respelled, invalid lines),
runs stopped after a few calls, and rule flags (``exclude``, ``call_windows``) given, left out
or changed (with ``change_rules``), goes through the SQLite store, the PostgreSQL store and the
dry run. All three must agree: after each run both stores hold every number in the same state
(skipped ones for the same reason), refuse the same runs, and the dry run made before a run that
is not stopped predicts what that run leaves in the journal. The fake servers' records are the
oracle: nobody is called twice, nobody opted out is called.
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from ryze_async import (
    Campaign,
    CampaignOutcome,
    CampaignPlan,
    JournalMismatchError,
    RyzeClient,
    normalize_number,
)
from ryze_async._campaign.inputs import person_key
from ryze_async._campaign.journal import peek_journal
from ryze_async.testing import FakeRyzeServer

pytestmark = [pytest.mark.infra, pytest.mark.timeout(600)]

#: Five people; the first has four spellings (typed two ways, digits, a JID): one person to the
#: journal.
PEOPLE = [["+55 (11) 91111-0001", "5511911110001", "+55 11 9 1111 0001",
           "5511911110001@s.whatsapp.net"],
          ["+55 (11) 91111-0002"], ["+55 (11) 91111-0003"], ["5511911110004"],
          ["+55 11 91111-0005"]]
SPELLINGS = [s for person in PEOPLE for s in person]
INVALID = ["12", "abc"]
WEEKDAYS = ("Mon-Fri 09:00-20:00",)
#: São Paulo: Mon 09:30 (inside WEEKDAYS), Sat 11:00 (outside).
TIMES = [datetime(2026, 3, 9, 12, 30, tzinfo=UTC), datetime(2026, 3, 7, 14, 0, tzinfo=UTC)]


@dataclass(frozen=True)
class Step:
    lines: tuple[str, ...]
    optouts: frozenset[str]
    exclude: bool | None
    windows: tuple[str, ...] | None
    change: bool
    at: int
    stop_after: int | None


steps = st.builds(
    Step,
    lines=st.lists(st.sampled_from(SPELLINGS + INVALID), min_size=1, max_size=9).map(tuple),
    optouts=st.frozensets(st.sampled_from(SPELLINGS), max_size=2),
    exclude=st.one_of(st.none(), st.booleans()),
    windows=st.one_of(st.none(), st.sampled_from([(), WEEKDAYS])),
    change=st.booleans(), at=st.integers(0, len(TIMES) - 1),
    stop_after=st.one_of(st.none(), st.integers(1, 2)))


class Recorded:
    """The oracle's own record of the campaign's rules: the first run's (a rule it leaves out:
    off), a different one later only with ``change_rules`` (else the run is refused)."""

    def __init__(self) -> None:
        self.rules: dict[str, Any] | None = None

    def settle(self, step: Step) -> dict[str, Any] | None:
        """The rules this run uses; None if it must be refused."""
        given = {"exclude": step.exclude, "windows": step.windows}
        if self.rules is None:
            self.rules = {"exclude": bool(step.exclude), "windows": step.windows or ()}
            return self.rules
        used = dict(self.rules)
        for name, value in given.items():
            if value is not None and value != used[name]:
                if not step.change:
                    return None
                used[name] = value
        self.rules = used
        return used


@dataclass
class Store:
    journal: Path | str
    campaign: str | None
    called: collections.Counter[str]


async def one_run(store: Store, numbers: Path, optout: Path, step: Step,
                  ) -> tuple[CampaignPlan | None, list[str], bool]:
    """(A real loop: the PostgreSQL store's timers must not run on a virtual clock.)
    A dry run, then the run at ``TIMES[step.at]``: (the plan, who the server saw, refused).
    The plan is None when the run is stopped (a plan predicts a whole run)."""
    loop = asyncio.get_running_loop()
    start = TIMES[step.at]
    t0 = loop.time()

    def now() -> datetime:
        return start + timedelta(seconds=loop.time() - t0)

    rules: dict[str, Any] = {"change_rules": step.change}
    if step.exclude is not None:
        rules["exclude"] = [optout] if step.exclude else []
    if step.windows is not None:
        rules["call_windows"] = list(step.windows)
    server = FakeRyzeServer(rate_limit=None, clock=lambda: now().timestamp())
    async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                  rate_limit=None) as client:
        def campaign() -> Campaign:
            return Campaign(client, numbers, journal=store.journal, campaign=store.campaign,
                            fake=True, now=now, concurrency=1, exit_outside_window=True,
                            **rules)

        try:
            plan = None if step.stop_after is not None else await campaign().dry_run()
        except JournalMismatchError:
            return None, [], True
        run = campaign()
        sent = 0

        async def on_result(outcome: CampaignOutcome) -> None:
            nonlocal sent
            sent += outcome.sent
            if step.stop_after is not None and sent >= step.stop_after:
                run.stop()

        try:
            await run.run(on_result)
        except JournalMismatchError:
            return plan, [], True
        called = [r.json["number"] for r in server.requests if r.route == "fake"]
    return plan, called, False


async def states(store: Store) -> tuple[dict[str, str], int, int]:
    """Per person: the number's state (a skipped one: its reason); the invalid and duplicate
    counts."""
    snap = await peek_journal(store.journal, store.campaign)
    assert snap is not None
    return ({key: label for key, (_, label, _) in snap.rows.items()}, snap.invalid,
            snap.duplicates)


#: What a run that ends outside its window leaves judged later: a held row is judged (maybe
#: excluded or expired) only when its window opens; the plan judges every row now.
_JUDGED_LATER = ("pending", "excluded", "expired")


def predicted(plan: CampaignPlan) -> collections.Counter[str]:
    """What the plan says the journal holds once the run ends."""
    return collections.Counter({
        "placed": plan.placed + plan.now, "failed": plan.failed, "unknown": plan.unknown,
        "pending": plan.later + plan.never, "removed": plan.removed,
        "excluded": plan.excluded, "expired": plan.expired})


def tallies(plan: CampaignPlan, labels: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """(predicted, found) per state; held rows' judgement merged when the run held some."""
    want, got = predicted(plan), collections.Counter(labels)
    if plan.later + plan.never:
        for counter in (want, got):
            counter["held"] = sum(counter.pop(label, 0) for label in _JUDGED_LATER)
    return +want, +got


def history(dsn: str, runs: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        numbers, optout = tmp / "numbers.csv", tmp / "optout.csv"
        stores = [Store(tmp / "j.db", None, collections.Counter()),
                  Store(dsn, f"three-{uuid.uuid4().hex[:12]}", collections.Counter())]
        oracle = Recorded()
        for step in runs:
            numbers.write_text("number\n" + "".join(f"{line}\n" for line in step.lines))
            # Someone not on the list always opted out: an empty opt-out file is refused.
            optout.write_text("number\n5511988887777\n"
                              + "".join(f"{n}\n" for n in sorted(step.optouts)))
            rules = oracle.settle(step)
            opted_out = {person_key(normalize_number(n)) for n in step.optouts}
            seen = []
            for store in stores:
                plan, called, refused = asyncio.run(one_run(store, numbers, optout, step))
                assert refused == (rules is None), (step, refused)
                for number in called:
                    key = person_key(number)
                    store.called[key] += 1
                    assert store.called[key] == 1, f"{number} called twice"
                    assert not (rules and rules["exclude"] and key in opted_out), number
                now = asyncio.run(states(store))
                if plan is not None:
                    want, got = tallies(plan, list(now[0].values()))
                    assert want == got, (store.journal, plan, now)
                    assert (plan.invalid, plan.duplicates) == now[1:], (plan, now)
                seen.append(now)
            sqlite, postgres = seen
            assert sqlite == postgres, (step, sqlite, postgres)


# Bounded: a few seconds per history; no shrinking (it would take minutes over real stores: the
# failing history is printed as found).
@settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(steps, min_size=1, max_size=4))
# Found by this test: a number removed by one edit and restored by the next, after a number that
# is new; the stop after two calls showed PostgreSQL dialing the restored one first (it kept its
# old id) where SQLite dialed in input order.
@example(runs=[
    Step(lines=("5511911110004", "12", "+55 (11) 91111-0003", "+55 11 91111-0005",
                "5511911110001", "+55 (11) 91111-0003", "+55 11 9 1111 0001",
                "+55 (11) 91111-0001", "5511911110001@s.whatsapp.net"),
         optouts=frozenset({"+55 (11) 91111-0003", "5511911110001"}), exclude=False,
         windows=None, change=False, at=1, stop_after=1),
    Step(lines=("5511911110001@s.whatsapp.net", "+55 11 91111-0005", "+55 11 9 1111 0001",
                "+55 11 9 1111 0001", "5511911110001@s.whatsapp.net", "5511911110004"),
         optouts=frozenset({"5511911110001", "+55 11 9 1111 0001"}), exclude=False,
         windows=(), change=False, at=0, stop_after=1),
    Step(lines=("5511911110004", "+55 (11) 91111-0002", "+55 (11) 91111-0001",
                "+55 (11) 91111-0003", "5511911110001@s.whatsapp.net", "abc", "5511911110004",
                "5511911110001@s.whatsapp.net", "+55 11 9 1111 0001"),
         optouts=frozenset({"+55 (11) 91111-0001"}), exclude=None, windows=None,
         change=False, at=1, stop_after=2),
])
# Found by this test (CI): a number opted out while it is held outside its window, then taken
# off the opt-out list; the dry run kept it excluded where both stores held it again.
@example(runs=[
    Step(lines=("abc", "+55 (11) 91111-0003", "+55 (11) 91111-0003"), optouts=frozenset(),
         exclude=True, windows=WEEKDAYS, change=True, at=1, stop_after=None),
    Step(lines=("abc", "+55 (11) 91111-0003", "+55 (11) 91111-0003"),
         optouts=frozenset({"+55 (11) 91111-0003"}), exclude=None, windows=WEEKDAYS,
         change=True, at=1, stop_after=None),
    Step(lines=("abc", "+55 (11) 91111-0003", "+55 (11) 91111-0003"), optouts=frozenset(),
         exclude=True, windows=WEEKDAYS, change=True, at=1, stop_after=None),
])
def test_sqlite_postgres_and_the_dry_run_apply_the_same_rules(pg_dsn: str,
                                                              runs: list[Step]) -> None:
    history(pg_dsn, runs)
