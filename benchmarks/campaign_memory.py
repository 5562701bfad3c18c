"""Peak memory of a campaign over a 1,000,000-line CSV vs a 100,000-line baseline.

Each size runs in a fresh child process (so each peak RSS is its own): the child writes the CSV,
then streams it through ``Campaign`` into a journal and dispatches every number. The send step
is stubbed at the client boundary (a stub with ``audio_call`` that awaits ``before_send`` - the
journal's durable ``sending`` commit - then returns a ``CallResult``), so what is measured is the
engine: streaming CSV reader, ingestion, journal (``synchronous=FULL`` group commits), feeder,
worker pool. ``--real-client`` instead sends every call with the real ``RyzeClient`` (no quota)
over loopback HTTP to ``ryze-async sandbox`` in another process (slower: use smaller sizes).

A flat profile means the 1M run's peak RSS is close to the 100k run's (ratio near 1.0), not
ten times larger. Timings are printed for information; only a functional failure (wrong counts,
a crashed child) makes the exit status non-zero.

    python benchmarks/campaign_memory.py            # 1,000,000 vs 100,000 (about a minute)
    python benchmarks/campaign_memory.py --quick    # 50,000 vs 5,000 + a real-client check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ryze_async import CallResult, Campaign, Media, RyzeClient
from ryze_async.testing import wav_tone


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes; this benchmark targets Linux CI).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StubClient:
    """The send step, stubbed: the durable ``sending`` mark happens, the HTTP request does not."""

    async def audio_call(self, number: str, *, media: Media, instance: str | None,
                         before_send: Callable[[], Awaitable[None]],
                         on_not_sent: Callable[[], Awaitable[None]]) -> CallResult:
        await before_send()
        return CallResult(success=True, callId="C" + number[-8:], number=number)

    async def fake_call(self, number: str, **_: Any) -> CallResult:
        raise NotImplementedError


def write_csv(path: Path, size: int) -> None:
    with path.open("w") as f:
        f.write("number,name\n")
        for i in range(size):
            f.write(f"+55 11 9{i // 10000:04d}-{i % 10000:04d},Person {i}\n")


async def child(size: int, workdir: Path, real_client: bool) -> dict[str, Any]:
    csv_path = workdir / f"numbers-{size}.csv"
    write_csv(csv_path, size)
    media = Media.from_bytes(wav_tone(0.1))
    before = peak_rss_mib()
    started = time.perf_counter()
    journal = workdir / f"journal-{size}-{int(real_client)}.db"
    if real_client:
        # The sandbox runs in its own process: it records every request it gets, and that
        # log must not count as the campaign's memory.
        sandbox = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ryze_async", "sandbox", "--port", "0", "--rate-limit",
            str(10**9), "--rate-period", "1", "--token", "bench-token", "--instance", "bench",
            stdout=asyncio.subprocess.PIPE)
        assert sandbox.stdout is not None
        url = (await sandbox.stdout.readline()).decode().split(" on ")[1].split()[0]
        try:
            async with RyzeClient("bench-token", "bench", base_url=url,
                                  rate_limit=None) as client:
                summary = await Campaign(client, csv_path, journal=journal, media=media,
                                         concurrency=32).run()
        finally:
            sandbox.send_signal(signal.SIGINT)
            rest = (await sandbox.communicate())[0].decode()
        server_placed = int(rest.rsplit("(", 1)[1].split()[0])
    else:
        summary = await Campaign(StubClient(), csv_path, journal=journal, media=media,
                                 concurrency=64, instance="bench").run()
        server_placed = summary.placed
    elapsed = time.perf_counter() - started
    return {
        "size": size, "real_client": real_client, "placed": summary.placed,
        "total": summary.total, "server_placed": server_placed,
        "rss_before_mib": round(before, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
        "elapsed_s": round(elapsed, 2), "outcomes_per_s": round(summary.placed / elapsed),
        "journal_mib": round(journal.stat().st_size / 2**20, 1),
    }


def run_child(size: int, workdir: Path, real_client: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(size), "--dir", str(workdir)]
    if real_client:
        cmd.append("--real-client")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child for {size} failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--real-client", action="store_true",
                        help="send through RyzeClient to an in-process fake server")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child, args.dir, args.real_client))))
        return 0
    size, baseline = (50_000, 5_000) if args.quick else (args.size, args.baseline)
    runs = [(baseline, args.real_client), (size, args.real_client)]
    if args.quick:
        runs.append((2_000, True))
    failures = []
    results = []
    with tempfile.TemporaryDirectory(prefix="ryze-bench-") as tmp:
        for n, real in runs:
            try:
                r = run_child(n, Path(tmp), real)
            except RuntimeError as exc:
                failures.append(str(exc))
                continue
            results.append(r)
            if not (r["placed"] == r["total"] == r["server_placed"] == n):
                failures.append(f"wrong counts for {n}: {r}")
    print(f"{'lines':>10} {'send step':>10} {'peak RSS':>10} {'before run':>10} "
          f"{'elapsed':>9} {'outcomes/s':>11} {'journal':>9}")
    for r in results:
        print(f"{r['size']:>10,} {'real HTTP' if r['real_client'] else 'stub':>10} "
              f"{r['peak_rss_mib']:>8.1f}MiB {r['rss_before_mib']:>8.1f}MiB "
              f"{r['elapsed_s']:>8.1f}s {r['outcomes_per_s']:>11,} {r['journal_mib']:>7.1f}MiB")
    pair = [r for r in results if r["real_client"] == args.real_client][:2]
    if len(pair) == 2:
        small, big = pair
        print(f"peak RSS ratio {big['size']:,} / {small['size']:,} lines: "
              f"{big['peak_rss_mib'] / small['peak_rss_mib']:.2f} "
              f"({big['size'] // small['size']}x the input)")
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
