"""What a :class:`~._engine.Campaign` checks and builds before it runs, and how it opens and
closes its journal: the engine's construction, apart from its running (``_engine.py``)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .. import InputError, Media
from .counts import summary_from_counts
from .dry_run import CampaignPlan, plan
from .handoff import Handoff
from .inputs import NumberSource
from .journal import (
    CampaignIdentity,
    CampaignRules,
    JournalCounts,
    JournalStore,
    OptOutList,
    describe,
    is_database_url,
    open_journal,
)
from .journal.recorded_rules import settle, with_fingerprints
from .journal.schema import check_identity
from .journal.target import peek_journal, peek_rules
from .outcomes import CampaignSummary, StopReason
from .persons import number_normalizer
from .rules import Rules
from .senders import quota_period
from .settings import CampaignClient, Settings
from .stop import StopState

_log = logging.getLogger("ryze_async.campaign")


def check_options(media: object, fake: bool, concurrency: int, ingest_batch: int) -> None:
    if (media is None) != fake:
        raise ValueError("give media= for audio calls, or fake=True for fake calls")
    if concurrency < 1 or ingest_batch < 1:
        raise ValueError("concurrency and ingest_batch must be >= 1")


def unknown_limit(value: object) -> int:
    """``max_unknown_in_a_row`` checked: a whole number >= 0 (0 or None: off)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_unknown_in_a_row must be a whole number >= 0, or None (off); "
                         f"got {value!r}")
    return value


def journal_target(journal: str | os.PathLike[str], campaign: str | None) -> str | Path:
    """The journal a ``journal=``/``campaign=`` pair names, refused when they do not fit."""
    if is_database_url(journal):
        if not campaign:
            raise ValueError("a postgresql:// journal holds many campaigns: name one with "
                             "campaign=")
        return str(journal)
    if campaign is not None:
        raise ValueError("campaign= names a campaign in a postgresql:// journal; a "
                         "journal file holds one campaign: leave it out")
    return Path(journal)


def given_rules(
    client: CampaignClient, *, call_windows: Sequence[str] | None, timezone: str | None,
    exclude: Sequence[str | os.PathLike[str]] | None, not_before: datetime | None,
    not_after: datetime | None, column: str | int | None, sheet: str | int | None,
    senders: Sequence[str], retry: Sequence[str], senders_file: str | None = None,
) -> CampaignRules:
    """The rules a run was given (``None``: not given, the recorded one applies). The client's
    number reading and the senders are always given (a client always has them); the CLI builds
    its client by the recorded ones when their flags are absent (``inherited``)."""
    return CampaignRules(
        windows=None if call_windows is None else tuple(call_windows),
        timezone=timezone,
        exclude=None if exclude is None else tuple(
            OptOutList(str(Path(p).resolve()), "") for p in exclude),
        not_before=None if not_before is None else not_before.isoformat(),
        not_after=None if not_after is None else not_after.isoformat(),
        default_region=str(getattr(client, "default_region", None) or ""),
        number_check=str(getattr(client, "number_check", None) or "valid"),
        column=None if column is None else str(column),
        sheet=None if sheet is None else str(sheet),
        senders=tuple(sorted(senders)),
        retry=tuple(retry) or None,
        senders_file=senders_file,
    )


def retry_states(retry_failed: bool, retry_unknown: bool) -> list[Literal["failed", "unknown"]]:
    states: list[Literal["failed", "unknown"]] = []
    if retry_failed:
        states.append("failed")
    if retry_unknown:
        states.append("unknown")
    return states


def bulk_lane(client: CampaignClient) -> CampaignClient:
    """The client's bulk-lane view (``with_options(priority="bulk")``, issue 11): a campaign
    never delays the interactive calls (a bot's) that share its token. A stub without
    ``with_options`` is used as it is."""
    with_options = getattr(client, "with_options", None)
    if with_options is None:
        return client
    view: CampaignClient = with_options(priority="bulk")
    return view


@dataclass(frozen=True)
class JournalPlan:
    """Where the journal is and how to open it (the campaign's identity aside)."""

    target: str | Path
    campaign: str | None
    force: bool
    synchronous: Literal["full", "normal"]
    fake: bool
    instance: str | None
    #: The client's quota as the journal records it for ``report --html`` ("7/30"; None: none).
    quota: str | None = None

    #: The rules this run was given (``None`` fields: not given) and ``change_rules``.
    given: CampaignRules = field(default_factory=CampaignRules)
    change_rules: bool = False
    #: The given rules read from the journal's record (said as recorded, compared as given).
    inherited: frozenset[str] = frozenset()


def quota_text(client: CampaignClient) -> str | None:
    """The client's quota as journals record it (each sender of a pool has this one)."""
    period, limit = quota_period(client), getattr(client, "rate_limit", None)
    return None if period is None or limit is None else f"{limit}/{period:g}"


async def resolve_media(arg: Media | bytes | str | os.PathLike[str] | None) -> Media | None:
    if arg is None or isinstance(arg, Media):
        return arg
    if isinstance(arg, bytes):
        return Media.from_bytes(arg)
    return await asyncio.to_thread(Media.from_file, arg)


async def check_source(source: NumberSource, how: JournalPlan) -> None:
    """``source.check()``; a file whose number column only the campaign's recorded rules name
    (a resume without ``--column``/``--sheet``) is checked with those."""
    try:
        await source.check()
    except InputError:
        recorded = None
        if how.given.column is None or how.given.sheet is None:
            # Only on this failure: a look at the journal, read-only (nothing is created).
            recorded = await peek_rules(how.target, how.campaign)
        if recorded is None or not (recorded.column or recorded.sheet):
            raise
        await source.use_recorded(recorded.column or "", recorded.sheet or "")


