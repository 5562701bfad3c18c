"""#15, as a property: over any sequence of runs of one campaign, each giving its rules, leaving
them out or changing them (on purpose or not), nobody is ever called outside the rules the
campaign recorded. The oracle keeps the recorded rules itself (a run that gives a rule
differently without ``change_rules`` must be refused, and calls nobody) and judges every call
on the fake server's record, at the time the server received it, by hand: São Paulo's clock
(UTC-3, no daylight saving in 2026), the windows' days and hours, ``not_after``, the opt-out
file as it is at that run.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import Campaign, JournalMismatchError, RyzeClient
from ryze_async.testing import FakeRyzeServer, run_virtual

from .conftest import examples

SP = [f"55119{i:08d}" for i in range(4)]
WEEKDAYS = "Mon-Fri 09:00-20:00"
WEEKEND = "Sat-Sun 10:00-12:00"
WINDOWS: list[tuple[str, ...]] = [(), (WEEKDAYS,), (WEEKEND,), (WEEKDAYS, WEEKEND)]
NOT_AFTER = [datetime(2026, 3, 9, 0, 0, tzinfo=UTC), datetime(2026, 3, 10, 0, 0, tzinfo=UTC)]
#: São Paulo: Sat 09:00, Sat 11:00, Mon 09:30, Mon 20:30, Tue 10:00.
TIMES = [datetime(2026, 3, 7, 12, 0, tzinfo=UTC), datetime(2026, 3, 7, 14, 0, tzinfo=UTC),
         datetime(2026, 3, 9, 12, 30, tzinfo=UTC), datetime(2026, 3, 9, 23, 30, tzinfo=UTC),
         datetime(2026, 3, 10, 13, 0, tzinfo=UTC)]


@dataclass(frozen=True)
class Step:
    at: int
    windows: tuple[str, ...] | None
    not_after: datetime | None
    exclude: bool | None
    optouts: frozenset[str]
    change: bool


steps = st.builds(
    Step, at=st.integers(0, len(TIMES) - 1),
    # Left out as often as given: a resume without its rules is what the property is about.
    windows=st.one_of(st.none(), st.sampled_from(WINDOWS)),
    not_after=st.one_of(st.none(), st.sampled_from(NOT_AFTER)),
    exclude=st.one_of(st.none(), st.booleans()),
    optouts=st.frozensets(st.sampled_from(SP)),
    change=st.booleans())


def inside(windows: tuple[str, ...], at: datetime) -> bool:
    if not windows:
        return True
    local = at - timedelta(hours=3)
    hour = local.hour + local.minute / 60
    return (WEEKDAYS in windows and local.weekday() < 5 and 9 <= hour < 20) or \
        (WEEKEND in windows and local.weekday() >= 5 and 10 <= hour < 12)


class Oracle:
    """The campaign's rules as the oracle records them."""

    def __init__(self) -> None:
        self.recorded: dict[str, Any] | None = None

    def settle(self, step: Step) -> dict[str, Any] | None:
        """The rules the run must use, or None if it must be refused."""
        given = {"windows": step.windows, "not_after": step.not_after,
                 "exclude": step.exclude}
        if self.recorded is None:
            self.recorded = {"windows": step.windows or (), "not_after": step.not_after,
                             "exclude": bool(step.exclude)}
            return dict(self.recorded)
        used = dict(self.recorded)
        for name, value in given.items():
            if value is None or value == used[name]:
                continue
            if not step.change:
                return None
            used[name] = value
        self.recorded = used
        return dict(used)


