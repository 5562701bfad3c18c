"""What a journal store reports and is asked to apply, as typed values (no string tags), and the
group commit that applies them.

``Op`` values are the writes the dispatcher queues (a claim for sending, an outcome);
``JournalEvent`` values are what the store reports once it applied them, so the campaign's live
counts are a fold over the store's own transitions (``outcomes.py``, ``LiveCounts``) and no caller
keeps them in step by hand.

Group commit (:class:`GroupCommit`, both stores): many ``sending`` marks and outcomes share a
commit. A mark's caller waits for the commit that includes it (the request may only go out after
it is durable); outcomes are queued without waiting. While one commit runs, everything queued
meanwhile accumulates and goes into the next one, so under load one durable commit covers many
calls and nothing waits for a timer. A failed or cancelled commit refuses every later mark: fail
closed, nothing more is sent through that journal."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, Literal, NamedTuple, TypeVar

from ... import JournalConnectionLostError
from ..inputs import person_key
from .schema import JournalCounts, JournalError

__all__ = [
    "REMOVED", "Batch", "Committed", "Decided", "Decision", "GroupCommit", "HoldRow",
    "IngestResult", "Ingested", "JournalEvent", "Known", "Listener", "MarkSending", "Moved", "Op",
    "Rebased", "RecordOutcome", "Row", "State", "batch_result", "restores", "resumed",
    "skip_reason", "swept",
]


State = Literal["pending", "sending", "placed", "failed", "unknown", "skipped"]


class Row(NamedTuple):
    """A row a store offers for calling (``pending_after``, a shared store's claim, a held row
    come due): its id, its number as stored, its input line."""

    id: int
    number: str
    line: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingested batch did: new pending rows, duplicates (of an entry seen earlier in
    this pass), the invalid entries (line, raw, why), and rows removed earlier that are back in
    the input (``restored``: skipped -> pending)."""

    added: int
    duplicates: int
    invalid: list[tuple[int, str, str]]
    restored: int = 0


# -- the ingest and resume rules: one pure core (rows in, decisions out) -------------------------
# Both stores and the dry run's replay (``dry_run.Book``) apply these; they only do the I/O
# around them (each store's SQL for a decision; the dry run, its in-memory snapshot), so the three
# cannot decide differently.

#: The error of a pending row that a finished pass did not see.
REMOVED = "removed from input: not in the numbers file any more, so not called"

#: What ingesting one valid entry does: a new ``pending`` row (``added``); a stored row seen again
#: in this pass, its state kept (``known``); a row removed earlier back in the input, ``pending``
#: again (``restored``); the same person seen already in this pass (``duplicate``: nothing).
Decision = Literal["added", "known", "restored", "duplicate"]


class Known(NamedTuple):
    """What ingest needs of a stored row: its state and the pass that last saw it."""

    state: str
    seen: int


class Decided(NamedTuple):
    """One valid entry of a batch and what ingesting it does."""

    decision: Decision
    number: str
    key: str
    line: int


def restores(state: str) -> bool:
    """Whether a stored row seen in the input again goes back to ``pending``: only a row never
    sent and removed (``skipped``); placed, failed, unknown and pending keep their state."""
    return state == "skipped"


def swept(state: str, seen: int, pass_no: int) -> bool:
    """Whether a valid row is removed when an open pass ends: still ``pending`` and not seen by
    this pass (the input no longer holds it). Nothing else is touched."""
    return state == "pending" and seen != pass_no


def resumed(state: str, retry: Collection[str]) -> str:
    """A row's state once a journal is opened for a new run: one left ``sending`` may have been
    placed, so it is ``unknown`` (never redialed automatically); ``retry`` names the states a
    person chose to call again (``failed``, ``unknown``), which are ``pending`` again."""
    state = "unknown" if state == "sending" else state
    return "pending" if state in retry else state


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of input entries, normalized: the valid ones (number, its person key, line) in
    input order, and the invalid ones (line, raw, why), which are stored ``failed``."""

    valid: list[tuple[str, str, int]]
    invalid: list[tuple[int, str, str]]

    @classmethod
    def read(cls, entries: Iterable[tuple[int, str]], normalize: Callable[[str], str]) -> Batch:
        valid: list[tuple[str, str, int]] = []
        invalid: list[tuple[int, str, str]] = []
        for at, raw in entries:
            try:
                number = normalize(raw)
            except ValueError as exc:
                invalid.append((at, raw, str(exc) or "invalid number"))
            else:
                valid.append((number, person_key(number), at))
        return cls(valid, invalid)

    def person_keys(self) -> list[str]:
        """The person keys whose stored rows :meth:`decide` needs."""
        return [key for _, key, _ in self.valid]

    def decide(self, known: Mapping[str, Known], pass_no: int) -> list[Decided]:
        """Each valid entry's decision, in input order, given the stored rows of its keys
        (``known``, as they were before this batch) and the open pass."""
        decided: list[Decided] = []
        batch: set[str] = set()
        for number, key, at in self.valid:
            row = known.get(key)
            if key in batch or (row is not None and row.seen == pass_no):
                decision: Decision = "duplicate"
            elif row is None:
                decision = "added"
            else:
                decision = "restored" if restores(row.state) else "known"
            decided.append(Decided(decision, number, key, at))
            batch.add(key)
        return decided


def batch_result(decided: list[Decided], invalid: list[tuple[int, str, str]],
                 added: int | None = None) -> IngestResult:
    """The :class:`IngestResult` of a decided batch (``added``: as the store counted its inserts,
    when another worker may have inserted a key first)."""
    count = collections.Counter(d.decision for d in decided)
    return IngestResult(count["added"] if added is None else added, count["duplicate"],
                        invalid, count["restored"])


@dataclass(frozen=True, slots=True)
class MarkSending:
    """Claim a pending row for sending (``pending -> sending``), stamped ``at``."""

    row_id: int
    at: float
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """Move a ``pending`` or ``sending`` row to ``state`` (``pending``: provably not sent)."""

    row_id: int
    state: State
    call_id: str | None = None
    status: int | None = None
    error: str | None = None
    #: The instance that sent it (None: keep the one the mark stored).
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class HoldRow:
    """Keep a row ``pending`` until ``until`` (Unix seconds; ``inf``: no window opens for it);
    a shared store also gives back this worker's claim on it."""

    row_id: int
    until: float


