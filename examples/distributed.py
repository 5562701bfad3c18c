"""A distributed campaign on one machine: Redis, PostgreSQL, the sandbox and N workers.

Starts, all on 127.0.0.1: a throw-away redis-server (the shared quota), a throw-away PostgreSQL
cluster (the campaign's journal; as root, initdb runs as the ``postgres`` user, see
tests/pg_cluster.py, which this script uses from the checkout), the sandbox (the fake RyzeAPI
server, which never refuses here, so an excess would show in its record instead of being
refused), and N ``ryze-async campaign`` worker processes on one campaign:

    ryze-async campaign numbers.csv --fake --campaign demo \\
        --journal postgresql://... --quota-url redis://... --rate-limit L --rate-period P

Then it reads the sandbox's record against the quota: the requests in each fixed window of
the period, the most in any sliding window, and whether any number was called twice; with
``--svg PATH`` it draws the same as a chart (docs/quota_across_processes.py's drawing).

    python examples/distributed.py                    # 3 workers, 60 numbers, 10 per 2 s
    python examples/distributed.py --quick --svg run.svg

Needs redis-server, PostgreSQL's server binaries, and the ``redis`` and ``postgres`` extras.
Nothing leaves the machine. Exits 1 if the record broke the quota or called anyone twice.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ryze_async.testing import FakeRyzeServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/pg_cluster.py: a cluster as an unprivileged user

from tests.pg_cluster import pg_cluster  # noqa: E402

TOKEN = "distributed-demo-token"  # noqa: S105 - the sandbox's token
INSTANCE = "demo"
WORKER_TIMEOUT = 300.0  # seconds: a worker that takes longer is killed and the run fails


@dataclass(frozen=True)
class Plan:
    workers: int
    numbers: int
    limit: int
    period: float


FULL, QUICK = Plan(3, 60, 10, 2.0), Plan(2, 12, 4, 0.5)


@dataclass(frozen=True)
class Record:
    """The sandbox's record: seconds since the first request, and the number called."""

    arrivals: list[tuple[float, str]]

    def per_window(self, period: float) -> list[int]:
        """Requests in each fixed window of `period` from the first request."""
        counts = Counter(int(t // period) for t, _ in self.arrivals)
        return [counts[i] for i in range(max(counts) + 1)] if counts else []

    def most_in_any_window(self, period: float) -> int:
        """The most requests in any sliding window of `period` (closed at both ends)."""
        times = [t for t, _ in self.arrivals]
        return max((sum(1 for u in times[i:] if u - t <= period) for i, t in
                    enumerate(times)), default=0)

    def called_twice(self) -> list[str]:
        return sorted(n for n, c in Counter(n for _, n in self.arrivals).items() if c > 1)


def _env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RYZE_")}
    path = os.environ.get("PYTHONPATH")
    return {**clean, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


async def _worker(command: list[str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ryze_async", *command, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), WORKER_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "timed out"
    return proc.returncode or 0, out.decode(errors="replace")


async def run(plan: Plan, directory: Path) -> Record:
    numbers = directory / "numbers.csv"
    numbers.write_text("number\n" + "".join(f"55119{i:08d}\n" for i in range(plan.numbers)),
                       encoding="utf-8")
    with RedisServer() as redis, pg_cluster() as journal:
        async with FakeRyzeServer(token=TOKEN, instances=(INSTANCE,), rate_limit=None) as sandbox:
            command = ["campaign", str(numbers), "--fake", "--campaign", "demo",
                       "--journal", journal, "--quota-url", redis.url, "--token", TOKEN,
                       "--instance", INSTANCE, "--base-url", sandbox.url,
                       "--rate-limit", str(plan.limit), "--rate-period", str(plan.period)]
            results = await asyncio.gather(*(_worker(command) for _ in range(plan.workers)))
            for code, out in results:
                if code != 0:
                    raise SystemExit(f"a worker exited {code}:\n{out}")
            calls = sorted((r.received_at, r.json["number"]) for r in sandbox.requests
                           if r.route == "fake")
    first = calls[0][0] if calls else 0.0
    return Record([(t - first, n) for t, n in calls])


def report(record: Record, plan: Plan) -> bool:
    """Print the record against the quota; True when it kept it."""
    windows = record.per_window(plan.period)
    most = record.most_in_any_window(plan.period)
    twice = record.called_twice()
    print(f"{plan.workers} workers, {plan.numbers} numbers, quota {plan.limit} per "
          f"{plan.period:g} s, shared through Redis; journal on PostgreSQL")
    print(f"requests at the sandbox: {len(record.arrivals)}")
    print(f"per {plan.period:g} s window: {' '.join(map(str, windows))}")
    print(f"most in any sliding {plan.period:g} s window: {most} (limit {plan.limit})")
    print(f"called twice: {', '.join(twice) if twice else 'nobody'}")
    return most <= plan.limit and not twice and len(record.arrivals) == plan.numbers


def write_svg(record: Record, plan: Plan, path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "quota_chart", ROOT / "docs" / "quota_across_processes.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("docs/quota_across_processes.py is missing from the checkout")
    chart = importlib.util.module_from_spec(spec)
    sys.modules["quota_chart"] = chart  # its dataclass looks itself up there
    spec.loader.exec_module(chart)
    title = f"{plan.workers} workers, one campaign on PostgreSQL, one shared Redis quota"
    run_ = chart.Run(title, [(t, 0) for t, _ in record.arrivals], plan.limit, plan.period)
    path.write_text(chart.draw([run_], ["a request (any worker)"]), encoding="utf-8")
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 workers, 12 numbers, 4 per 0.5 s")
    parser.add_argument("--workers", type=int, help="worker processes (default 3)")
    parser.add_argument("--svg", type=Path, help="also draw the record as an SVG chart here")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.workers:
        plan = Plan(args.workers, plan.numbers, plan.limit, plan.period)
    with tempfile.TemporaryDirectory(prefix="ryze-distributed-") as directory:
        record = asyncio.run(run(plan, Path(directory)))
    kept = report(record, plan)
    if args.svg is not None:
        write_svg(record, plan, args.svg)
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
