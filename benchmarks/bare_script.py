"""A campaign against the bare script a user would write instead: CSV -> aiohttp -> SQLite.

Both read the same CSV of N distinct numbers and call each once against the same
``FakeRyzeServer`` (loopback, in its own process, no rate limit), with the same wire policy (a
fresh connection per call, the client's default) and the same concurrency (10, the CLI's default):

- **bare script** (``--child bare``, below): ``csv``, ``sqlite3`` (WAL, ``synchronous=FULL`` as
  the journal's default), ``aiohttp``. Per number: the ``sending`` row committed (one fsynced
  transaction, on the event loop's thread) before the POST; the answer's state written after it,
  committed with the next number's mark (one fsync per number, as the cheapest durable script
  would). No number check, no quota, no resume, no progress: the floor a campaign is measured
  against.
- **RyzeClient alone** (``--child client``): the same calls through ``RyzeClient.fake_call``
  (quota lifted), no journal: what the client costs over raw aiohttp, and so what the campaign
  and its journal cost over the client.
- **ryze-async campaign**: the real CLI, ``python -m ryze_async campaign CSV --journal J --fake``,
  client quota lifted (``--rate-limit 1000000 --rate-period 1``).

Each variant runs as a fresh process, once with 1 number and once with N, interleaved over the
rounds. The child's CPU (user + sys, every thread: ``os.wait4``'s rusage) and wall time are taken
by the parent. Per number, the *marginal* cost: ``(cpu(N) - cpu(1)) / (N - 1)``; numbers per
second likewise ``(N - 1) / (wall(N) - wall(1))`` (process start and teardown cancel out).
Start-up CPU: the whole 1-number run (interpreter, imports, opening the journal, one call,
closing). Medians over rounds; ratios against the bare script of the same run.

Targets (issue 18): campaign CPU per number <= 1.3x the bare script's, numbers per second >= 0.8x,
start-up CPU <= 1.5x.

    python benchmarks/bare_script.py            # N = 2000, 5 rounds (~1 min on 2 cores)
    python benchmarks/bare_script.py --quick    # CI smoke (~20 s): checks, not timings

Every mode checks: each run's server record holds each of its numbers exactly once and no other
(the campaign exits 0). Exit 1 on a failed check, or (full mode) on a missed target.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from _loopback import ServerProcess, answer_commands
from _report import finish, machine, ruled

TOKEN = "bench-token"
INSTANCE = "bench"
CONCURRENCY = 10
TARGETS = {"cpu": 1.3, "rate": 0.8, "startup": 1.5}


# -- the bare script (run as a child: ``--child bare CSV DB URL``) ------------------------------

async def bare(csv_path: str, db_path: str, url: str) -> None:
    """What a user writes without the library: read, mark, post, record."""
    import csv  # noqa: PLC0415 - the child imports only what a bare script would
    import sqlite3  # noqa: PLC0415

    import aiohttp  # noqa: PLC0415

    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS numbers(id INTEGER PRIMARY KEY, number TEXT UNIQUE, "
               "state TEXT, call_id TEXT, status INTEGER)")
    with open(csv_path, newline="") as f:  # noqa: ASYNC230 - what a bare script does, once
        rows = iter(list(csv.reader(f))[1:])
    endpoint = f"{url}/api/call/fake/{INSTANCE}"
    connector = aiohttp.TCPConnector(force_close=True)  # a fresh connection per call
    async with aiohttp.ClientSession(connector=connector, headers={"token": TOKEN}) as session:

        async def worker() -> None:
            for row in rows:
                number = "".join(ch for ch in row[0] if ch.isdigit())
                db.execute("INSERT INTO numbers(number, state) VALUES (?, 'sending') "
                           "ON CONFLICT(number) DO UPDATE SET state = 'sending'", (number,))
                db.commit()  # durable before the first byte (with the outcomes written since)
                async with session.post(endpoint, json={"number": number}) as resp:
                    answer = await resp.json()
                state = "placed" if resp.status == 200 and answer.get("success") else "failed"
                db.execute("UPDATE numbers SET state = ?, call_id = ?, status = ? "
                           "WHERE number = ?", (state, answer.get("callId"), resp.status, number))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    db.commit()
    db.close()


async def client_alone(csv_path: str, db_path: str, url: str) -> None:
    """The same calls through ``RyzeClient`` alone (no journal, no campaign): splits the
    campaign's cost into the client's and the campaign's own."""
    import csv  # noqa: PLC0415

    from ryze_async import RyzeClient  # noqa: PLC0415

    del db_path  # nothing is recorded
    with open(csv_path, newline="") as f:  # noqa: ASYNC230 - once, as the bare script does
        rows = iter(list(csv.reader(f))[1:])
    async with RyzeClient(TOKEN, INSTANCE, base_url=url, rate_limit=None) as client:

        async def worker() -> None:
            for row in rows:
                await client.fake_call(row[0])

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


