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
Target: >= 5,000 outcomes/s with ``synchronous=FULL``; NORMAL printed beside it. (The code of
(b) is in ``_journal_bench.py``; the CSV and the checks are in ``_campaign_input.py``.)

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
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from resource import RUSAGE_SELF, getrusage
from typing import Any

from _campaign_input import check_server, check_summary, expected_summary, wav_audio, write_csv
from _journal_bench import journal_bench, remove_journal
from _loopback import ServerProcess, answer_commands, rate_headers, start_site
from _report import finish, machine, ruled

from ryze_async import Campaign, CampaignSummary, Media, RyzeClient

TOKEN = "bench-token"
INSTANCE = "bench"
CONCURRENCY = 32
MEMORY_TARGET = 1.1
ANSWER = {"success": True, "message": "Audio call placed"}


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
        return web.json_response({**ANSWER, "callId": f"AC{number}", "number": number},
                                 headers=rate_headers())

    app = web.Application(client_max_size=16 * 2**20)
    app.router.add_post("/api/call/audio/{instance}", answer)

    def stats() -> dict[str, int]:
        digits_sum = sum(int(n.removesuffix("@s.whatsapp.net")) for n in calls)
        seen = {"placed": sum(calls.values()), "distinct": len(calls),
                "max_per_number": max(calls.values(), default=0), "digits_sum": digits_sum,
                "refused": refused[0]}
        calls.clear()
        refused[0] = 0
        return seen

    url, stop = await start_site(app)
    await answer_commands(conn, url, stats, stop)


class Server(ServerProcess):
    """The server in its own process, counting the calls it placed per number."""

    def __init__(self) -> None:
        super().__init__(serve)

    def take_stats(self) -> dict[str, int]:
        """What the server saw since the last call; resets its counts."""
        stats: dict[str, int] = self.stats()
        return stats


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


def campaign_scale(server: Server, tmp: Path, sizes: list[int], repeats: int, *,
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
                remove_journal(journal)
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
    lines = ruled(f"(a) campaign from a CSV, real RyzeClient (rate_limit=None, concurrency "
                  f"{CONCURRENCY}, a {media.size:,} B WAV as mediaBase64) -> minimal aiohttp.web "
                  "server in a separate process on 127.0.0.1",
                  "    medians of the timed runs per size, each in a fresh child process; CPU = "
                  "process_time of that process / numbers"
                  + ("; tracemalloc: one more (untimed) run per size" if traced else ""),
                  f"{'numbers':>9} {'runs':>4} {'calls/s':>8} {'wall s':>7} "
                  f"{'CPU us/number':>13} {'peak RSS MiB':>12} {'RSS growth MiB':>14} "
                  f"{'tracemalloc peak MiB':>20} {'journal MiB':>11}")
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


def quick_resume(server: Server, tmp: Path, size: int, failures: list[str]) -> str:
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
    print(machine(f"Python {platform.python_version()}", f"SQLite {sqlite3.sqlite_version}",
                  f"{platform.system()} {platform.release()}"))
    started = time.perf_counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ryze-bench-campaign-") as tmp:
        server = Server()
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
    return finish(started, quick, failures, "every number reached the server exactly once, no "
                  "other number did, and every summary and journal count is right",
                  sep="\n      ")


if __name__ == "__main__":
    sys.exit(main())