Op = MarkSending | RecordOutcome | HoldRow


@dataclass(frozen=True, slots=True)
class Moved:
    """A row went from ``old`` to ``new`` (committed)."""

    old: State
    new: State
    #: For a row skipped by the operator's rules: ``excluded`` or ``expired``.
    reason: Literal["excluded", "expired"] | None = None


class Committed:
    """A store's one record of the rows it committed ``sending`` and has not recorded since
    (may have been sent), and the event each committed write makes (both stores)."""

    def __init__(self) -> None:
        self._sending: set[int] = set()

    def marked(self, row_id: int) -> Moved:
        self._sending.add(row_id)
        return Moved("pending", "sending")

    def recorded(self, row_id: int, state: State, error: str | None) -> Moved:
        if row_id in self._sending:
            self._sending.discard(row_id)
            return Moved("sending", state)
        return Moved("pending", state, skip_reason(state, error))


def skip_reason(state: str, error: str | None) -> Literal["excluded", "expired"] | None:
    """Which rule skipped a row, from its error text (see ``schema.SKIP_REASON``)."""
    if state != "skipped" or error is None:
        return None
    if error.startswith("excluded:"):
        return "excluded"
    return "expired" if error.startswith("expired:") else None


@dataclass(frozen=True, slots=True)
class Ingested:
    """A batch of input was stored (committed)."""

    result: IngestResult


@dataclass(frozen=True, slots=True)
class Rebased:
    """The store counted its rows: these counts replace whatever was folded so far."""

    counts: JournalCounts


JournalEvent = Moved | Ingested | Rebased
Listener = Callable[[JournalEvent], None]


OpT = TypeVar("OpT")


class GroupCommit(Generic[OpT]):
    """Queues ops and commits them in batches through ``commit``, which returns the ids whose
    mark was refused; ``refused(row_id)`` is the error such a mark's caller gets."""

    def __init__(
        self,
        commit: Callable[[list[OpT]], Awaitable[set[int]]],
        refused: Callable[[int], JournalError],
    ) -> None:
        self._commit = commit
        self._refused = refused
        self._ops: list[OpT] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._broken: BaseException | None = None

    def check(self) -> None:
        if self._broken is not None:
            raise _failed(self._broken, "the journal cannot be written: {}")

    async def mark(self, row_id: int, op: OpT) -> None:
        """Queue the mark ``op`` of row ``row_id`` and wait until the commit holding it is done."""
        self.check()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ops.append(op)
        self._waiters.append((row_id, fut))
        self._kick()
        await fut

    def add(self, op: OpT) -> None:
        """Queue an op without waiting for it."""
        self._ops.append(op)
        self._kick()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        while True:
            if self._ops:
                self._kick()
            flusher = self._flusher
            if flusher is None or flusher.done():
                break
            await asyncio.shield(flusher)
        self.check()

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._ops:
            ops, waiters = self._ops, self._waiters
            self._ops, self._waiters = [], []
            try:
                refused = await self._commit(ops)
            except BaseException as exc:
                # Failed or cancelled: nothing more may be marked, so nothing more is sent.
                self._broken = exc if isinstance(exc, Exception) else JournalError("cancelled")
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(_failed(exc, "journal write failed: {!r}"))
                if not isinstance(exc, Exception):
                    raise
                return
            for row_id, fut in waiters:
                if fut.done():
                    continue
                if row_id in refused:
                    fut.set_exception(self._refused(row_id))
                else:
                    fut.set_result(None)


def _failed(exc: BaseException, message: str) -> JournalError:
    """The error a failed commit gives its callers: a lost connection stays one (the CLI's
    exit 5, not a usage error's 2), anything else is a JournalError quoting it."""
    if isinstance(exc, JournalConnectionLostError):
        return JournalConnectionLostError(str(exc))
    return JournalError(message.format(exc))
