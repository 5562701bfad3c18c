"""The dispatcher: ingest, feed, and a fixed pool of workers calling the client.

One ingest task streams the input into the journal (:func:`ingest_input`); one feeder task
(:class:`Feeder`) reads pending rows back in input order into a bounded queue; ``concurrency``
worker tasks take rows from it and call the client, each call through an :class:`Attempt`. Each
call's ``before_send`` hook commits the row's ``sending`` mark after the quota admitted the call
and before its first byte. Stopping cancels only workers that have sent nothing (their rows stay
pending) and waits, bounded, for the others.

An :class:`Attempt` is one call's hooks into the journal: the claim before the first byte, the
way back to pending.

The feeder reads pending rows back in input order (ids above its cursor), and rows handed back
(a retry, held rows whose window opened: ``rules/gate.py``), into the bounded queue the workers
take them from. It ends when nothing is left to hand out, nothing is
outstanding, nothing is held for a later window and no other worker of a shared store holds a
row.

The ingest task streams the input into the journal, resuming where it stopped. When the source
cannot resume where the journal stopped (the CSV changed, or an iterable), a new pass over the
input begins (``journal/sqlite/store.py``), and ``ready`` (the feeder's go) stays clear until the
pass ends and the pending rows the input no longer holds are swept to ``skipped``: a row the user
removed is never dialed.

The client's instrumentation hooks are told each outcome the campaign records. They are the
client's own (``RyzeClient(hooks=...)``, read back through its public ``hooks``): one list of
observers sees both the requests and the campaign's outcomes. A stub client without ``hooks``
simply has none. Like the client's, a hook that raises is logged and changes nothing."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .. import CampaignOutcomeRecorded, normalize_number
from .inputs import Position, number_normalizer
from .inputs.source import NumberSource
from .journal import ClaimLostError, JournalError, JournalStore, Row
from .outcomes import CampaignOutcome, Disposition, StopReason, classify
from .rules import Call, Skip, Verdict
from .rules.gate import Gate, WindowWait
from .senders import Lease, Sender, SenderPool, quota_period
from .settings import CampaignClient, Settings, StoppedError, StopState, call

if TYPE_CHECKING:  # the client's own aliases, without loading the client
    pass

__all__ = [
    "Attempt", "CampaignClient", "Dispatcher", "Feeder", "OutcomeHook",
    "Phase", "Settings", "StoppedError", "ingest_input", "outcome_hooks", "tell",
]


Phase = Literal["idle", "waiting", "sending"]


class Attempt:
    """One row's call hooks: ``sending`` is committed before the first byte; a request proven
    not sent puts the row back to pending before the client waits to retry."""

    def __init__(self, journal: JournalStore, stop: StopState, row_id: int,
                 admitted: Callable[[], None], *, sender: str | None = None,
                 check: Callable[[], Awaitable[Verdict]] | None = None) -> None:
        self._journal = journal
        self._stop = stop
        self._row_id = row_id
        self._admitted = admitted
        self._sender = sender
        #: The one record of whether this call may have been sent: ``sending`` from the first
        #: mark on, until proven otherwise (``marked`` and the dispatcher's view of its worker
        #: are read from it).
        self.phase: Phase = "waiting"
        self._check = check
        #: Why the operator's rules refused the call at its first byte (not sent): skipped
        #: (opted out meanwhile, past ``not_after``) or held (its window closed meanwhile).
        self.refused: Verdict | None = None

    async def before_send(self) -> None:
        if self._stop.stopping:
            raise StoppedError
        if self._check is not None:
            # The number was admitted when claimed, but the quota (or a retry) may have made it
            # wait since: the window may have closed, the opt-out list gained it, the deadline
            # passed. The rules hold at the instant of sending.
            verdict = await self._check()
            if not isinstance(verdict, Call):
                self.refused = verdict
                raise StoppedError
        self.phase = "sending"  # from here the mark may commit: treat the call as possibly sent
        self._admitted()
        try:
            await self._journal.mark_sending(self._row_id, sender=self._sender)
        except ClaimLostError:
            # A shared store refused the mark: another worker holds the row now (our lease
            # ran out). Nothing was sent and nothing may be: skip the row, keep dispatching.
            self.phase = "waiting"
            raise StoppedError from None
        except asyncio.CancelledError:
            # Aborted (or cancelled) before the first byte: provably not sent. The mark may
            # still commit: the row goes back to pending right after it, not to unknown.
            self.phase = "waiting"
            self._journal.record(self._row_id, "pending", error="stopped before sending")
            raise

    @property
    def marked(self) -> bool:
        """The call may have been sent (its row was marked, and nothing proved otherwise)."""
        return self.phase == "sending"

    async def on_not_sent(self) -> None:
        # Refused or never sent, and the client is about to wait: a crash or a stop during
        # that wait must leave the number pending (to call), not unknown (never called).
        if not self.marked:
            return
        self.phase = "waiting"
        why = "stopped before sending" if self._stop.stopping else "not sent yet: waiting to retry"
        self._journal.record(self._row_id, "pending", error=why)
        await self._journal.flush()
        if self._stop.stopping:
            raise StoppedError


_log = logging.getLogger("ryze_async.campaign")


async def ingest_input(
    journal: JournalStore, source: NumberSource, batch_size: int, *,
    ready: asyncio.Event, wake: asyncio.Event,
    emit: Callable[[CampaignOutcome], Awaitable[None]],
    normalize: Callable[[str], str] = normalize_number,
) -> None:
    """Ingest every batch of ``source``; set ``ready`` once pending rows may be dispatched."""
    stored = await journal.ingest_position()
    batches = await source.open(Position(*stored), batch_size)
    if source.restarted:
        _log.warning("the numbers input changed since the last run: reading it again from "
                     "the start; nobody already dealt with is called again")
        # ``expected``: with several workers on one campaign, those that saw the same edit
        # start one pass between them (the others' reading is deduplicated into it).
        await journal.begin_pass(expected=stored)
    # An open pass (this one, or one a crash interrupted) holds dispatching until its sweep.
    hold = await journal.sweep_due()
    if not hold:
        ready.set()
    async for batch in batches:
        pos = batch.position
        result = await journal.ingest(batch.entries, position=(pos.offset, pos.line, pos.digest),
                                      normalize=normalize)
        wake.set()
        for at, raw, why in result.invalid:
            await emit(CampaignOutcome(raw, "failed", at, error=why, sent=False))
    removed = await journal.finish_pass()
    if removed:
        _log.warning("%d pending numbers are no longer in the input: skipped, not called",
                     removed)
    ready.set()


#: Seconds between looks for numbers another worker's expired lease gave back.
_SHARED_POLL = 1.0
#: On a shared journal, seconds between looks at the held rows while waiting for a window.
_SHARED_RECHECK = 60.0


class Feeder:
    """Hands pending rows to the workers; the one owner of their queue and of the retry queue
    (rows handed back), see the module docstring."""

    def __init__(
        self, client: CampaignClient, journal: JournalStore, source: NumberSource | None,
        settings: Settings, *, gate: Gate, stop: StopState,
        emit: Callable[[CampaignOutcome], Awaitable[None]],
    ) -> None:
        self._client = client
        self._journal = journal
        self._source = source
        self._s = settings
        self._gate = gate
        self._stop = stop
        self._emit = emit
        self.wake = asyncio.Event()
        self._ready = asyncio.Event()  # set once pending rows may be dispatched
        self._queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=settings.concurrency)
        self._retry: collections.deque[Row] = collections.deque()
        self.outstanding = 0  # rows handed to the queue and not yet finished by a worker
        self._ingest_done = False
        self._said = ""  # the last "nothing can be called until ..." said
        #: While nothing can be called before a window opens: (when, how many wait for one).
        self.window: tuple[datetime, int] | None = None

    async def take(self) -> Row | None:
        """The next row for a worker; None: no more (the run ends or stops)."""
        return await self._queue.get()

    def give_back(self, row: Row, *, wake: bool) -> None:
        """A row a worker took goes back through the gate (its window, another sender);
        ``wake``: look now rather than when the worker is done with it."""
        self._retry.append(row)
        if wake:
            self.wake.set()

    async def end_workers(self, workers: int) -> None:
        """Tell ``workers`` workers there is nothing more."""
        for _ in range(workers):
            await self._queue.put(None)

    def drop_queued(self) -> None:
        """Stopping: rows queued and not taken stay pending."""
        while not self._queue.empty():
            self._queue.get_nowait()

    def row_done(self) -> None:
        """A worker finished a row it took: one less outstanding, look again."""
        self.outstanding -= 1
        self.wake.set()

    async def ingest(self) -> None:
        try:
            if self._source is None:
                self._ready.set()
                return
            # The client's own reading of numbers (a stub client has none: country codes only).
            normalize = number_normalizer(getattr(self._client, "default_region", None),
                                          getattr(self._client, "number_check", "valid"))
            await ingest_input(self._journal, self._source, self._s.ingest_batch,
                               ready=self._ready, wake=self.wake, emit=self._emit,
                               normalize=normalize)
        finally:
            self._ingest_done = True
            self.wake.set()

    async def feed(self) -> None:
        await self._ready.wait()
        await self._gate.start()
        cursor = 0
        shared = self._journal.shared
        while True:
            # Cleared before looking, so a change made while we look wakes the wait below.
            self.wake.clear()
            page = self._page(shared)
            if not self._retry and page and self._gate.due_now():
                self._retry.extend(await self._gate.due(page))
            if self._retry:
                self.outstanding += 1
                await self._queue.put(self._retry.popleft())
                continue
            ingest_done = self._ingest_done
            rows = await self._journal.pending_after(cursor, page) if page else []
            for row in rows:
                self.outstanding += 1
                await self._queue.put(row)
            if rows:
                cursor = rows[-1][0]
                continue
            if ingest_done and self.outstanding == 0 and not self._retry:
                if not await self._idle(shared):
                    return
                continue
            await self._wait(self._gate.delay())

    async def _idle(self, shared: bool) -> bool:
        """Nothing to hand out, nothing outstanding: wait for the next calling window, or for
        rows another worker holds; False when the run is over (or stops outside the windows)."""
        opens = await self._gate.next_open()
        if opens is not None and opens > self._gate.now():
            return await self._wait_for_window(shared)
        if opens is not None:  # due now: read back at the top (or shortly, if being claimed)
            await self._wait(self._gate.delay())
            return True
        if not shared or not await self._journal.held_elsewhere():
            return False
        # Other workers hold rows: if one died, its claims come back to pending when its
        # lease ends (the database's clock), so wait and look again.
        await self._wait(_SHARED_POLL)
        return True

    async def _wait_for_window(self, shared: bool) -> bool:
        """Nothing can be called before the first held row's window: wait for it (True), or
        stop the run if asked to exit outside the windows (False)."""
        until, held, message = await self._gate.waiting()
        if self._s.exit_outside_window:
            self._stop.request("outside_window", f"{message}: stopped, the rest left pending; "
                               "run the same command again then to resume")
            return False
        if message != self._said:
            self._said = message
            _log.warning("%s: waiting (--exit-outside-window to stop instead)", message,
                         extra={"each_text": True})
        delay = self._gate.delay()
        if shared and delay is not None:
            # Other workers hold rows too (an earlier window; a dead worker's claims that
            # come back): look again now and then.
            delay = min(delay, _SHARED_RECHECK)
        self.window = (until, held)
        try:
            await self._wait(delay)
        finally:
            self.window = None
        return True

    async def _wait(self, seconds: float | None) -> None:
        """Until something changes (``wake``) or ``seconds`` pass (None: no time limit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), seconds)

    def _page(self, shared: bool) -> int:
        """How many rows to ask for: a shared store's page is a claim other workers cannot
        take, so it is what this worker can start soon (the queue plus the workers)."""
        if not shared:
            return max(100, self._s.concurrency * 4)
        return max(0, 2 * self._s.concurrency - self.outstanding)


