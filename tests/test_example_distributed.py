"""examples/distributed.py in its quick mode: real redis-server, PostgreSQL, the sandbox and two
worker processes; its report and chart must agree with the quota (issue 19)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ryze_async.testing._redis_server import REDIS_SERVER

from .pg_cluster import DSN_ENV, PostgresUnavailableError, find_bindir

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")
pytest.importorskip("asyncpg", reason="the PostgreSQL journal needs the 'postgres' extra")
pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parent.parent


def test_the_distributed_example_keeps_the_quota_and_calls_nobody_twice(tmp_path: Path) -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    try:
        find_bindir()
    except PostgresUnavailableError as exc:
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if k != DSN_ENV and not k.startswith("RYZE_")}
    svg = tmp_path / "run.svg"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "distributed.py"), "--quick", "--svg", str(svg)],
        env=env, capture_output=True, text=True, timeout=170, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "requests at the sandbox: 12" in out
    assert "called twice: nobody" in out
    most = re.search(r"most in any sliding 0\.5 s window: (\d+) \(limit 4\)", out)
    assert most is not None, out
    assert 1 <= int(most[1]) <= 4
    windows = re.search(r"per 0\.5 s window: ([\d ]+)", out)
    assert windows is not None
    counts = [int(n) for n in windows[1].split()]
    assert sum(counts) == 12
    assert max(counts) <= 4
    chart = svg.read_text(encoding="utf-8")
    assert chart.count("<circle") == 12 + 1  # a dot per request, one in the legend
    assert "limit: 4 per 0.5 s" in chart
