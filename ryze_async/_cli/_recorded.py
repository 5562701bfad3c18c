"""A CLI resume builds its client by the campaign's recorded rules (#15).

The region, the number check and the senders belong to the client, which the CLI builds
before the campaign settles its rules: where their flags are absent, the journal's recorded
ones are read first (a light, read-only read: ``peek_rules``) and the client is built with
them, so "run the same command again" resumes by them and says so in the campaign's one line.
They are still compared when the campaign settles, so a record changed meanwhile (another
PostgreSQL worker's ``--change-rules``) is refused, never run by stale values.

``RYZE_DEFAULT_REGION`` counts as given, like the flag: the client reads it, and a shell that
sets another region than the recorded one is refused (exit 2) rather than overridden in
silence. ``RYZE_INSTANCE`` / ``RYZE_TOKEN`` do not name a pool: a campaign recorded with one
resumes with it unless ``--instance`` or ``--token`` is on the command line.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from ryze_async._config import Secret

from ._exits import UsageError
from ._senders import read_senders

if TYPE_CHECKING:
    from ryze_async._campaign.journal import CampaignRules

    from ._campaign import CampaignJob

__all__ = ["with_recorded"]


def _absent(job: CampaignJob) -> set[str]:
    absent = set()
    if job.default_region is None and not os.environ.get("RYZE_DEFAULT_REGION", "").strip():
        absent.add("default_region")
    if job.number_check is None:
        absent.add("number_check")
    if not job.senders and job.instance is None and job.token is None:
        absent.add("senders")
    return absent


async def with_recorded(job: CampaignJob) -> CampaignJob:
    """``job`` with the recorded region, number check and pool where their flags are absent
    (``job.inherited`` names them); a new campaign's defaults where nothing is recorded."""
    from ryze_async._campaign.journal import peek_rules  # noqa: PLC0415 - light import

    absent = _absent(job)
    rules = await peek_rules(job.journal, job.campaign) if absent else None
    if rules is None:
        return job
    inherited: set[str] = set()
    if "default_region" in absent and rules.default_region is not None:
        job = replace(job, default_region=rules.default_region or None)
        inherited.add("default_region")
    if "number_check" in absent and rules.number_check in ("valid", "possible"):
        job = replace(job, number_check=cast(Literal["valid", "possible"], rules.number_check))
        inherited.add("number_check")
    if "senders" in absent and rules.senders:
        job = replace(job, senders=_recorded_pool(rules), senders_file=Path(
            rules.senders_file or ""))
        inherited.add("senders")
    return replace(job, inherited=frozenset(inherited))


def _recorded_pool(rules: CampaignRules) -> dict[str, Secret]:
    """The pool read again from the file the campaign recorded (its tokens are never
    recorded); refused when it is gone or names other senders."""
    names = ", ".join(rules.senders or ())
    if not rules.senders_file:
        raise UsageError(f"this campaign calls through the senders {names}, whose tokens are "
                         "not recorded: give --senders FILE")
    path = Path(rules.senders_file)
    try:
        pool = read_senders(path)
    except UsageError as exc:
        raise UsageError(f"this campaign's senders ({names}) were read from {path}, which "
                         f"cannot be used now: {exc}; give --senders FILE") from None
    if sorted(pool) != sorted(rules.senders or ()):
        raise UsageError(f"{path} now names the senders {', '.join(sorted(pool))}, but this "
                         f"campaign's are {names}: give --senders FILE (with --change-rules "
                         "to change them)")
    return pool
