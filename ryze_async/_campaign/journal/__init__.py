"""The journal-store seam: what a campaign needs from the place its numbers live.

A store holds each number of one campaign in a state, ``pending -> sending -> placed | failed |
unknown`` (``skipped``: removed from the input, never sent), and is the only thing that decides
who may be dialed. :class:`JournalStore` is what the dispatcher uses; the SQLite store
(``sqlite/store.py``, one file per campaign, one process at a time) and the PostgreSQL store
(``postgres/store.py``, several workers on one campaign) implement it;
:func:`open_journal` picks one from the ``journal`` target. Both keep the rules below, which
the dispatcher relies on.

- ``ingest`` is idempotent per number (dedupe key: digits, JID suffix dropped) and stores the
  input position (offset, line, digest of what was read) in the same transaction as the batch,
  so a resumed run seeks past it; ``begin_pass`` / ``finish_pass`` / ``sweep_due`` handle an
  input that changed (a pending row it no longer holds becomes ``skipped``, and nothing is
  dispatched until that sweep is done).
- ``pending_after`` offers candidates in input order, above the feeder's cursor (a shared
  store ignores it and claims): a row that becomes pending while a run dispatches (a removed
  number appended back) must take an id above every existing one, or the feeder, already past
  its old id, would never offer it in this run; ``mark_sending`` is the claim: it commits
  ``pending -> sending`` durably and returns only then (the first byte goes out after it), and
  raises :class:`JournalError` if the row was not pending (someone else has it: do not send). A
  store shared by several workers claims with ``FOR UPDATE SKIP LOCKED`` and gives rows a
  lease decided by the database's clock; a claim never marked returns to pending when its lease
  ends, a row left ``sending`` by a dead worker becomes ``unknown``.
- ``hold`` keeps a row ``pending`` until its calling window opens (``not_before``, durable,
  not awaited; a shared store gives the claim back, so any worker may take the row then):
  ``pending_after`` skips held rows, ``due`` offers (a shared store: claims) those whose time
  has come, ``next_due`` says when the first comes due, and ``hold_rules`` forgets every hold
  when the rules that computed them changed (the rows are judged again).
- ``mark_sending`` and ``record`` take the ``sender`` (the instance the call goes through, never
  a token), stored with the row so the export and the report say who placed each call.
- ``record`` queues an outcome (or ``pending``: provably not sent) without waiting; ``flush``
  waits for everything queued. If the process dies first the row stays ``sending`` and is
  recovered as ``unknown`` at the next open (``recovered``): never redialed automatically.
- ``export_csv``, ``export_jsonl`` (owner-only files) and ``report_data`` (``report --html``)
  read the same rows the same way in both stores: one campaign reads the same from either.
- ``watch`` reports committed transitions (:data:`JournalEvent`) so live counts are a fold over
  the store's own events; ``counts`` is the authoritative count (and is reported as ``Rebased``).
- Opening checks the campaign identity (call kind, media fingerprint, instance): a journal that
  may have placed calls for another identity raises ``JournalMismatchError`` unless forced.
- ``settle_rules`` compares a run's rules with the campaign's recorded ones and records what
  the run uses (``recorded_rules.py``; a differing rule is refused unless changed on purpose);
  ``rule_changes`` is the audit trail of those changes.

Which store a ``journal`` target names, and how a target may be shown, is decided here too,
as are the dry run's read-only looks (``peek_journal``, ``peek_rules``):
``sqlite/report.py`` reads SQLite, ``postgres/report.py`` PostgreSQL.

A ``postgresql://`` (or ``postgres://``) URL names a PostgreSQL database that holds many
campaigns (one is named by ``campaign``); anything else is a path to a SQLite journal file.
asyncpg is imported only when a PostgreSQL target is opened (the ``postgres`` extra).
A URL is never shown with its password: every message, repr and log uses :func:`describe`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

from ... import ClaimLostError
from ..._urls import scrub, shown_url
from .events import (
    HoldRow,
    Ingested,
    IngestResult,
    JournalEvent,
    Listener,
    MarkSending,
    Moved,
    Op,
    Rebased,
    RecordOutcome,
    Row,
    State,
)
from .postgres import DEFAULT_LEASE, DEFAULT_RECONNECT_DEADLINE
from .recorded_rules import CampaignRules, OptOutList, RuleChange, Settled
from .schema import (
    CampaignIdentity,
    JournalCounts,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
)
from .sqlite.report import JournalSnapshot, ReportData, peek_sqlite, peek_sqlite_rules
from .sqlite.store import Journal

if TYPE_CHECKING:
    from .postgres.store import PgStore

__all__ = [
    "CampaignIdentity",
    "CampaignRules",
    "ClaimLostError",
    "HoldRow",
    "IngestResult",
    "Ingested",
    "Journal",
    "JournalCounts",
    "JournalError",
    "JournalEvent",
    "JournalLockedError",
    "JournalMismatchError",
    "JournalStore",
    "Listener",
    "MarkSending",
    "Moved",
    "Op",
    "OptOutList",
    "Rebased",
    "RecordOutcome",
    "ReportData",
    "Row",
    "RuleChange",
    "Settled",
    "State",
    "describe",
    "is_database_url",
    "open_journal",
    "open_postgres",
    "peek_journal",
    "peek_rules",
    "scrub",
    "shown_url",
]


_SCHEMES = ("postgresql", "postgres")
INSTALL = 'the PostgreSQL journal needs asyncpg: pip install "ryze-async[postgres]"'


def is_database_url(target: object) -> bool:
    """True if ``target`` names a PostgreSQL journal rather than a file."""
    if not isinstance(target, str) or "://" not in target:
        return False
    return target.split("://", 1)[0].lower() in _SCHEMES


def describe(target: str | os.PathLike[str]) -> str:
    """The target as it may be shown: a path, or a URL without its password (`shown_url`)."""
    if not is_database_url(target):
        return os.fspath(target)
    return shown_url(str(target))


async def open_postgres(
    url: str, *, campaign: str | None, identity: CampaignIdentity | None, force: bool,
    read_only: bool, lease: float = DEFAULT_LEASE,
    reconnect_deadline: float = DEFAULT_RECONNECT_DEADLINE,
) -> PgStore:
    """Open one campaign of a PostgreSQL journal (see ``postgres/store.py``)."""
    if not campaign:
        raise JournalError(f"{describe(url)} holds many campaigns: name one (--campaign NAME, "
                           "or campaign= in Python)")
    try:
        from .postgres.store import PgStore  # noqa: PLC0415 - asyncpg only when used
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "asyncpg":
            raise
        raise JournalError(INSTALL) from None
    try:
        return await PgStore.open(url, campaign=campaign, identity=identity, force=force,
                                  read_only=read_only, lease=lease,
                                  reconnect_deadline=reconnect_deadline)
    except JournalError as exc:
        if scrub(str(exc), url) == str(exc):
            raise
        raise type(exc)(scrub(str(exc), url)) from None
    except (ValueError, TypeError, OSError) as exc:
        # asyncpg's own parsing errors may quote the URL: never its password, never the chain.
        raise JournalError(f"{describe(url)} is not a usable journal: "
                           f"{scrub(str(exc), url)}") from None


async def peek_journal(target: str | Path, campaign: str | None) -> JournalSnapshot | None:
    """The journal ``target`` names, read-only; None if there is none yet (``sqlite/report.py``)."""
    if isinstance(target, Path):
        return await asyncio.to_thread(peek_sqlite, target)
    from .postgres.report import peek_postgres  # noqa: PLC0415 - asyncpg only when used

    return await peek_postgres(target, campaign or "")


async def peek_rules(target: str | Path, campaign: str | None) -> CampaignRules | None:
    """The rules the journal ``target`` records, read-only; None if it records none (or there
    is no journal yet)."""
    if isinstance(target, Path):
        return await asyncio.to_thread(peek_sqlite_rules, target)
    from .postgres.report import peek_postgres_rules  # noqa: PLC0415 - asyncpg only when used

    return await peek_postgres_rules(target, campaign or "")


class JournalStore(Protocol):
    """What the campaign engine and dispatcher need from a journal (see the module docstring)."""

    #: Rows found ``sending`` at open (a crash) and turned ``unknown``.
    recovered: int
    #: True if other workers may take rows too: then ``pending_after`` claims what it returns
    #: (ask for about what can be sent soon) and ``mark_sending`` may raise ``ClaimLostError``.
    shared: bool

    async def close(self) -> None: ...
    async def watch(self, listener: Listener) -> None: ...
    async def ingest_position(self) -> tuple[int, int, str]: ...
    async def ingest(
        self, entries: list[tuple[int, str]], *, position: tuple[int, int, str],
        normalize: Callable[[str], str],
    ) -> IngestResult: ...
    async def begin_pass(self, expected: tuple[int, int, str] | None = None) -> bool: ...
    async def finish_pass(self) -> int: ...
    async def sweep_due(self) -> bool: ...
    async def pending_after(self, after_id: int, limit: int) -> list[Row]: ...
    async def held_elsewhere(self) -> int: ...
    def hold(self, row_id: int, until: float) -> None: ...
    async def due(self, now: float, after: tuple[float, int],
                  limit: int) -> list[tuple[int, str, int, float]]: ...
    async def next_due(self, after: tuple[float, int] = ...) -> float | None: ...
    async def held_counts(self, now: float) -> tuple[int, int]: ...
    async def hold_rules(self, rules: str) -> int: ...
    async def settle_rules(self, given: CampaignRules, *, change: bool, now: datetime,
                           inherited: Collection[str] = ()) -> Settled: ...
    async def rule_changes(self) -> list[RuleChange]: ...
    async def mark_sending(self, row_id: int, *, sender: str | None = None) -> None: ...
    def record(
        self, row_id: int, state: State, *, call_id: str | None = None,
        status: int | None = None, error: str | None = None, sender: str | None = None,
    ) -> None: ...
    async def flush(self) -> None: ...
    async def counts(self) -> JournalCounts: ...
    async def retry(self, states: Iterable[Literal["failed", "unknown"]]) -> int: ...
    async def add_elapsed(self, seconds: float) -> None: ...
    async def export_csv(self, out: str | os.PathLike[str] | TextIO) -> int: ...
    async def export_jsonl(self, out: str | os.PathLike[str] | TextIO) -> int: ...
    async def report_data(self) -> ReportData: ...


async def open_journal(
    target: str | os.PathLike[str], *, identity: CampaignIdentity | None = None,
    force: bool = False, create: bool = True, read_only: bool = False,
    synchronous: Literal["full", "normal"] = "full", campaign: str | None = None,
    lease: float = DEFAULT_LEASE, reconnect_deadline: float = DEFAULT_RECONNECT_DEADLINE,
) -> JournalStore:
    """Open the store a ``journal`` target names: a ``postgresql://`` URL opens ``campaign``
    in that database (``postgres/store.py``: many workers; asyncpg needed), a path the SQLite file.

    Opening recovers rows left ``sending`` (``recovered``) and checks ``identity`` unless
    ``read_only`` (a report on a running campaign). ``lease`` and ``reconnect_deadline`` are a
    PostgreSQL worker's (``postgres/store.py``); a SQLite journal has neither.
    """
    if is_database_url(target):
        return await open_postgres(str(target), campaign=campaign, identity=identity,
                                   force=force, read_only=read_only, lease=lease,
                                   reconnect_deadline=reconnect_deadline)
    if campaign is not None:
        raise ValueError("campaign= names a campaign in a PostgreSQL journal; a journal file "
                         "holds one campaign: leave it out")
    return await Journal.open(target, identity=identity, force=force, create=create,
                              read_only=read_only, synchronous=synchronous)
