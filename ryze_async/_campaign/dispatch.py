"""The dispatcher: ingest, feed, and a fixed pool of workers calling the client.

One ingest task streams the input into the journal; one feeder task reads pending rows back
in input order into a bounded queue (both in ``_feeder.py``); ``concurrency`` worker tasks
take rows from it and call the client. Each call's ``before_send`` hook commits the row's
``sending`` mark after the quota admitted the call and before its first byte. Stopping
cancels only workers that have sent nothing (their rows stay pending) and waits, bounded,
for the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from .. import CampaignOutcomeRecorded
from .attempt import Attempt, Phase
from .feeder import Feeder, Row
from .inputs import NumberSource
from .journal import JournalError, JournalStore
from .observers import outcome_hooks, tell
from .outcomes import CampaignOutcome, StopReason, Verdict, classify
from .rules import Skip
from .rules.gate import Gate, WindowWait
from .senders import Lease, Sender, SenderPool, quota_period
from .settings import BeforeSend, CampaignClient, NotSent, Settings, StoppedError, call
from .stop import StopState

__all__ = ["BeforeSend", "CampaignClient", "Dispatcher", "NotSent", "Settings", "StoppedError"]

_log = logging.getLogger("ryze_async.campaign")
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
        self._phase: dict[asyncio.Task[None], Phase] = {}
        self._requeues: dict[int, int] = {}
        self._feeder: asyncio.Task[None] | None = None
        self._outcome_hooks = outcome_hooks(client)
        self._gate = Gate(settings.rules, journal)
        self._rows = Feeder(client, journal, source, settings, gate=self._gate, stop=stop,
                            emit=self._emit)
        # The feeder's own queue, retry queue and wake-up, under the names the workers use.
        self._queue, self._retry, self._wake = self._rows.queue, self._rows.retry, self._rows.wake

    # -- control --------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.stopping

    def stop(self, reason: StopReason, message: str) -> None:
        self._stop.request(reason, message)

    def _on_stop(self, reason: StopReason) -> None:
        if self._feeder is not None:
            self._feeder.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()
        for task, phase in self._phase.items():
            if phase != "sending":
                # Waiting for quota or for work: nothing was sent; the row stays pending.
                task.cancel()
            elif reason == "aborted":
                task.cancel()  # an abort does not wait for calls in flight: they end unknown
        self._stopped.set()
        self._wake.set()

    @property
    def waiting_for_quota(self) -> bool:
        """Some calls wait for the quota (or a 429's reset) and none is being sent."""
        phases = self._phase.values()
        return "waiting" in phases and "sending" not in phases

    @property
    def window_wait(self) -> WindowWait | None:
        """Nothing can be called until a window opens: until when, and how many wait."""
        window = self._rows.window
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
        ingest = asyncio.create_task(self._rows.ingest())
        feeder = self._feeder = asyncio.create_task(self._rows.feed())
        workers = [asyncio.create_task(self._worker()) for _ in range(self._s.concurrency)]
        self._phase.update((w, "idle") for w in workers)
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
                for _ in range(workers):
                    await self._queue.put(None)
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
            self._phase[me] = "idle"
            lease = await self.pool.take()  # a free sender first, then the next number
            row = await self._queue.get()
            if row is None or self.stopping:
                lease.release()
                return
            try:
                if await self._gate.admit(row):
                    await self._call(me, row, lease)
            finally:
                lease.release()
                self._rows.row_done()
            if self.stopping:
                return

    async def _call(self, me: asyncio.Task[None], row: Row, lease: Lease) -> None:
        sender = lease.sender
        rules = self._s.rules
        attempt = Attempt(self._journal, self._stop, row[0],
                          lambda p: self._set_phase(me, p, lease), sender=sender.name,
                          check=(lambda: rules.verdict(row[1], sending=True))
                          if rules.active else None)
        self._phase[me] = "waiting"
        try:
            result = await call(sender.client, self._s, row[1], attempt, sender.name)
        except StoppedError:
            self._refused(row, attempt)
            return
        except asyncio.CancelledError:
            if attempt.marked:
                self._journal.record(
                    row[0], "unknown", sender=sender.name,
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
            self._journal.record(row[0], "skipped", error=attempt.refused.reason)
        elif attempt.refused is not None and not self.stopping:
            self._retry.append(row)  # back through the gate: held until its window opens
            self._wake.set()

    def _set_phase(self, me: asyncio.Task[None], phase: Phase, lease: Lease) -> None:
        self._phase[me] = phase
        if phase == "sending":
            lease.release()  # admitted by its quota: the sender may take the next number

    async def _failed(self, row: Row, exc: Exception, marked: bool, sender: Sender) -> None:
        row_id = row[0]
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
        self, row: Row, exc: Exception, verdict: Verdict, marked: bool, sender: Sender,
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
                self._retry.append(row)
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
                    self._retry.append(row)
                    self._wake.set()
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
