"""The campaign engine: :class:`Campaign` and :func:`run_campaign`, what a campaign checks and
builds before it runs, and how it opens and closes its journal.

A campaign dials a streamed list of numbers through a journal store (``journal/``), at the
client's quota, with bounded concurrency (``dispatch.py``), and never calls anyone twice: the
``sending`` mark is committed before each request, and after a crash such rows are ``unknown``,
never redialed automatically.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .. import InputError, Media
from .._public import public
from .dispatch import Dispatcher
from .inputs import number_normalizer
from .inputs.source import NumbersInput, NumberSource
from .journal import (
    CampaignIdentity,
    CampaignRules,
    JournalCounts,
    JournalStore,
    OptOutList,
    describe,
    is_database_url,
    open_journal,
    peek_journal,
    peek_rules,
)
from .journal.postgres import (
    DEFAULT_LEASE,
    DEFAULT_RECONNECT_DEADLINE,
    check_worker_settings,
)
from .journal.recorded_rules import settle, with_fingerprints
from .journal.schema import check_identity
from .outcomes import (
    CampaignOutcome,
    CampaignSummary,
    Handoff,
    LiveCounts,
    Outcomes,
    StopReason,
    summary_from_counts,
)
from .rules import Rules
from .rules.gate import WindowWait
from .senders import Sender, build_senders, quota_period
from .settings import CampaignClient, Settings, StopState

if TYPE_CHECKING:
    from .dry_run import CampaignPlan

__all__ = ["Campaign", "CampaignClient", "run_campaign"]


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
    #: A PostgreSQL worker's claim lease and reconnect deadline (seconds; see ``open_journal``).
    lease: float = DEFAULT_LEASE
    reconnect_deadline: float = DEFAULT_RECONNECT_DEADLINE


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
                                 synchronous=how.synchronous, campaign=how.campaign,
                                 lease=how.lease, reconnect_deadline=how.reconnect_deadline)
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
    from .dry_run import plan  # noqa: PLC0415 - a real run never plans
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


@public
class Campaign:
    """A bulk call campaign over a journal (the journal *is* the campaign).

    ``journal``: a file path (SQLite, one process), or a ``postgresql://USER@HOST:PORT/DB``
    URL with ``campaign="NAME"`` (the ``postgres`` extra): every process that runs the same
    campaign there works on it with the others, each number called by one of them at most
    once. A worker ends when nothing is left to claim and no other worker holds a number;
    ``elapsed`` then adds up the workers' run times. An iterable input must be the same
    sequence in every worker.

    ``numbers``: an iterable or async iterable of numbers, a CSV path (see ``NumberSource``), or
    None to only work through what the journal already holds. Give ``media`` (a ``Media``, bytes,
    or an audio file path) for audio calls, or ``fake=True`` (and ``duration``) for fake calls.

    A CSV's number column is found by its header (``number``, ``phone``, ``telefone``...) or
    given as ``column`` (a header name, or a 1-based index); a file that is not a list of numbers
    raises :class:`InputError` before the journal is created.

    Running a campaign again on the same journal resumes it: a CSV that was only appended to is
    seeked past what was read; an edited or replaced one, or an iterable, is read again from the
    start through the journal's dedupe. Numbers already placed, failed or unknown are not called,
    pending ones no longer in the input are ``skipped`` (``removed``), never called, and rows a
    crash left ``sending`` become ``unknown``. ``retry_failed`` /
    ``retry_unknown`` put those back to pending first: a person's decision, never automatic. A
    journal made with another media, instance or call kind is refused
    (``JournalMismatchError``) unless ``force``.

    ``instance`` defaults to the client's ``instance`` attribute when it has one. At most
    ``concurrency`` calls are in progress at once, on top of the client's own quota. Calls
    refused with 429 or never delivered (connection failure) go back to pending and are retried
    up to ``max_requeues`` times in this run; ``max_connection_failures`` in a row, or any
    401/403/404/instance-not-connected answer, trip the circuit breaker, as do
    ``max_unknown_in_a_row`` outcomes of one sender in a row that are unknown (no RyzeAPI
    answer in between: a proxy's page, a redirect, timeouts; 0 or None: off). On :meth:`stop` calls
    already sent get ``drain_timeout`` seconds to finish. ``synchronous`` is the journal's
    durability (see ``Journal``).

    Iterate the campaign (``async with campaign: async for outcome in campaign: ...``) for
    each :class:`CampaignOutcome`, then read :attr:`summary`; or
    ``summary = await campaign.run()``. A ``Campaign`` runs once.

    ``senders`` (``{"instance": "token", ...}``) spreads the campaign over a pool of instances:
    the campaign builds one client per sender with ``client.for_sender(token, instance)``
    (``RyzeClient``: the same base URL, rate limits, timeouts, region, retries, hooks), closes
    them at the end, and keeps no token. Each number goes through exactly one sender, the next
    free one; senders on one token share its quota. A sender whose instance trips the circuit
    breaker leaves the rotation (logged, and said in the summary) and its number stays pending
    for the others; the run stops on the breaker only when no sender is left. ``client`` itself
    places no call then. The journal records each call's instance; a pool's journal is not tied
    to one instance (the identity check compares call kind and media only); its sender names
    are among the campaign's recorded rules (below), so a pool changed between runs needs
    ``change_rules=True``.

    The operator's rules are checked when a number is about to be called. ``call_windows``
    (``["Mon-Fri 09:00-20:00", ...]``; none by default: the library cannot know the law that
    applies) are in the called person's local time, its zone(s) from the number (a number of a
    country or area with several zones is called only when all of them are inside a window;
    ``timezone`` is the zone of numbers that cannot be placed). A number outside its window
    stays pending while others are called, held in the journal until its window opens (then
    judged again); when nothing can be called until a window opens
    the run waits, or with ``exit_outside_window`` stops (``stop_reason`` ``outside_window``).
    ``exclude`` lists opt-out files (read like the input, again whenever one changes): a
    number on one is ``skipped`` (``excluded``). ``not_before`` / ``not_after`` (aware
    datetimes) bound the campaign: nothing is called before, and numbers still pending at
    ``not_after`` are ``skipped`` (``expired``). ``now`` is the wall clock (default: the time
    at start plus the event loop's clock since).

    The journal records the campaign's rules when it is created (windows and ``timezone``,
    ``exclude`` paths with a fingerprint, ``not_before``/``not_after``, the client's
    ``default_region`` and ``number_check``, ``column``/``sheet``, the senders' names, the retry
    flags): a rule left out (``None``) on a resume is the recorded one, so a resume never calls
    anyone the first run held back. A rule given differently raises ``JournalMismatchError``
    naming it, unless ``change_rules=True``, which applies it and keeps the change (its UTC
    time, old and new value) in the journal's audit trail (``ryze-async report`` shows it).
    The client is the caller's: its region and number check are always given, so a client
    built with others than the recorded ones is refused too. ``inherited_rules`` names those of
    ``"default_region"``, ``"number_check"`` and ``"senders"`` that the caller built from the
    journal's record (``ryze-async campaign`` does so when their flags are absent): they are
    compared all the same, and the resume says it runs by them. ``senders_file`` is where the
    senders' tokens were read from: its path (never its content) is recorded so that the CLI
    finds them again.

    With a PostgreSQL journal, ``lease`` is how long (seconds, default 30) this worker's claims
    outlive its last heartbeat (one every third of it) before another worker may take them, and
    ``reconnect_deadline`` how long (default 60; 0: not at all) a lost connection to the
    database is tried again before the run stops with ``JournalConnectionLostError``. Both are
    checked here (``InvalidRequestError``); a SQLite journal uses neither.
    """

    def __init__(
        self,
        client: CampaignClient,
        numbers: NumbersInput | None,
        *,
        journal: str | os.PathLike[str],
        media: Media | bytes | str | os.PathLike[str] | None = None,
        fake: bool = False,
        duration: int | None = None,
        instance: str | None = None,
        campaign: str | None = None,
        concurrency: int = 10,
        retry_failed: bool = False,
        retry_unknown: bool = False,
        force: bool = False,
        drain_timeout: float = 30.0,
        max_connection_failures: int = 5,
        max_unknown_in_a_row: int | None = 5,
        max_requeues: int = 3,
        synchronous: Literal["full", "normal"] = "full",
        ingest_batch: int = 1000,
        column: str | int | None = None,
        senders: Mapping[str, str] | None = None,
        sheet: str | int | None = None,
        call_windows: Sequence[str] | None = None,
        timezone: str | None = None,
        exclude: Sequence[str | os.PathLike[str]] | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        exit_outside_window: bool = False,
        now: Callable[[], datetime] | None = None,
        change_rules: bool = False,
        inherited_rules: Collection[str] = (),
        senders_file: str | os.PathLike[str] | None = None,
        lease: float = DEFAULT_LEASE,
        reconnect_deadline: float = DEFAULT_RECONNECT_DEADLINE,
    ) -> None:
        check_options(media, fake, concurrency, ingest_batch)
        check_worker_settings(lease=lease, reconnect_deadline=reconnect_deadline)
        self._client = client
        self._senders = build_senders(client, senders)
        del senders  # the tokens: not kept in this frame's locals past here
        self._source = NumberSource(numbers, column, sheet) if numbers is not None else None
        self._target = journal_target(journal, campaign)
        #: The journal file (None for a PostgreSQL journal: see :attr:`journal_name`).
        self.journal_path = self._target if isinstance(self._target, Path) else None
        #: The journal as it may be shown (a URL without its password).
        self.journal_name = describe(self._target)
        self._media_arg = media
        instance = instance if instance is not None else getattr(client, "instance", None)
        self._instance = instance if isinstance(instance, str) and not self._senders else None
        self._retry_states = retry_states(retry_failed, retry_unknown)
        given = given_rules(
            client, call_windows=call_windows, timezone=timezone, exclude=exclude,
            not_before=not_before, not_after=not_after, column=column, sheet=sheet,
            senders=[name for name, _ in self._senders], retry=self._retry_states,
            senders_file=None if senders_file is None else str(Path(senders_file).resolve()))
        self._journal_plan = JournalPlan(self._target, campaign, force, synchronous, fake,
                                         self._instance, quota_text(client), given,
                                         change_rules, frozenset(inherited_rules), lease,
                                         reconnect_deadline)
        self._settings = Settings(
            media=None, duration=duration, instance=self._instance, concurrency=concurrency,
            drain_timeout=drain_timeout, max_connection_failures=max_connection_failures,
            max_requeues=max_requeues, ingest_batch=ingest_batch,
            rules=Rules(call_windows=call_windows or (), timezone=timezone,
                        exclude=exclude or (),
                        not_before=not_before, not_after=not_after, now=now,
                        default_region=getattr(client, "default_region", None)),
            exit_outside_window=exit_outside_window,
            max_unknown_in_a_row=unknown_limit(max_unknown_in_a_row),
        )
        self.live = LiveCounts()
        #: The summary, once the run ended (also after a stop or a cancellation).
        self.summary: CampaignSummary | None = None
        #: Rows a previous run left ``sending`` (a crash), turned ``unknown`` at open.
        self.recovered = 0
        #: The campaign's ``Media``, once resolved (None for fake calls).
        self.media: Media | None = None
        self._dispatcher: Dispatcher | None = None
        self._stop = StopState()
        self._started = False
        self._runner: asyncio.Task[CampaignSummary] | None = None
        self._handoff: Handoff | None = None

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new numbers; let calls already sent finish (up to ``drain_timeout``)."""
        self._request("interrupted", "interrupted")

    def abort(self) -> None:
        """Stop at once: calls in flight are not waited for; they end ``unknown``."""
        self._request("aborted", "aborted: calls in flight were not waited for (unknown)")

    def _request(self, reason: StopReason, message: str) -> None:
        self._stop.request(reason, message)

    @property
    def stopping(self) -> bool:
        """True once a stop, abort or the circuit breaker ended dispatching."""
        return self._stop.stopping

    @property
    def waiting_for_quota(self) -> bool:
        """True while no call is being sent and some wait for the quota (for a display); never
        once stopping (the waits are being cancelled, nothing will be sent)."""
        return (self._dispatcher is not None and not self.stopping
                and self._dispatcher.waiting_for_quota)

    @property
    def waiting_for_window(self) -> WindowWait | None:
        """While nothing can be called until a calling window opens: until when (and how long
        from now), how many numbers wait for a window, for a display. None otherwise."""
        return None if self._dispatcher is None else self._dispatcher.window_wait

    def snapshot(self) -> CampaignSummary:
        """Live counts for a progress display (``in_flight``: calls being sent now)."""
        return self.live.snapshot(self._stop.reason, self._stop.message)

    # -- running --------------------------------------------------------------------------------

    async def dry_run(self) -> CampaignPlan:
        """What this campaign would do with its list now (:class:`CampaignPlan`); nobody
        called, no journal created or written: an existing one is read to plan its resumption."""
        return await dry_run_plan(self._client, self._source, self._settings.rules,
                                  len(self._senders), how=self._journal_plan,
                                  media=self._media_arg, retry=self._retry_states)

    def results(self) -> AsyncIterator[CampaignOutcome]:
        """Run the campaign, yielding each number's outcome as it is reached.

        Invalid numbers are yielded too (``failed``, ``sent=False``); duplicates are not.
        Dialing only proceeds while the loop pulls outcomes, and leaving the loop in any way
        (``break``, an exception, a cancelled task, the iterator dropped) stops the run as
        :meth:`stop` does: no new number is taken, calls already sent finish and are recorded,
        then the journal is closed. Inside ``async with campaign:`` leaving the block also
        waits for that.
        """
        handoff = Handoff()
        runner = self._runner = asyncio.create_task(self._run(handoff.put))
        runner.add_done_callback(lambda task: runner_ended(task, handoff))
        self._handoff = handoff
        return Outcomes(handoff, runner, self._leave)

    def __aiter__(self) -> AsyncIterator[CampaignOutcome]:
        return self.results()

    def _leave(self) -> None:
        """The consumer is gone: drop undelivered outcomes and stop taking numbers."""
        if self._handoff is not None:
            self._handoff.close()
        if self._runner is not None and not self._runner.done():
            self._request("interrupted", "the outcome loop was left: stopped taking numbers")

    async def __aenter__(self) -> Campaign:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Leaving the block ends an unfinished iteration and waits until it is recorded."""
        runner = self._runner
        if runner is None or runner.done():
            return
        self._leave()
        try:
            await asyncio.wait({runner})
        except asyncio.CancelledError:
            self.abort()  # cancelled again while draining: do not wait for calls in flight
            raise

    async def run(
        self, on_result: Callable[[CampaignOutcome], Awaitable[None]] | None = None
    ) -> CampaignSummary:
        """Run the campaign to its end; ``on_result`` is awaited for each outcome."""
        return await self._run(on_result)

    async def _run(
        self, sink: Callable[[CampaignOutcome], Awaitable[None]] | None
    ) -> CampaignSummary:
        if self._started:
            raise RuntimeError("a Campaign runs once; create another to resume its journal")
        self._started = True
        started = self.live.started = time.monotonic()
        self.media = await resolve_media(self._media_arg)
        journal = await open_store(self._source, self._settings, self.media, self._journal_plan)
        self.recovered = journal.recovered
        dispatcher = self._dispatcher = Dispatcher(
            bulk_lane(self._client), journal, self._source, self._settings, stop=self._stop,
            sink=sink, senders=[Sender(name, c) for name, c in self._senders] or None)
        try:
            await journal.watch(self.live.apply)
            await put_back(journal, self._retry_states)
            await dispatcher.run()
        finally:
            try:
                self.summary = await close_store(journal, started, self._stop,
                                                 dispatcher.pool.removed)
            finally:
                await asyncio.gather(*(c.aclose() for _, c in self._senders))
        return self.summary


@public
async def run_campaign(
    client: CampaignClient,
    numbers: NumbersInput | None,
    *,
    journal: str | os.PathLike[str],
    media: Media | bytes | str | os.PathLike[str] | None = None,
    fake: bool = False,
    concurrency: int = 10,
    **options: object,
) -> CampaignSummary:
    """Run a :class:`Campaign` to its end and return its summary (same keywords)."""
    campaign = Campaign(client, numbers, journal=journal, media=media, fake=fake,
                        concurrency=concurrency, **options)  # type: ignore[arg-type]
    return await campaign.run()
