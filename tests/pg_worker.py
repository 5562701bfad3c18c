"""A worker process for the PostgreSQL journal tests: ``python tests/pg_worker.py ROLE DSN
CAMPAIGN ...``; prints one JSON line when it has done its part.

Roles: ``ingest N BATCH`` ingests numbers 1..N (each worker the same input) and prints nothing
else; ``claim LIMIT`` claims in a loop until nothing is left, placing each number, and prints
the ids it placed; ``hold CLAIM`` claims CLAIM numbers, marks the first one ``sending`` and
prints the ids, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from ryze_async._campaign.journal.postgres.store import PgStore


def numbers(n: int) -> list[tuple[int, str]]:
    return [(i, f"+4930{i:07d}") for i in range(1, n + 1)]


def identity(raw: str) -> str:
    return raw


async def ingest(dsn: str, campaign: str, n: int, batch: int) -> None:
    journal = await PgStore.open(dsn, campaign=campaign)
    try:
        entries = numbers(n)
        for start in range(0, n, batch):
            chunk = entries[start:start + batch]
            last = chunk[-1][0]
            await journal.ingest(chunk, position=(last * 10, last, f"d{last}"),
                                 normalize=identity)
    finally:
        await journal.close()
    print(json.dumps({"done": True}), flush=True)


async def claim(dsn: str, campaign: str, limit: int) -> None:
    journal = await PgStore.open(dsn, campaign=campaign)
    placed: list[int] = []
    try:
        while rows := await journal.claim(limit):
            for row_id, _, _ in rows:
                await journal.mark_sending(row_id, sender=journal.worker)
                journal.record(row_id, "placed", call_id=f"c{row_id}", status=200)
                placed.append(row_id)
    finally:
        await journal.close()
    print(json.dumps({"placed": placed}), flush=True)


async def hold(dsn: str, campaign: str, count: int) -> None:
    journal = await PgStore.open(dsn, campaign=campaign)
    rows = await journal.claim(count)
    await journal.mark_sending(rows[0][0])
    print(json.dumps({"worker": journal.worker, "ids": [r[0] for r in rows]}), flush=True)
    await asyncio.Event().wait()  # until SIGKILL


def main() -> None:
    role, dsn, campaign, *rest = sys.argv[1:]
    args = [int(x) for x in rest]
    if role == "ingest":
        asyncio.run(ingest(dsn, campaign, *args))
    elif role == "claim":
        asyncio.run(claim(dsn, campaign, *args))
    else:
        asyncio.run(hold(dsn, campaign, *args))


if __name__ == "__main__":
    main()