CHILDREN = {"bare": bare, "client": client_alone}


# -- the server process -------------------------------------------------------------------------

def serve(conn: Connection) -> None:
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    from ryze_async.testing import FakeRyzeServer  # noqa: PLC0415 - the server process only

    server = FakeRyzeServer(token=TOKEN, instances=(INSTANCE,), rate_limit=None)
    await server.start()

    def stats() -> dict[str, int]:
        placed: dict[str, int] = {}
        for record in server.placed_calls:
            number = str((record.json or {}).get("number"))
            placed[number] = placed.get(number, 0) + 1
        seen = {"requests": len(server.requests), "placed": sum(placed.values()),
                "distinct": len(placed), "max_per_number": max(placed.values(), default=0)}
        server.reset()
        return seen

    await answer_commands(conn, server.url, stats, server.stop)


# -- the parent ---------------------------------------------------------------------------------

def write_csv(path: Path, size: int) -> None:
    with path.open("w") as f:
        f.write("number,name\n")
        for i in range(size):
            f.write(f"+55 11 9{i // 10000:04d}-{i % 10000:04d},Person {i}\n")


def command(variant: str, csv_path: Path, db_path: Path, url: str) -> list[str]:
    if variant in CHILD_OF:
        return [sys.executable, __file__, "--child", CHILD_OF[variant], str(csv_path),
                str(db_path), url]
    return [sys.executable, "-m", "ryze_async", "campaign", str(csv_path), "--journal",
            str(db_path), "--fake", "--instance", INSTANCE, "--base-url", url,
            "--rate-limit", "1000000", "--rate-period", "1",
            "--concurrency", str(CONCURRENCY)]


#: One child's run: CPU seconds (user, sys: every thread), wall seconds.
Sample = tuple[float, float, float]


def run_child(argv: list[str]) -> tuple[Sample, int]:
    """The child's CPU and wall time, and its exit status."""
    # Bytecode is written and reused, as for an installed package (pip compiles it): with
    # PYTHONDONTWRITEBYTECODE set, every child would compile ryze_async from source, while
    # aiohttp's site-packages .pyc files are read (an unfair ~80 ms of start-up).
    env = {**os.environ, "RYZE_TOKEN": TOKEN}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode and proc.stderr is not None:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    if proc.stderr is not None:
        proc.stderr.close()
    return (usage.ru_utime, usage.ru_stime, wall), proc.returncode


def check(what: str, stats: dict[str, int], size: int, code: int) -> list[str]:
    if code != 0:
        return [f"{what}: exit {code}"]
    if (stats["placed"], stats["distinct"], stats["max_per_number"], stats["requests"]) != (
            size, size, 1, size):
        return [f"{what}: the server saw {stats} for {size} numbers; expected each once"]
    return []


VARIANTS = ("bare script", "RyzeClient alone", "ryze-async campaign")
CHILD_OF = {"bare script": "bare", "RyzeClient alone": "client"}


Samples = dict[tuple[str, int], list[Sample]]


def measure(server: ServerProcess, work: Path, sizes: tuple[int, int], rounds: int,
            failures: list[str]) -> Samples:
    samples: Samples = {}
    for r in range(-1, rounds):  # round -1 warms the page cache and writes the .pyc files
        # Alternate the order, so a drift in the machine's load hits both alike.
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            for size in sizes if r >= 0 else sizes[:1]:
                db = work / f"run-{r}-{size}.db"
                sample, code = run_child(command(variant, work / f"{size}.csv", db, server.url))
                failures += check(f"{variant}, {size} numbers, round {r}", server.stats(), size,
                                  code)
                if r >= 0:
                    samples.setdefault((variant, size), []).append(sample)
                for leftover in work.glob(f"run-{r}-{size}.db*"):
                    leftover.unlink()
    return samples