def one_run(journal: Path, optout: Path, step: Step) -> list[tuple[str, datetime]]:
    """Run the campaign once at ``TIMES[step.at]``; who the server saw, and when."""
    start = TIMES[step.at]
    rules: dict[str, Any] = {"change_rules": step.change}
    if step.windows is not None:
        rules["call_windows"] = list(step.windows)
    if step.not_after is not None:
        rules["not_after"] = step.not_after
    if step.exclude is not None:
        rules["exclude"] = [optout] if step.exclude else []

    async def main() -> list[tuple[str, datetime]]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def now() -> datetime:
            return start + timedelta(seconds=loop.time() - t0)

        server = FakeRyzeServer(rate_limit=None, clock=lambda: now().timestamp())
        async with server, RyzeClient("test-token", "my-instance", base_url=server.url,
                                      rate_limit=None) as client:
            try:
                await Campaign(client, SP, journal=journal, fake=True, now=now,
                               exit_outside_window=True, **rules).run()
            finally:
                seen = [(r.json["number"], datetime.fromtimestamp(r.received_at, UTC))
                        for r in server.requests if r.route == "fake"]
        return seen

    return run_virtual(main(), start=1000.0)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=1, max_size=4))
def test_nobody_is_ever_called_outside_the_recorded_rules(runs: list[Step]) -> None:
    oracle = Oracle()
    called: set[str] = set()
    with tempfile.TemporaryDirectory() as folder:
        journal, optout = Path(folder) / "j.db", Path(folder) / "optout.csv"
        for step in sorted(runs, key=lambda s: s.at):
            # Someone not on the list always opted out: an opt-out file without numbers is
            # refused as a mistake.
            optout.write_text("number\n5511988887777\n"
                              + "".join(f"{n}\n" for n in sorted(step.optouts)))
            expected = oracle.settle(step)
            if expected is None:
                try:
                    seen = one_run(journal, optout, step)
                except JournalMismatchError:
                    continue
                raise AssertionError(f"a different rule was not refused: {step}, {seen}")
            for number, at in one_run(journal, optout, step):
                assert number not in called, f"{number} called twice"
                called.add(number)
                assert inside(expected["windows"], at), (number, at, expected)
                assert expected["not_after"] is None or at < expected["not_after"], (
                    number, at, expected)
                assert not (expected["exclude"] and number in step.optouts), (
                    number, step.optouts)


REGIONS = st.sampled_from(["", "BR", "PT"])
CHECKS = st.sampled_from(["valid", "possible"])


@given(old_region=REGIONS, old_check=CHECKS, new_region=REGIONS, new_check=CHECKS,
       inherited=st.sets(st.sampled_from(["default_region", "number_check"])),
       change=st.booleans())
def test_an_inherited_rule_is_compared_as_given_and_said_as_recorded(
    old_region: str, old_check: str, new_region: str, new_check: str, inherited: set[str],
    change: bool,
) -> None:
    """The CLI's client rules read from the record (``inherited``): the same rules used, the
    same trail and the same refusals as when given; only the one line differs, naming them."""
    from ryze_async._campaign.journal.recorded_rules import CampaignRules, settle

    recorded = CampaignRules(windows=(), timezone="", exclude=(), not_before="", not_after="",
                             default_region=old_region, number_check=old_check, column="",
                             sheet="", senders=(), retry=())
    run = CampaignRules(default_region=new_region, number_check=new_check, senders=())
    now = datetime(2026, 3, 9, tzinfo=UTC)

    def outcome(names: set[str]) -> tuple[Any, ...]:
        try:
            s = settle(recorded, run, change=change, now=now, existing=True, inherited=names)
        except JournalMismatchError as exc:
            return ("refused", str(exc)), ""
        return (s.rules, s.changes), s.note

    plain, quiet = outcome(set())
    said, note = outcome(inherited)
    assert said == plain
    assert "resuming with the recorded rules" not in quiet
    if said[0] == "refused":
        return  # refused alike, naming the same rules: nothing is said to resume
    resumed = note.split("; rule changed on purpose")[0]
    same = {"default_region": old_region == new_region and old_region,
            "number_check": old_check == new_check}
    for name, label in (("default_region", "default region"), ("number_check", "number check")):
        expected = name in inherited and bool(same[name])
        assert (f"{label} " in resumed and "recorded rules" in resumed) == expected, note
