"""What a campaign reports: one outcome per number, a summary, the error-to-state mapping
(:func:`classify`), the outcome iterator, and the live counts.

The outcome iterator: dialing proceeds only while a consumer is attached. Outcomes pass to the
consumer through a small bounded hand-off, so a consumer that stops pulling holds the workers
(each blocks on handing over its outcome and takes no new number). Leaving the loop in any way
detaches the consumer and stops the run: ``aclose()`` or the campaign's ``async with`` explicitly,
and a ``break``, an exception in the loop body, a cancelled task or a dropped iterator through a
finalizer that runs when the iterator goes away. An async generator would not do: it is closed
only by ``aclose()`` or, later, by the loop's asyncgen hooks, and its runner task goes on dialing
meanwhile.

Live counts of a running campaign are a fold over the journal store's own events: the store
reports every committed transition (``journal/events.py``); nothing else moves these
counters, so no caller can forget one. They feed progress displays only; the final summary is
read from the store itself. Both are built by :func:`summary_from_counts`.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .. import (
    APIError,
    AuthenticationError,
    ConnectionFailedError,
    InstanceNotConnectedError,
    InstanceNotFoundError,
    InvalidRequestError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QuotaBackendError,
    RateLimitError,
)
from .._public import public
from .journal import Ingested, JournalCounts, JournalEvent, Moved, Rebased, State

__all__ = [
    "CampaignOutcome",
    "CampaignSummary",
    "Disposition",
    "Handoff",
    "LiveCounts",
    "Outcomes",
    "StopReason",
    "classify",
    "summary_from_counts",
]


#: Why a run ended: every number dealt with, Ctrl-C/SIGTERM/``stop()``, the circuit breaker,
#: or ``abort()`` (second Ctrl-C: in-flight calls not waited for); ``outside_window``: nothing
#: could be called before the next calling window (or ``not_before``) and the campaign was
#: asked to stop then (``exit_outside_window``) rather than wait.
StopReason = Literal["completed", "interrupted", "circuit_breaker", "aborted",
                     "outside_window"]


@public
@dataclass(frozen=True, slots=True)
class CampaignOutcome:
    """The final state of one number in this run (requeued attempts are not reported).

    ``sent`` is False when no request went out (an invalid number, or one refused by the
    client's own validation). ``line`` is the CSV line (or the iterable position).
    """

    number: str
    state: Literal["placed", "failed", "unknown"]
    line: int
    call_id: str | None = None
    status: int | None = None
    error: str | None = None
    sent: bool = True


@public
@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """The state of a whole campaign (its journal), and how this run ended.

    Invariants (exact, tested):

    - ``total`` counts input entries ingested so far (blank lines, comments and a CSV header
      excluded), over every run of this journal; when the input changed between runs and was
      read again, numbers of the old input that were dealt with (or removed) still count;
    - ``skipped == duplicates + invalid + removed + excluded + expired``: never sent (a repeat
      of an earlier number, not a callable number, a number removed from the input file before
      it was called, one on an opt-out list, or one still pending at ``not_after``;
      the invalid ones are stored as ``failed`` rows but counted here, not in ``failed``);
    - ``total == placed + failed + unknown + pending + in_flight + skipped``;
    - ``in_flight`` is 0 in a finished run's summary (in-flight calls end, or become
      ``unknown``); it is non-zero only in a live snapshot or a report on a running campaign.

    ``elapsed`` is this run's wall time in seconds (for ``report``: all runs added up).
    """

    total: int
    placed: int
    failed: int
    unknown: int
    pending: int
    skipped: int
    duplicates: int
    invalid: int
    in_flight: int
    elapsed: float
    stop_reason: StopReason | None = None
    message: str = ""
    #: Pending numbers no longer in the input when it was read again (edited between runs).
    removed: int = 0
    #: Numbers on an opt-out list (``exclude=``) when they were about to be called.
    excluded: int = 0
    #: Numbers still pending at the campaign's ``not_after``: never called late.
    expired: int = 0
    #: Of ``pending``: numbers waiting for their calling window (read from the journal; 0 in
    #: a live snapshot, whose progress line asks the campaign instead).
    held: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` line)."""
        data = asdict(self)
        data["elapsed"] = round(self.elapsed, 3)
        return data


