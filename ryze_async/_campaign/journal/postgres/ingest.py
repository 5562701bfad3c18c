"""Ingestion into the PostgreSQL journal by many workers reading the same input.

The rules of the SQLite journal hold (``_journal_ingest.py``: passes, ``seen``, the sweep of
removed numbers to ``skipped``), plus what many readers need. Every ingest transaction locks
the campaign's row, so ingestion of one campaign is serialized; the stored resume point
(offset, line, digest) only moves forward, and a batch's entries at or before the stored line
were already ingested in this pass by some worker: they are dropped, not counted again as
duplicates. So each number enters once and each input line is counted once, however many
workers read the file. Inserts are ``ON CONFLICT (campaign, key) DO NOTHING`` as well.

A changed input starts a new pass only if nobody else started one since this worker read the
resume point (:func:`begin_pass` compares it): two workers that see the same edit start one
pass between them, not two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...persons import person_key
from .. import postgres as sql
from ..events import IngestResult
from ..sqlite.ingest import REMOVED

__all__ = ["begin_pass", "finish_pass", "ingest_rows"]


async def begin_pass(conn: Any, campaign: str, expected: tuple[int, int, str] | None) -> bool:
    """Start a new pass unless the stored resume point moved from ``expected``."""
    async with conn.transaction():
        row = await conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, campaign)
        stored = (row["ingest_offset"], row["ingest_line"], row["ingest_digest"])
        if expected is not None and stored != tuple(expected):
            return False
        # Invalid rows and the duplicate count describe the input: the new pass rebuilds them.
        await conn.execute("DELETE FROM ryze_numbers WHERE campaign = $1 AND NOT valid",
                           campaign)
        await conn.execute(sql.RESTART_INPUT, campaign)
    return True


async def finish_pass(conn: Any, campaign: str) -> int:
    """The input is exhausted: if a pass is open, rows it did not see are removed."""
    async with conn.transaction():
        row = await conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, campaign)
        if not row["sweep_due"]:
            return 0
        status = await conn.execute(sql.SWEEP_REMOVED, campaign, REMOVED, row["ingest_pass"])
        await conn.execute("UPDATE ryze_campaigns SET sweep_due = false WHERE campaign = $1",
                           campaign)
    return int(status.split()[-1])


def _split(entries: list[tuple[int, str]], normalize: Callable[[str], str]
           ) -> tuple[list[tuple[str, int]], list[tuple[int, str, str]]]:
    valid: list[tuple[str, int]] = []
    invalid: list[tuple[int, str, str]] = []
    for at, raw in entries:
        try:
            valid.append((normalize(raw), at))
        except ValueError as exc:
            invalid.append((at, raw, str(exc) or "invalid number"))
    return valid, invalid


def _classify(valid: list[tuple[str, int]], known: dict[str, tuple[str, int]], pass_no: int
              ) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]], int, int]:
    """(rows to insert, keys seen again, duplicates, restored) for one batch, in input order."""
    new: list[tuple[str, str, int]] = []
    again: list[tuple[str, int]] = []
    duplicates = restored = 0
    batch: set[str] = set()
    for number, at in valid:
        key = person_key(number)
        state_seen = known.get(key)
        if key in batch or (state_seen is not None and state_seen[1] == pass_no):
            duplicates += 1
        elif state_seen is None:
            new.append((number, key, at))
        else:
            again.append((key, at))
            restored += state_seen[0] == "skipped"
        batch.add(key)
    return new, again, duplicates, restored


async def ingest_rows(
    conn: Any, campaign: str, entries: list[tuple[int, str]], position: tuple[int, int, str],
    normalize: Callable[[str], str],
) -> IngestResult:
    """Store a batch and the resume point after it, in one transaction."""
    async with conn.transaction():
        head = await conn.fetchrow(sql.CAMPAIGN_FOR_UPDATE, campaign)
        pass_no, done_line = head["ingest_pass"], head["ingest_line"]
        # Lines up to the stored one are in already (this pass): another worker read them.
        valid, invalid = _split([e for e in entries if e[0] > done_line], normalize)
        keys = [person_key(number) for number, _ in valid]
        known = {r["key"]: (r["state"], r["seen"])
                 for r in await conn.fetch(sql.KNOWN_KEYS, campaign, keys)}
        new, again, duplicates, restored = _classify(valid, known, pass_no)
        added = 0
        if new:
            added = len(await conn.fetch(
                sql.INSERT_VALID, campaign, [n for n, _, _ in new], [k for _, k, _ in new],
                [at for _, _, at in new], pass_no))
        if again:
            await conn.execute(sql.SEE_AGAIN, campaign, [k for k, _ in again],
                               [at for _, at in again], pass_no)
        if invalid:
            await conn.execute(sql.INSERT_INVALID, campaign, [raw for _, raw, _ in invalid],
                               [at for at, _, _ in invalid], [why for _, _, why in invalid],
                               pass_no)
        offset, line, digest = position
        await conn.execute(sql.SET_POSITION, campaign, duplicates, offset, line, digest)
    return IngestResult(added, duplicates, invalid, restored)