OutcomeHook = Callable[[CampaignOutcomeRecorded], object]


def outcome_hooks(client: object) -> tuple[OutcomeHook, ...]:
    """The ``on_campaign_outcome`` methods of the client's hooks, resolved once."""
    found = (getattr(hook, "on_campaign_outcome", None) for hook in getattr(client, "hooks", ()))
    return tuple(method for method in found if callable(method))


def tell(hooks: tuple[OutcomeHook, ...], details: CampaignOutcomeRecorded) -> None:
    for hook in hooks:
        try:
            hook(details)
        except Exception:
            _log.exception("ryze_async hook on_campaign_outcome raised; ignored")


Sink = Callable[[CampaignOutcome], Awaitable[None]]


class Dispatcher:
    """Runs one campaign pass over an open journal; see the module docstring."""

    def __init__(
        self, client: CampaignClient, journal: JournalStore, source: NumberSource | None,
        settings: Settings, *, stop: StopState, sink: Sink | None,
        senders: list[Sender] | None = None,
    ) -> None:
        # Without a pool the client is the one sender, as many slots as workers (as before).
        pool = senders or [Sender(settings.instance, client)]
        self.pool = SenderPool(pool, -(-settings.concurrency // len(pool)))
        self._journal = journal
        self._s = settings
        self._sink = sink
        self._stop = stop
        stop.on_request(self._on_stop)
        self._stopped = asyncio.Event()
        #: Each worker and its call in progress (None: idle); a worker's phase is its call's.
        self._working: dict[asyncio.Task[None], Attempt | None] = {}
        self._requeues: dict[int, int] = {}
        self._feed_task: asyncio.Task[None] | None = None
        self._outcome_hooks = outcome_hooks(client)
        self._gate = Gate(settings.rules, journal)
        self._feeder = Feeder(client, journal, source, settings, gate=self._gate, stop=stop,
                            emit=self._emit)

    # -- control --------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.stopping

    def stop(self, reason: StopReason, message: str) -> None:
        self._stop.request(reason, message)

    def _on_stop(self, reason: StopReason) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
        self._feeder.drop_queued()
        for task, phase in self._phases():
            if phase != "sending":
                # Waiting for quota or for work: nothing was sent; the row stays pending.
                task.cancel()
            elif reason == "aborted":
                task.cancel()  # an abort does not wait for calls in flight: they end unknown
        self._stopped.set()
        self._feeder.wake.set()

    @property
    def waiting_for_quota(self) -> bool:
        """Some calls wait for the quota (or a 429's reset) and none is being sent."""
        phases = [phase for _, phase in self._phases()]
        return "waiting" in phases and "sending" not in phases

    def _phases(self) -> list[tuple[asyncio.Task[None], Phase]]:
        return [(task, "idle" if attempt is None else attempt.phase)
                for task, attempt in self._working.items()]

    @property
    def window_wait(self) -> WindowWait | None:
        """Nothing can be called until a window opens: until when, and how many wait."""
        window = self._feeder.window
        if window is None or self.stopping:
            return None
        until, held = window
        client = self.pool.senders[0].client
        period = quota_period(client)
        per_minute = None if period is None else (
            getattr(client, "rate_limit", 0) * 60 / period * len(self.pool.senders))
        return WindowWait(until, held, max(0.0, (until - self._gate.now()).total_seconds()),
                          self._gate.zone(), per_minute)

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.stopping:  # stopped before it started (a signal while the journal opened)
            return
        self.pool.start(quota_period(self.pool.senders[0].client))
        ingest = asyncio.create_task(self._feeder.ingest())
        feeder = self._feed_task = asyncio.create_task(self._feeder.feed())
        workers = [asyncio.create_task(self._worker()) for _ in range(self._s.concurrency)]
        self._working.update((w, None) for w in workers)
        stop_wait = asyncio.create_task(self._stopped.wait())
        failure: BaseException | None = None
        try:
            failure = await self._supervise(ingest, feeder, stop_wait, len(workers))
            await self._drain(workers)
        finally:
            self.pool.close()
            for task in (ingest, feeder, stop_wait, *workers):
                task.cancel()
            await asyncio.gather(ingest, feeder, stop_wait, *workers, return_exceptions=True)
        if failure is not None:
            raise failure
        for w in workers:
            if not w.cancelled() and (exc := w.exception()) is not None:
                raise exc

    async def _supervise(
        self, ingest: asyncio.Task[None], feeder: asyncio.Task[None],
        stop_wait: asyncio.Task[Any], workers: int,
    ) -> BaseException | None:
        """Until stopping or the feeder ends: the ingest's or the feeder's failure, if any."""
        waiting: set[asyncio.Task[Any]] = {feeder, stop_wait, ingest}
        while not self.stopping:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if self.stopping:
                break
            if ingest in done and (failure := ingest.exception()) is not None:
                self.stop("aborted", f"reading the numbers failed: {failure}")
                return failure
            if feeder in done:
                if (failure := feeder.exception()) is not None:
                    self.stop("aborted", f"reading the journal failed: {failure}")
                await self._feeder.end_workers(workers)
                return failure
        return None

    async def _drain(self, workers: list[asyncio.Task[None]]) -> None:
        """Wait for the workers; once stopping, at most ``drain_timeout``, then cancel them."""
        pending: set[asyncio.Task[Any]] = {w for w in workers if not w.done()}
        stop_wait = asyncio.create_task(self._stopped.wait())
        try:
            while pending and not self.stopping:
                _, pending = await asyncio.wait(pending | {stop_wait},
                                                return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stop_wait)
        finally:
            stop_wait.cancel()
        if pending and self._stop.reason != "aborted":
            _, pending = await asyncio.wait(pending, timeout=self._s.drain_timeout)
        for w in pending:
            w.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- workers --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        me = asyncio.current_task()
        if me is None:  # pragma: no cover - always inside a task
            raise RuntimeError("worker outside a task")
        while True:
            self._working[me] = None
            lease = await self.pool.take()  # a free sender first, then the next number
            row = await self._feeder.take()
            if row is None or self.stopping:
                lease.release()
                return
            try:
                if await self._gate.admit(row):
                    await self._call(me, row, lease)
            finally:
                lease.release()
                self._feeder.row_done()
            if self.stopping:
                return

    async def _call(self, me: asyncio.Task[None], row: Row, lease: Lease) -> None:
        sender = lease.sender
        rules = self._s.rules
        # Admitted by its quota: the sender may take the next number.
        attempt = Attempt(self._journal, self._stop, row.id, lease.release, sender=sender.name,
                          check=(lambda: rules.verdict(row.number, sending=True))
                          if rules.active else None)
        self._working[me] = attempt
        try:
            result = await call(sender.client, self._s, row.number, attempt, sender.name)
        except StoppedError:
            self._refused(row, attempt)
            return
        except asyncio.CancelledError:
            if attempt.marked:
                self._journal.record(
                    row.id, "unknown", sender=sender.name,
                    error="stopped while in flight: the call may have been placed")
            raise
        except JournalError as exc:
            self.stop("aborted", f"the journal could not be written ({exc}): stopped dispatching")
            raise
        except Exception as exc:
            await self._failed(row, exc, attempt.marked, sender)
            return
        # A call got through: the connection failures and unknowns before it were not a run.
        sender.conn_failures = sender.unknowns = 0
        await self._record_outcome(row, "placed", call_id=result.call_id, status=result.status,
                                   sender=sender.name)

    def _refused(self, row: Row, attempt: Attempt) -> None:
        """Not sent: the rules refused it at its first byte (or the run is stopping)."""
        if isinstance(attempt.refused, Skip):
            self._journal.record(row.id, "skipped", error=attempt.refused.reason)
        elif attempt.refused is not None and not self.stopping:
            self._feeder.give_back(row, wake=True)  # through the gate: held until its window opens

    async def _failed(self, row: Row, exc: Exception, marked: bool, sender: Sender) -> None:
        row_id = row.id
        verdict = classify(exc)
        if verdict is None:
            if marked:
                self._journal.record(row_id, "unknown", error=f"unexpected error: {exc!r}",
                                     sender=sender.name)
            self.stop("aborted", f"unexpected error: {exc!r}")
            raise exc
        if not verdict.connection_failure:
            sender.conn_failures = 0
        if verdict.state == "pending" or (verdict.state == "unknown" and not marked):
            self._not_placed(row, exc, verdict, marked, sender)
            return
        if marked:
            self._count_unknowns(verdict.state == "unknown", exc, sender)
        await self._record_outcome(row, verdict.state, status=verdict.status, error=verdict.error,
                                   sent=marked, sender=sender.name if marked else None)

    async def _record_outcome(
        self, row: Row, state: Literal["placed", "failed", "unknown"], *,
        call_id: str | None = None, status: int | None = None, error: str | None = None,
        sent: bool = True, sender: str | None = None,
    ) -> None:
        """The one place a number's final outcome of this run is recorded and reported
        (where a "campaign outcome recorded" instrumentation hook belongs)."""
        row_id, number, line = row
        self._journal.record(row_id, state, call_id=call_id, status=status, error=error,
                             sender=sender)
        self._requeues.pop(row_id, None)
        await self._emit(CampaignOutcome(number, state, line, call_id, status, error, sent=sent))

    def _not_placed(
        self, row: Row, exc: Exception, verdict: Disposition, marked: bool, sender: Sender,
    ) -> None:
        """Provably not placed (or never sent): back to pending; maybe retry; maybe trip."""
        row_id, number, _ = row
        if marked:
            self._journal.record(row_id, "pending", status=verdict.status, error=verdict.error)
        breaker = verdict.breaker
        if verdict.connection_failure:
            sender.conn_failures += 1
            if breaker is None and sender.conn_failures >= self._s.max_connection_failures:
                breaker = f"{sender.conn_failures} connection failures in a row: {exc}"
        if breaker is not None:
            self._trip(breaker, sender, row)
        elif verdict.requeue and not self.stopping:
            count = self._requeues.get(row_id, 0) + 1
            if count <= self._s.max_requeues:
                self._requeues[row_id] = count
                self._feeder.give_back(row, wake=False)
            else:
                self._requeues.pop(row_id, None)
                _log.warning("%s: still not placed after %d retries in this run (%s); left "
                             "pending", number, count - 1, verdict.error)

    def _count_unknowns(self, unknown: bool, exc: Exception, sender: Sender) -> None:
        """``max_unknown_in_a_row`` unknowns in a row (completion order), no RyzeAPI answer in
        between: the path to the API is broken (proxy, redirect, timeouts); trip the sender."""
        if not unknown:
            sender.unknowns = 0  # RyzeAPI answered (its envelope): the path to it works
            return
        sender.unknowns += 1
        limit = self._s.max_unknown_in_a_row
        if limit and sender.unknowns >= limit:
            # The number stays unknown (never resent); calls in flight end as they end.
            self._trip(f"{sender.unknowns} outcomes in a row were unknown (may have been "
                       f"placed: not called again unless retry_unknown), the last: {exc}",
                       sender, None)

    def _trip(self, reason: str, sender: Sender, row: Row | None) -> None:
        if self.stopping:
            return
        if self.pool.pooled:
            if not self.pool.remove(sender, reason):
                if row is not None:
                    # Provably not placed through this sender: another one takes the number.
                    self._feeder.give_back(row, wake=True)
                return
            reason = f"no sender left (the last one: {reason})"
        message = (f"stopped by the circuit breaker: {reason}. The remaining numbers are left "
                   "pending; fix the cause and run the same command again to resume.")
        _log.error("%s", message)
        self.stop("circuit_breaker", message)

    async def _emit(self, outcome: CampaignOutcome) -> None:
        if self._outcome_hooks:
            tell(self._outcome_hooks, CampaignOutcomeRecorded(outcome.state, outcome.status,
                                                           outcome.sent))
        if self._sink is not None:
            await self._sink(outcome)