async def open_store(
    source: NumberSource | None, settings: Settings, media: Media | None, how: JournalPlan
) -> JournalStore:
    """Check the input and the rules, then open the journal (``media`` already resolved)."""
    if source is not None:
        # A file that is not a list of numbers is refused before a journal exists.
        await check_source(source, how)
    # So is a missing opt-out list: better no campaign than one calling opted-out people.
    await settings.rules.check_exclusions()
    settings.media = media
    identity = CampaignIdentity(
        "fake" if how.fake else "audio",
        None if media is None else media.fingerprint, how.instance, how.quota,
    )
    journal = await open_journal(how.target, identity=identity, force=how.force,
                                 synchronous=how.synchronous, campaign=how.campaign)
    try:
        given = await asyncio.to_thread(with_fingerprints, how.given)
        settled = await journal.settle_rules(given, change=how.change_rules,
                                             now=settings.rules.now().astimezone(UTC),
                                             inherited=how.inherited)
        settings.rules = settings.rules.recorded_as(settled.rules)
        await settings.rules.check_exclusions()  # the recorded lists: read before any call
        if source is not None:
            await source.use_recorded(settled.rules.column or "", settled.rules.sheet or "")
    except BaseException:
        await journal.close()
        raise
    if settled.note:  # a warning: the operator sees it (the CLI shows warnings)
        _log.warning("%s", settled.note)
    if journal.recovered:
        _log.warning("%d numbers were in flight when the last run ended: marked unknown, "
                     "not redialed (retry_unknown to call them again)", journal.recovered)
    return journal


async def close_store(
    journal: JournalStore, started: float, stop: StopState, removed: list[str]
) -> CampaignSummary:
    """Flush and close the journal; the summary from the store's own counts."""
    try:
        await journal.flush()
        await journal.add_elapsed(time.monotonic() - started)
        counts = await journal.counts()
    finally:
        await journal.close()
    reason = stop.reason or "completed"
    message = summary_message(stop.reason, stop.message, counts)
    if removed:
        message = "; ".join([*removed, message])
    return summary_from_counts(counts, time.monotonic() - started, reason, message)


def summary_message(reason: StopReason | None, cause: str, counts: JournalCounts) -> str:
    pending = counts.pending
    if counts.total and not (counts.placed + counts.failed + counts.unknown + pending
                             + counts.sending):
        return "no entry of the input is a number that can be called"
    if not pending:
        head = f"{cause}; no number left pending" if cause else "no number left pending"
        if counts.unknown:
            # Not "dealt with": someone must look at them (a second call may be a second one).
            return (f"{head}; {counts.unknown} numbers may have been placed (unknown outcome): "
                    "never redialed automatically, check them before calling again")
        return head if cause else "every number was dealt with"
    if reason in ("circuit_breaker", "outside_window"):
        return cause  # already says the rest is pending and how to resume
    why = cause or "rate limited or unreachable after retries"
    return f"{why}; {pending} numbers left pending: run the same command again to resume"


async def dry_run_plan(
    client: CampaignClient, source: NumberSource | None, rules: Rules, senders: int, *,
    how: JournalPlan, media: Media | bytes | str | os.PathLike[str] | None,
    retry: list[Literal["failed", "unknown"]],
) -> CampaignPlan:
    """``Campaign.dry_run``: the input read and checked, every rule applied, the journal (if
    there is one) read read-only to plan its resumption; nobody called, nothing written."""
    if source is None:
        raise ValueError("a dry run needs the numbers (numbers=None only resumes a journal)")
    await check_source(source, how)
    journal = await peek_journal(how.target, how.campaign)
    if journal is not None:
        # The resumed run would use the recorded rules, or refuse different ones: so does
        # its dry run.
        settled = settle(journal.rules, how.given, change=how.change_rules,
                         now=rules.now().astimezone(UTC), existing=bool(journal.rows),
                         inherited=how.inherited)
        if settled.note:
            _log.warning("%s", settled.note)
        rules = rules.recorded_as(settled.rules)
        await rules.check_exclusions()
        await source.use_recorded(settled.rules.column or "", settled.rules.sheet or "")
        # The resumed run would refuse a journal of another campaign: so does its dry run.
        resolved = await resolve_media(media)
        identity = CampaignIdentity("fake" if how.fake else "audio",
                                    None if resolved is None else resolved.fingerprint,
                                    how.instance)
        called = any(label in ("placed", "unknown", "sending")
                     for _, label, _ in journal.rows.values())
        name = describe(how.target) + (f" campaign {how.campaign!r}" if how.campaign else "")
        check_identity(name, journal.identity, identity,  # type: ignore[arg-type]
                       how.force or not called)
    normalize = number_normalizer(getattr(client, "default_region", None),
                                  getattr(client, "number_check", "valid"))
    limit, period = getattr(client, "rate_limit", None), quota_period(client)
    per_second = 0.0 if limit is None or not period else limit / period
    return await plan(source, rules, normalize, calls_per_second=per_second * max(1, senders),
                      journal=journal, retry=retry)


async def put_back(journal: JournalStore, states: list[Literal["failed", "unknown"]]) -> None:
    """``retry_failed`` / ``retry_unknown``: those rows back to pending (a person's decision)."""
    if states:
        moved = await journal.retry(states)
        _log.info("%d %s numbers put back to pending", moved, " and ".join(states))


def runner_ended(runner: asyncio.Task[CampaignSummary], handoff: Handoff) -> None:
    handoff.end()
    if not runner.cancelled():
        runner.exception()  # retrieved here too: a consumer that left may never ask for it
