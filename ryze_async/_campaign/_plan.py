"""A dry run: what a campaign would do with its list now, without a journal or a call.

It reads the input as the campaign does (same parsing, normalisation and dedupe key), applies
the operator's rules (``_rules.py``) at the current time, and estimates how long the calls
take at the quota. It plans the list as a new campaign: an existing journal is not read.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ._journal._schema import dedupe_key
from ._number_source import NumberSource, Position
from ._rules import EXCLUDED, Call, Hold, Rules, Skip

__all__ = ["CampaignPlan", "plan"]

#: How many invalid lines a plan keeps, for the user to fix the first ones.
_FIRST_INVALID = 10


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """What a campaign would do with its list now (``Campaign.dry_run()``; ``--dry-run``).

    ``total == now + later + never + excluded + expired + invalid + duplicates``: ``now`` can
    be called at once, ``later`` wait for their calling window (``opens``: when, and how many),
    ``never`` have no window that opens in their zone(s) (left pending), ``excluded`` are on an
    opt-out list, ``expired`` cannot be called before ``not_after``. ``seconds`` is how long the
    calls of ``now`` and ``later`` take at the quota (their windows' waits not included).
    """

    total: int
    now: int
    later: int
    never: int
    excluded: int
    expired: int
    invalid: int
    duplicates: int
    seconds: float
    opens: list[tuple[datetime, int]] = field(default_factory=list)
    first_invalid: list[tuple[int, str, str]] = field(default_factory=list)


async def plan(
    source: NumberSource, rules: Rules, normalize: Callable[[str], str], *,
    calls_per_second: float,
) -> CampaignPlan:
    """Plan ``source`` under ``rules``: read it whole, call nobody, write nothing."""
    tally: collections.Counter[str] = collections.Counter()
    opens: collections.Counter[datetime] = collections.Counter()
    invalid: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    await rules.check_exclusions()
    async for batch in await source.open(Position()):
        for line, raw in batch.entries:
            try:
                number = normalize(raw)
            except ValueError as exc:
                tally["invalid"] += 1
                if len(invalid) < _FIRST_INVALID:
                    invalid.append((line, raw, str(exc) or "invalid number"))
                continue
            key = dedupe_key(number)
            if key in seen:
                tally["duplicates"] += 1
                continue
            seen.add(key)
            verdict = await rules.verdict(number)
            if isinstance(verdict, Call):
                tally["now"] += 1
            elif isinstance(verdict, Skip):
                tally["excluded" if verdict.reason == EXCLUDED else "expired"] += 1
            elif isinstance(verdict, Hold) and verdict.until is not None:
                tally["later"] += 1
                opens[verdict.until] += 1
            else:
                tally["never"] += 1
    calls = tally["now"] + tally["later"]
    return CampaignPlan(
        total=sum(tally.values()), now=tally["now"], later=tally["later"],
        never=tally["never"], excluded=tally["excluded"], expired=tally["expired"],
        invalid=tally["invalid"], duplicates=tally["duplicates"],
        seconds=calls / calls_per_second if calls_per_second > 0 else 0.0,
        opens=sorted(opens.items()), first_invalid=invalid,
    )
