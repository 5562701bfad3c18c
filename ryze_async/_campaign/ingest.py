"""A campaign's ingest task: stream the input into the journal, resuming where it stopped.

When the source cannot resume where the journal stopped (the CSV changed, or an iterable), a
new pass over the input begins (``_journal/_ingest.py``), and ``ready`` (the feeder's go)
stays clear until the pass ends and the pending rows the input no longer holds are swept to
``skipped``: a row the user removed is never dialed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .. import normalize_number
from .inputs import NumberSource, Position
from .journal import JournalStore
from .outcomes import CampaignOutcome

__all__ = ["ingest_input"]

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
