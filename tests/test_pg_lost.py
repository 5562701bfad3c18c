"""(#15) A PostgreSQL worker whose database goes away mid-campaign: it stops with its own exit
code (5, not 2, the usage error's), one clear line that never shows the password. A private
cluster is stopped under a real worker process; the fake server's record is the oracle."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async._cli._exits import EXIT_JOURNAL_LOST
from ryze_async.testing import FakeRyzeServer

asyncpg = pytest.importorskip("asyncpg")

pytestmark = pytest.mark.infra

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "s3cr3t-token-VALUE-never-printed"
PASSWORD = "hunter2-Db-Pass-Lost"  # trust authentication accepts it; never printed


def _postmaster(backend: int) -> int:
    """The postmaster of a backend process: its parent."""
    stat = Path(f"/proc/{backend}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def test_a_worker_that_loses_its_database_exits_5_with_one_line(
    ryze_server_factory: ServerFactory, tmp_path: Path,
) -> None:
    from .pg_cluster import PostgresUnavailableError, pg_cluster

    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("number\n" + "".join(f"55119{i:08d}\n" for i in range(40)))
    try:
        cluster = pg_cluster()
        dsn = cluster.__enter__()
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        scheme, rest = dsn.split("://", 1)
        user, host = rest.split("@", 1)
        url = f"{scheme}://{user}:{PASSWORD}@{host}"
        conn = await asyncpg.connect(dsn)
        postmaster = _postmaster(await conn.fetchval("SELECT pg_backend_pid()"))
        await conn.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
        env.update(RYZE_TOKEN=TOKEN, RYZE_INSTANCE="my-instance", RYZE_BASE_URL=server.url)
        # One call a second: the worker is mid-campaign for 40 s unless stopped.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ryze_async", "campaign", str(numbers), "--fake",
            "--journal", url, "--campaign", "lost", "--rate-limit", "1", "--rate-period", "1",
            "--reconnect-deadline", "1",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await server.wait_for_requests(2, timeout=60)
            os.kill(postmaster, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
            out, err = await asyncio.wait_for(proc.communicate(), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        cluster.__exit__(None, None, None)
    text = out.decode() + err.decode()
    assert proc.returncode == EXIT_JOURNAL_LOST, text
    assert PASSWORD not in text
    assert TOKEN not in text
    assert "Traceback" not in text
    lost = [line for line in err.decode().splitlines() if "lost" in line]
    assert len(lost) == 1, text
    assert "PostgreSQL" in lost[0]
    assert len(server.placed_calls) < 40
