"""Campaign scale: peak memory and calls/s for 10k and 100k numbers; the journal's write rate.

(a) **Campaign, end to end.** Each run is a fresh child process (so its peak RSS is its own) that
streams a CSV through ``Campaign`` with the real ``RyzeClient`` (client quota lifted:
``rate_limit=None``; concurrency 32; 0.1 s of WAV audio prepared once as ``Media``, sent as
``mediaBase64``) to a minimal ``aiohttp.web`` server in another process on 127.0.0.1. The server
answers every well-formed call at once with RyzeAPI's success JSON and ``X-RateLimit-*`` headers,
and counts calls per number (that is how the checks below know each number was dialed exactly
once). Measured in the child, around ``Campaign.run()`` only (the CSV is written beforehand by the
parent): wall time, ``time.process_time()`` of the whole child (event loop, client, journal
thread, fsyncs), peak RSS (``ru_maxrss``: everything the child ever held, interpreter and imports
included) and the RSS growth during the run. A separate child per size runs once more under
``tracemalloc`` (peak of Python allocations during the run; SQLite's page cache is not Python
memory and is bounded by its ``cache_size``) - untimed, as tracing slows everything.
Targets: peak memory at 100k <= 1.1x at 10k; dispatch CPU per number flat (ratio printed).

(b) **Journal alone.** The journal API driven as the campaign drives it: numbers ingested in
batches, a feeder reading ``pending_after`` pages into a queue, N workers each awaiting
``mark_sending`` (its group commit durable, ``synchronous=FULL`` by default) before a simulated
request (one event-loop turn), then queueing the outcome with ``record``; timed until ``flush``.
Target: >= 5,000 outcomes/s with ``synchronous=FULL``; NORMAL printed beside it.

    python benchmarks/campaign.py            # full run, about 3 minutes on 2 cores
    python benchmarks/campaign.py --quick    # CI smoke, a few seconds: functional checks only

Every mode checks, never timings: every number reached the server exactly once and no other
number did, the summary and journal counts are right (placed, duplicates, invalid), and
``--quick`` also stops a campaign a third of the way in and resumes it on the same journal.
Exit 1 on a failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import multiprocessing as mp
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import wave
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from resource import RUSAGE_SELF, getrusage
from typing import Any, Literal

import ryze_async
from ryze_async import Campaign, CampaignSummary, Media, RyzeClient
from ryze_async._journal import Journal
from ryze_async._numbers import normalize_number

TOKEN = "bench-token"
INSTANCE = "bench"
CONCURRENCY = 32
MEMORY_TARGET = 1.1
JOURNAL_TARGET = 5000.0
ANSWER = {"success": True, "message": "Audio call placed"}
EXTRAS = ("12345,Too short", "not-a-number,Typo", "123456@g.us,A group")  # 3 invalid entries
REPEATS_OF_FIRST = 5  # the first 5 numbers appear again at the end (duplicates)


# -- the server process -----------------------------------------------------------------------

def serve(conn: Connection) -> None:
    """Entry point of the server process: report the URL, then answer commands on ``conn``."""
    asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    # Imported here: the campaign children never load the server side (their RSS is measured).
    from aiohttp import web  # noqa: PLC0415

    calls: dict[str, int] = {}  # number -> calls placed since the last "stats"
    refused = [0]

    async def answer(request: web.Request) -> web.Response:
        if request.headers.get("token") != TOKEN or request.match_info["instance"] != INSTANCE:
            refused[0] += 1
            return web.json_response({"success": False, "message": "Unauthorized"}, status=401)
        body = await request.json()
        number = body.get("number")
        if not isinstance(number, str) or ("mediaUrl" in body) == ("mediaBase64" in body):
            refused[0] += 1
            return web.json_response({"success": False, "message": "bad body"}, status=400)
        calls[number] = calls.get(number, 0) + 1
        headers = {"X-RateLimit-Limit": "2147483647", "X-RateLimit-Remaining": "2147483646",
                   "X-RateLimit-Reset": str(int(time.time()) + 60)}
        return web.json_response({**ANSWER, "callId": f"AC{number}", "number": number},
                                 headers=headers)

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/api/call/audio/{instance}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_command() -> None:
        if conn.recv() != "stats":
            done.set()
            return
        digits_sum = sum(int(n.removesuffix("@s.whatsapp.net")) for n in calls)
        conn.send({"placed": sum(calls.values()), "distinct": len(calls),
                   "max_per_number": max(calls.values(), default=0), "digits_sum": digits_sum,
                   "refused": refused[0]})
        calls.clear()
        refused[0] = 0

    loop.add_reader(conn.fileno(), on_command)
    conn.send(f"http://127.0.0.1:{runner.addresses[0][1]}")
    await done.wait()
    loop.remove_reader(conn.fileno())
    await runner.cleanup()


class ServerProcess:
    """The server in its own process (spawned: it shares nothing with the parent's state)."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=serve, args=(child,), daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(30):
            raise RuntimeError("the server did not start")
        self.url: str = self._conn.recv()

    def take_stats(self) -> dict[str, int]:
        """What the server saw since the last call; resets its counts."""
        self._conn.send("stats")
        stats: dict[str, int] = self._conn.recv()
        return stats

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


# -- the input --------------------------------------------------------------------------------

def wav_audio() -> bytes:
    """0.1 s of 8 kHz 16-bit mono WAV (1,644 bytes; 2,192 base64 characters on the wire).

    Built here rather than with ``ryze_async._demo.wav_tone``: importing the demo loads the
    fake server and rich, which would inflate the measured process's memory.
    """
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    return buf.getvalue()


def raw_number(i: int) -> str:
    return f"+55 11 9{i // 10000:04d}-{i % 10000:04d}"


def write_csv(path: Path, size: int, extras: bool) -> int:
    """A CSV of ``size`` distinct numbers (plus repeats and invalid lines if ``extras``).

    Returns the sum of the normalized numbers as integers: what the server must have seen.
    """
    with path.open("w") as f:
        f.write("number,name\n")
        for i in range(size):
            f.write(f"{raw_number(i)},Person {i}\n")
        if extras:
            for i in range(REPEATS_OF_FIRST):
                f.write(f"{raw_number(i)},Repeat\n")
            f.write("\n".join(EXTRAS) + "\n")
    return sum(int(normalize_number(raw_number(i))) for i in range(size))


def expected_summary(size: int, extras: bool) -> dict[str, int]:
    duplicates, invalid = (REPEATS_OF_FIRST, len(EXTRAS)) if extras else (0, 0)
    return {"total": size + duplicates + invalid, "placed": size, "failed": 0, "unknown": 0,
            "pending": 0, "in_flight": 0, "duplicates": duplicates, "invalid": invalid}


def check_summary(what: str, summary: dict[str, Any], expected: dict[str, int]) -> list[str]:
    wrong = {k: (summary.get(k), v) for k, v in expected.items() if summary.get(k) != v}
    return [f"{what}: summary {k} = {got}, expected {want}" for k, (got, want) in wrong.items()]


def check_server(what: str, stats: dict[str, int], size: int, digits_sum: int) -> list[str]:
    if (stats["placed"], stats["distinct"], stats["max_per_number"], stats["refused"]) != (
        size, size, 1, 0) or stats["digits_sum"] != digits_sum:
        return [f"{what}: the server saw {stats} for {size} numbers (digit sum "
                f"{'right' if stats['digits_sum'] == digits_sum else 'WRONG'}); expected each "
                "number exactly once"]
    return []


# -- (a) the campaign child -------------------------------------------------------------------

def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return getrusage(RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def child(csv_path: Path, journal: Path, url: str, traced: bool) -> dict[str, Any]:
    media = Media.from_bytes(wav_audio())
    gc.collect()
    rss_before = current_rss_mib()
    if traced:
        tracemalloc.start()
    cpu, wall = time.process_time(), time.perf_counter()
    async with RyzeClient(TOKEN, INSTANCE, base_url=url, rate_limit=None) as client:
        campaign = Campaign(client, csv_path, journal=journal, media=media,
                            concurrency=CONCURRENCY)
        summary = await campaign.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else None
    tracemalloc.stop()
    return {
        "summary": summary.as_dict(), "cpu": cpu, "wall": wall, "rss_before": rss_before,
        "peak_rss": peak_rss_mib(), "traced_peak": traced_peak,
    }


def run_child(csv_path: Path, journal: Path, url: str, traced: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(csv_path), "--journal", str(journal),
           "--url", url]
    if traced:
        cmd.append("--traced")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"campaign child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@dataclass
class SizeResult:
    size: int
    runs: list[dict[str, Any]]
    traced_peak: float | None

    def median(self, key: str) -> float:
        return float(statistics.median(float(r[key]) for r in self.runs))

    @property
    def rss_growth(self) -> float:
        return float(statistics.median(r["peak_rss"] - r["rss_before"] for r in self.runs))

    @property
    def calls_per_s(self) -> float:
        return float(statistics.median(self.size / r["wall"] for r in self.runs))

    @property
    def cpu_us(self) -> float:
        return float(statistics.median(r["cpu"] / self.size for r in self.runs)) * 1e6


def campaign_scale(server: ServerProcess, tmp: Path, sizes: list[int], repeats: int, *,
                   traced: bool, failures: list[str]) -> list[SizeResult]:
    results = []
    server.take_stats()
    for size in sizes:
        csv_path = tmp / f"numbers-{size}.csv"
        digits_sum = write_csv(csv_path, size, extras=True)
        expected = expected_summary(size, extras=True)
        runs = []
        # Small sizes are cheap and their runs short (noisier): they get two runs more.
        timed = repeats + 2 if size < 50_000 and repeats > 1 else repeats
        plan = [False] * timed + ([True] if traced else [])
        traced_peak = None
        for n, trace in enumerate(plan):
            journal = tmp / f"journal-{size}-{n}.db"
            what = f"{size:,} numbers, run {n + 1}{' (tracemalloc)' if trace else ''}"
            server.take_stats()  # nothing left over from a failed run
            try:
                r = run_child(csv_path, journal, server.url, trace)
            except RuntimeError as exc:
                failures.append(f"{what}: {exc}")
                continue
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{journal}{suffix}").unlink(missing_ok=True)
            failures += check_summary(what, r["summary"], expected)
            failures += check_server(what, server.take_stats(), size, digits_sum)
            if trace:
                traced_peak = r["traced_peak"]
            else:
                runs.append(r)
        if runs:
            results.append(SizeResult(size, runs, traced_peak))
        csv_path.unlink()
    return results


def campaign_table(results: list[SizeResult], traced: bool) -> list[str]:
    media = Media.from_bytes(wav_audio())
    lines = [f"(a) campaign from a CSV, real RyzeClient (rate_limit=None, concurrency "
             f"{CONCURRENCY}, a {media.size:,} B WAV as mediaBase64) -> minimal aiohttp.web "
             "server in a separate process on 127.0.0.1",
             "    medians of the timed runs per size, each in a fresh child process; CPU = "
             "process_time of that process / numbers"
             + ("; tracemalloc: one more (untimed) run per size" if traced else ""),
             f"{'numbers':>9} {'runs':>4} {'calls/s':>8} {'wall s':>7} {'CPU us/number':>13} "
             f"{'peak RSS MiB':>12} {'RSS growth MiB':>14} {'tracemalloc peak MiB':>20} "
             f"{'journal MiB':>11}"]
    lines.append("-" * len(lines[-1]))
    for r in results:
        peak = f"{r.traced_peak:20.2f}" if r.traced_peak is not None else f"{'-':>20}"
        lines.append(f"{r.size:>9,} {len(r.runs):4} {r.calls_per_s:8,.0f} {r.median('wall'):7.1f} "
                     f"{r.cpu_us:13.1f} {r.median('peak_rss'):12.1f} {r.rss_growth:14.1f} "
                     f"{peak} {r.median('journal_mib'):11.1f}")
    if len(results) >= 2:
        small, big = results[0], results[-1]
        x = big.size // small.size
        rss = big.median("peak_rss") / small.median("peak_rss")
        cpu = big.cpu_us / small.cpu_us
        lines.append(f"ratios {big.size:,} / {small.size:,} ({x}x the numbers): peak RSS "
                     f"{rss:.3f}x (target <= {MEMORY_TARGET}: "
                     f"{'met' if rss <= MEMORY_TARGET else 'NOT met'})"
                     + (f", tracemalloc peak {big.traced_peak / small.traced_peak:.3f}x"
                        if big.traced_peak and small.traced_peak else "")
                     + f", CPU per number {cpu:.3f}x (flat = 1.0), calls/s "
                     f"{big.calls_per_s / small.calls_per_s:.3f}x")
    return lines


# -- (b) the journal alone --------------------------------------------------------------------

async def journal_run(path: Path, size: int, workers: int,
                      synchronous: Literal["full", "normal"]) -> dict[str, float]:
    journal = await Journal.open(path, synchronous=synchronous)
    try:
        for start in range(0, size, 1000):
            entries = [(i + 2, raw_number(i)) for i in range(start, min(start + 1000, size))]
            await journal.ingest(entries, offset=0, line=start, normalize=normalize_number)
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
    lines = [f"(b) journal alone: {size:,} numbers, mark_sending committed before each simulated "
             f"request, outcome recorded after; median of {repeats} runs",
             f"{'workers':>7} {'synchronous':>11} {'outcomes/s':>10} {'CPU us/outcome':>14} "
             f"{'marks/commit':>12} {'x FULL':>7}"]
    lines.append("-" * len(lines[-1]))
    full_rates: dict[int, float] = {}
    for workers in worker_counts:
        for sync in ("full", "normal"):
            samples = []
            for n in range(repeats):
                path = tmp / f"journal-bench-{workers}-{sync}-{n}.db"
                r = asyncio.run(journal_run(path, size, workers, sync))
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
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


# -- --quick: stop halfway, resume, each number once ------------------------------------------

async def stop_and_resume(csv_path: Path, journal: Path, url: str, stop_after: int) -> tuple[
    CampaignSummary, CampaignSummary
]:
    media = Media.from_bytes(wav_audio())
    async with RyzeClient(TOKEN, INSTANCE, base_url=url, rate_limit=None) as client:
        first = Campaign(client, csv_path, journal=journal, media=media, concurrency=CONCURRENCY,
                         ingest_batch=100)
        seen = 0

        async def on_result(_: object) -> None:
            nonlocal seen
            seen += 1
            if seen == stop_after:
                first.stop()

        interrupted = await first.run(on_result)
        resumed = await Campaign(client, csv_path, journal=journal, media=media,
                                 concurrency=CONCURRENCY).run()
    return interrupted, resumed


def quick_resume(server: ServerProcess, tmp: Path, size: int, failures: list[str]) -> str:
    csv_path = tmp / "resume.csv"
    digits_sum = write_csv(csv_path, size, extras=True)
    server.take_stats()
    first, second = asyncio.run(stop_and_resume(csv_path, tmp / "resume.db", server.url,
                                                size // 3))
    failures += check_server("stop + resume", server.take_stats(), size, digits_sum)
    if first.stop_reason != "interrupted" or not 0 < first.pending < size:
        failures.append(f"stop + resume: the first run was not interrupted halfway: {first}")
    failures += check_summary("stop + resume", second.as_dict(), expected_summary(size, True))
    return (f"stop + resume: first run stopped with {first.placed:,} placed and "
            f"{first.pending:,} pending; resumed to {second.placed:,} placed of {size:,}")


# -- the run -----------------------------------------------------------------------------------

def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}, "
            f"ryze_async {ryze_async.__version__}; load average {load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: small sizes, one run each; checks, no timings")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per size (default 3; sizes under 50,000 get 2 more)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10_000, 100_000],
                        help="numbers per campaign, comma-separated (default 10000,100000)")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="skip the untimed tracemalloc run per size (saves ~1.5 min)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--journal", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        result = asyncio.run(child(args.child, args.journal, args.url, args.traced))
        result["journal_mib"] = args.journal.stat().st_size / 2**20
        print(json.dumps(result))
        return 0
    quick = args.quick
    sizes = [300, 3000] if quick else args.sizes
    repeats = 1 if quick else args.repeats
    print(machine())
    started = time.perf_counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ryze-bench-campaign-") as tmp:
        server = ServerProcess()
        try:
            traced = not (quick or args.no_tracemalloc)
            results = campaign_scale(server, Path(tmp), sizes, repeats, traced=traced,
                                     failures=failures)
            print("\n".join(campaign_table(results, traced)), end="\n\n")
            if quick:
                print(quick_resume(server, Path(tmp), 1000, failures), end="\n\n")
        finally:
            server.close()
        lines = journal_bench(Path(tmp), 2000 if quick else 20_000,
                              [32] if quick else [10, 32, 100], repeats, failures)
        print("\n".join(lines), end="\n\n")
    print(f"total {time.perf_counter() - started:.0f} s"
          + ("; --quick: timings are not meaningful" if quick else ""))
    if failures:
        print("FAIL: " + "\n      ".join(failures))
        return 1
    print("OK: every number reached the server exactly once, no other number did, and every "
          "summary and journal count is right")
    return 0


if __name__ == "__main__":
    sys.exit(main())