@dataclass(frozen=True, slots=True)
class Disposition:
    """Where one attempt leaves its number.

    ``state`` ``pending`` means provably not placed: ``requeue`` says the engine may try it
    again in this run; ``breaker`` (a reason) says the error concerns the token or instance,
    so dispatching must stop.
    """

    state: Literal["placed", "failed", "unknown", "pending"]
    status: int | None = None
    error: str | None = None
    requeue: bool = False
    breaker: str | None = None
    connection_failure: bool = False


_BREAKERS = (
    AuthenticationError,
    PermissionDeniedError,
    InstanceNotFoundError,
    InstanceNotConnectedError,
)


def classify(exc: Exception) -> Disposition | None:
    """Map a call's exception to a :class:`Disposition`; None for an unexpected exception.

    The mapping (CONTRACT "Campaign mapping"): 401/403/404/not-connected trip the breaker
    and leave the number pending, as does a failed shared quota (``QuotaBackendError``: nothing
    was sent); 429 and connection failures are provably not placed (back
    to pending, retried later; a non-retryable connection failure such as TLS trips the
    breaker at once); every ``OutcomeUnknownError`` (a hang-up, a timeout, an answer that
    is not RyzeAPI's envelope whatever its status or text) is unknown; everything else
    RyzeAPI refused is failed.
    """
    verdict: Disposition | None = None
    # First: "may have been placed" wins over any other class an error may also have.
    if isinstance(exc, OutcomeUnknownError):
        verdict = Disposition("unknown", exc.status, str(exc))
    elif isinstance(exc, _BREAKERS):
        verdict = Disposition("pending", exc.status, str(exc),
                          breaker=f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, QuotaBackendError):  # the shared quota is down: nothing was sent
        verdict = Disposition("pending", None, str(exc), breaker=f"QuotaBackendError: {exc}")
    elif isinstance(exc, RateLimitError):
        verdict = Disposition("pending", exc.status, str(exc), requeue=True)
    elif isinstance(exc, ConnectionFailedError):
        verdict = Disposition("pending", None, str(exc), requeue=True, connection_failure=True,
                          breaker=None if exc.retryable else f"ConnectionFailedError: {exc}")
    elif isinstance(exc, APIError):
        verdict = Disposition("failed", exc.status, str(exc))
    elif isinstance(exc, InvalidRequestError):
        verdict = Disposition("failed", None, str(exc))
    return verdict


HANDOFF_SIZE = 1


class Handoff:
    """A bounded queue whose producers are released, and their items dropped, once closed."""

    def __init__(self, size: int = HANDOFF_SIZE) -> None:
        self._items: collections.deque[CampaignOutcome] = collections.deque()
        self._size = size
        self._room = asyncio.Event()
        self._ready = asyncio.Event()
        self.closed = False  # the consumer left: outcomes go only to the journal
        self.ended = False  # the run is over: nothing more will be put

    async def put(self, item: CampaignOutcome) -> None:
        while len(self._items) >= self._size and not self.closed:
            self._room.clear()
            await self._room.wait()
        if not self.closed:
            self._items.append(item)
            self._ready.set()

    async def get(self) -> CampaignOutcome | None:
        """The next outcome, or None once the run ended and everything was taken."""
        while not self._items:
            if self.ended or self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        self._room.set()
        return self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._room.set()
        self._ready.set()

    def end(self) -> None:
        self.ended = True
        self._ready.set()


