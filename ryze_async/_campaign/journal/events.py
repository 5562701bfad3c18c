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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, NamedTuple, TypeVar

from ... import JournalConnectionLostError
from .schema import JournalCounts, JournalError

__all__ = [
    "GroupCommit", "HoldRow", "IngestResult", "Ingested", "JournalEvent", "Listener", "MarkSending",
    "Moved", "Op", "Rebased", "RecordOutcome", "Row", "State", "skip_reason",
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
