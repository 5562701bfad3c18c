"""(#19) A database connection that stalls without closing (a frozen network path or pooler: no
FIN, no RST, no answer) is bounded: a unit of a call's work unanswered for the lease is taken as
a lost connection, which is made again, and the work goes on; the heartbeat's own connection
likewise. Real PostgreSQL behind a byte-level proxy that freezes the connections open now."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from ryze_async import JournalConnectionLostError
from ryze_async._campaign.journal.postgres.store import PgStore

from .pg_proxy import PgProxy

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.infra

NUMBERS = [f"55119{i:08d}" for i in range(6)]
LEASE = 3.0


@pytest.fixture
async def proxied(pg_dsn: str) -> AsyncIterator[tuple[PgProxy, PgStore]]:
    proxy = PgProxy(pg_dsn)
    dsn = await proxy.start()
    store = await PgStore.open(dsn, campaign=f"c-{uuid.uuid4().hex[:10]}", lease=LEASE,
                               reconnect_deadline=20)
    await store.ingest(list(enumerate(NUMBERS, 1)), position=(0, len(NUMBERS), "d"),
                       normalize=lambda raw: raw)
    try:
        yield proxy, store
    finally:
        await asyncio.wait_for(store.close(), 30)
        await proxy.close()
        await proxy.close()


async def test_a_claim_on_a_frozen_connection_is_made_again_not_awaited_forever(
        proxied: tuple[PgProxy, PgStore]) -> None:
    proxy, store = proxied
    assert proxy.freeze() == 2  # the main connection and the heartbeat's
    rows = await asyncio.wait_for(store.claim(1), 3 * LEASE + 10)
    assert len(rows) == 1
    await asyncio.wait_for(store.mark_sending(rows[0][0]), 10)
    store.record(rows[0][0], "placed", call_id="x", status=200)
    counts = await asyncio.wait_for(store.counts(), 10)
    assert counts.placed == 1


async def test_a_frozen_heartbeat_connection_is_made_again_and_leases_renewed(
        proxied: tuple[PgProxy, PgStore]) -> None:
    proxy, store = proxied
    rows = await store.claim(2)
    assert len(rows) == 2
    proxy.freeze()
    # Unrenewed, the claims' leases run out within one lease and a mark is refused. The beat's
    # wait is bounded and a new heartbeat connection renews them in time.
    await asyncio.sleep(2.5 * LEASE)
    await asyncio.wait_for(store.mark_sending(rows[0][0]), 3 * LEASE + 10)
    assert store.beats >= 3


async def test_frozen_past_the_deadline_raises_connection_lost(pg_dsn: str) -> None:
    proxy = PgProxy(pg_dsn)
    dsn = await proxy.start()
    store = await PgStore.open(dsn, campaign=f"c-{uuid.uuid4().hex[:10]}", lease=LEASE,
                               reconnect_deadline=1)
    try:
        assert proxy.freeze() == 2
        proxy.refuse()  # and no new connection gets through
        with pytest.raises(JournalConnectionLostError):
            await asyncio.wait_for(store.claim(1), 3 * LEASE + 10)
    finally:
        await asyncio.wait_for(store.close(), 30)
        await proxy.close()