class Outcomes:
    """``async for outcome in campaign``: see the module docstring."""

    def __init__(self, handoff: Handoff, runner: asyncio.Task[CampaignSummary],
                 leave: Callable[[], None]) -> None:
        self._handoff = handoff
        self._runner = runner
        self._reported_before = False
        loop = runner.get_loop()
        self._finalizer = weakref.finalize(self, _leave_soon, loop, threading.get_ident(), leave)

    def __aiter__(self) -> Outcomes:
        return self

    async def __anext__(self) -> CampaignOutcome:
        try:
            item = await self._handoff.get()
        except BaseException:  # cancelled while waiting: the consumer is gone
            self._finalizer()
            raise
        if item is not None:
            return item
        self._finalizer()  # no-op once the run ended; stops it if we were closed meanwhile
        runner = self._runner
        if not self._reported_before and runner.done() and not runner.cancelled():
            self._reported_before = True
            if (exc := runner.exception()) is not None:
                raise exc  # the run's failure, once; then the iteration is over
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop the run (calls already sent may finish) and wait until it is recorded."""
        self._finalizer()
        await asyncio.wait({self._runner})


def _leave_soon(loop: asyncio.AbstractEventLoop, thread: int, leave: Callable[[], None]) -> None:
    # Runs where the iterator was dropped: usually inside the loop's thread (call at once, so
    # no worker takes a new number meanwhile); a collection elsewhere is handed to the loop.
    if threading.get_ident() == thread:
        leave()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(leave)


_DONE = ("placed", "failed", "unknown")


class LiveCounts:
    """Per-state counts (for progress bars), kept by :meth:`apply` from the store's events."""

    def __init__(self) -> None:
        self.total = self.duplicates = self.invalid = 0
        #: Of the skipped rows: those the operator's rules skipped, by rule.
        self.ruled: dict[str, int] = {"excluded": 0, "expired": 0}
        self.by_state: dict[str, int] = dict.fromkeys(("pending", "sending", *_DONE, "skipped"), 0)
        #: Outcomes (placed, failed or unknown) reached in this run, for rate and ETA.
        self.done_this_run = 0
        self.started = time.monotonic()

    def apply(self, event: JournalEvent) -> None:
        if isinstance(event, Moved):
            self.by_state[event.old] -= 1
            self._enter(event.new)
            if event.reason is not None:
                self.ruled[event.reason] += 1
        elif isinstance(event, Ingested):
            result = event.result
            # Entries already in the journal from an earlier pass add no row: not in ``total``.
            self.total += result.added + result.duplicates + len(result.invalid)
            self.by_state["pending"] += result.added + result.restored
            self.by_state["skipped"] -= result.restored
            self.duplicates += result.duplicates
            self.invalid += len(result.invalid)
        elif isinstance(event, Rebased):
            c = event.counts
            self.total, self.duplicates, self.invalid = c.total, c.duplicates, c.invalid
            self.by_state.update(pending=c.pending, sending=c.sending, placed=c.placed,
                                 failed=c.failed, unknown=c.unknown,
                                 skipped=c.removed + c.excluded + c.expired)
            self.ruled.update(excluded=c.excluded, expired=c.expired)

    def _enter(self, state: State) -> None:
        self.by_state[state] += 1
        if state in _DONE:
            self.done_this_run += 1

    def counts(self) -> JournalCounts:
        s = self.by_state
        return JournalCounts(
            total=self.total, pending=s["pending"], sending=s["sending"], placed=s["placed"],
            failed=s["failed"], unknown=s["unknown"], invalid=self.invalid,
            duplicates=self.duplicates, elapsed=0.0,
            removed=s["skipped"] - self.ruled["excluded"] - self.ruled["expired"],
            excluded=self.ruled["excluded"], expired=self.ruled["expired"],
        )

    def snapshot(self, stop_reason: StopReason | None = None, message: str = "") -> (
        CampaignSummary
    ):
        return summary_from_counts(self.counts(), time.monotonic() - self.started, stop_reason,
                                   message)


def summary_from_counts(
    counts: JournalCounts, elapsed: float, stop_reason: StopReason | None, message: str
) -> CampaignSummary:
    """The one place a :class:`CampaignSummary` is built (live or final)."""
    return CampaignSummary(
        total=counts.total, placed=counts.placed, failed=counts.failed, unknown=counts.unknown,
        pending=counts.pending,
        skipped=(counts.duplicates + counts.invalid + counts.removed + counts.excluded
                 + counts.expired),
        duplicates=counts.duplicates, invalid=counts.invalid, in_flight=counts.sending,
        elapsed=elapsed, stop_reason=stop_reason, message=message, removed=counts.removed,
        excluded=counts.excluded, expired=counts.expired, held=counts.held,
    )
