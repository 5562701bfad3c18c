"""Part (b) of benchmarks/campaign.py: the journal alone, driven the way the campaign drives it.

Numbers ingested in batches, a feeder reading ``pending_after`` pages into a queue, N workers each
awaiting ``mark_sending`` (its group commit durable) before a simulated request (one event-loop
turn), then queueing the outcome with ``record``; timed until ``flush``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Literal

from _campaign_input import raw_number
from _report import ruled

from ryze_async import normalize_number
from ryze_async._campaign.journal import Journal

JOURNAL_TARGET = 5000.0


def remove_journal(path: Path) -> None:
    """Delete a journal with its WAL files: runs are many, the temporary disk is not."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def journal_run(path: Path, size: int, workers: int,
                      synchronous: Literal["full", "normal"]) -> dict[str, float]:
    journal = await Journal.open(path, synchronous=synchronous)
    try:
        for start in range(0, size, 1000):
            entries = [(i + 2, raw_number(i)) for i in range(start, min(start + 1000, size))]
            await journal.ingest(entries, position=(0, start, ""), normalize=normalize_number)
        queue: asyncio.Queue[tuple[int, str, int] | None] = asyncio.Queue(maxsize=workers)

        async def feed() -> None:
            # As the campaign's feeder: pages of pending rows in input order.
            cursor = 0
            while rows := await journal.pending_after(cursor, max(100, workers * 4)):
                for row in rows:
                    await queue.put(row)
                cursor = rows[-1][0]
            for _ in range(workers):
                await queue.put(None)

        async def work() -> None:
            while (row := await queue.get()) is not None:
                row_id, number, _ = row
                await journal.mark_sending(row_id)  # durable before the "request"
                await asyncio.sleep(0)  # the request
                journal.record(row_id, "placed", call_id=f"AC{number}", status=200)

        commits = journal.commits
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(feed(), *(work() for _ in range(workers)))
        await journal.flush()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        counts = await journal.counts()
        return {"rate": size / wall, "cpu_us": cpu / size * 1e6,
                "per_commit": size / (journal.commits - commits),
                "placed": counts.placed, "other": counts.pending + counts.sending
                + counts.failed + counts.unknown}
    finally:
        await journal.close()


def journal_bench(tmp: Path, size: int, worker_counts: list[int], repeats: int,
                  failures: list[str]) -> list[str]:
    lines = ruled(f"(b) journal alone: {size:,} numbers, mark_sending committed before each "
                  f"simulated request, outcome recorded after; median of {repeats} runs",
                  f"{'workers':>7} {'synchronous':>11} {'outcomes/s':>10} {'CPU us/outcome':>14} "
                  f"{'marks/commit':>12} {'x FULL':>7}")
    full_rates: dict[int, float] = {}
    for workers in worker_counts:
        for sync in ("full", "normal"):
            samples = []
            for n in range(repeats):
                path = tmp / f"journal-bench-{workers}-{sync}-{n}.db"
                r = asyncio.run(journal_run(path, size, workers, sync))
                remove_journal(path)
                if r["placed"] != size or r["other"] != 0:
                    failures.append(f"journal {workers} workers {sync}: {r}")
                samples.append(r)
            rate = statistics.median(s["rate"] for s in samples)
            full_rates.setdefault(workers, rate)
            lines.append(f"{workers:7} {sync.upper():>11} {rate:10,.0f} "
                         f"{statistics.median(s['cpu_us'] for s in samples):14.1f} "
                         f"{statistics.median(s['per_commit'] for s in samples):12.1f} "
                         f"{rate / full_rates[workers]:7.2f}")
    for workers, rate in full_rates.items():
        verdict = "met" if rate >= JOURNAL_TARGET else "NOT met"
        lines.append(f"  target (synchronous=FULL, {workers} workers): {rate:,.0f} outcomes/s "
                     f"(>= {JOURNAL_TARGET:,.0f}: {verdict})")
    return lines