def _cpu(sample: Sample) -> float:
    return sample[0] + sample[1]


def _marginal(samples: Samples, variant: str, n: int, value: Callable[[Sample], float]) -> float:
    """The median over rounds of ``(value(N numbers) - value(1 number)) / (N - 1)``."""
    pairs = zip(samples[(variant, 1)], samples[(variant, n)], strict=True)
    return statistics.median((value(many) - value(one)) / (n - 1) for one, many in pairs)


def report(samples: Samples, n: int, quick: bool) -> list[str]:
    figures: dict[str, tuple[float, float, float, float, float]] = {}
    for variant in VARIANTS:
        per = _marginal(samples, variant, n, _cpu)
        user = _marginal(samples, variant, n, lambda s: s[0])
        system = _marginal(samples, variant, n, lambda s: s[1])
        rate = 1 / max(_marginal(samples, variant, n, lambda s: s[2]), 1e-9)
        startup = statistics.median(_cpu(one) for one in samples[(variant, 1)])
        figures[variant] = (per, user, system, rate, startup)
    base = figures["bare script"]
    for line in ruled(f"{'variant':<21}{'CPU us/number':>14}{'x bare':>7}{'user us':>9}"
                      f"{'sys us':>8}{'numbers/s':>10}{'x bare':>7}{'start-up CPU ms':>16}"
                      f"{'x bare':>7}"):
        print(line)
    for variant, (per, user, system, rate, startup) in figures.items():
        print(f"{variant:<21}{per * 1e6:>14.1f}{per / base[0]:>7.2f}{user * 1e6:>9.1f}"
              f"{system * 1e6:>8.1f}{rate:>10.0f}{rate / base[3]:>7.2f}{startup * 1e3:>16.1f}"
              f"{startup / base[4]:>7.2f}")
    for variant in VARIANTS:
        print(f"  {variant}: whole runs, median CPU / wall: " + "; ".join(
            f"{size} numbers {statistics.median(map(_cpu, samples[(variant, size)])):.3f} s / "
            f"{statistics.median(s[2] for s in samples[(variant, size)]):.3f} s"
            for size in (1, n)))
    per, _, _, rate, startup = figures["ryze-async campaign"]
    ratios = {"cpu": per / base[0], "rate": rate / base[3], "startup": startup / base[4]}
    missed = [f"{name} {ratios[name]:.2f}x (target {'>=' if name == 'rate' else '<='} "
              f"{target}x)" for name, target in TARGETS.items()
              if (ratios[name] < target if name == "rate" else ratios[name] > target)]
    print("  targets: CPU per number <= 1.3x, numbers/s >= 0.8x, start-up CPU <= 1.5x: "
          + ("met" if not missed else "NOT met: " + ", ".join(missed)))
    return [] if quick else missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke mode (~20 s)")
    parser.add_argument("--numbers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=4, metavar=("KIND", "CSV", "DB", "URL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(CHILDREN[args.child[0]](*args.child[1:]))
        return 0
    n, rounds = (200, 2) if args.quick else (args.numbers, args.rounds)
    started = time.perf_counter()
    print(machine(f"Python {sys.version.split()[0]}"))
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="ryze-bare-"))
    server = ServerProcess(serve, name="fake server")
    try:
        for size in (1, n):
            write_csv(work / f"{size}.csv", size)
        print(f"{n} distinct numbers (and 1, for the marginal cost and start-up) against "
              f"FakeRyzeServer (no rate limit) at {server.url}; concurrency {CONCURRENCY}, a "
              f"fresh connection per call; median of {rounds} interleaved rounds")
        samples = measure(server, work, (1, n), rounds, failures)
        failures += report(samples, n, args.quick)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    return finish(started, args.quick, failures,
                  "every number called exactly once by each variant", sep="; ")


if __name__ == "__main__":
    sys.exit(main())
