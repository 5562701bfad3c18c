"""Quota limiter benchmark: ryze_async's QuotaLimiter against aiolimiter and a margin-less log.

Under virtual time, N concurrent calls at 100 requests / 60 s, with the client starting at several
phases of the server's fixed window and 0-50 ms of seeded network jitter between admission and
arrival. Reported per limiter (worst over phases): most admissions in any 60 s window, 429s a
fixed-window server and a sliding-window-log server would return, total time against the ideal
((ceil(N/100) - 1) * 60 s). Fixed-window boundaries tried: the start phase itself, 10/25/40 ms
after the first burst (splitting a jittered burst), and 0.25/0.5/0.99 of a period after it.
Then the real-loop cost of one uncontended acquire().

    python benchmarks/limiter.py          # 1,000 calls, 4 phases
    python benchmarks/limiter.py --quick  # 300 calls, 2 phases; exit 1 if QuotaLimiter fails

Either mode exits 1 if ryze_async's limiter puts more than 100 in a window, draws any 429, or takes
more than 1.02x the ideal time. Timings are printed, never checked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter

from ryze_async import QuotaLimiter
from ryze_async.testing._quota_sim import QuotaReport, evaluate, run_admissions

LIMIT = 100
PERIOD = 60.0
JITTER = 0.05
MAX_TIME_RATIO = 1.02
OURS = "ryze_async QuotaLimiter"

Acquire = Callable[[], Awaitable[object]]

CANDIDATES: dict[str, Callable[[], Acquire]] = {
    OURS: lambda: QuotaLimiter(LIMIT, PERIOD).acquire,
    "aiolimiter AsyncLimiter(100, 60)": lambda: AsyncLimiter(LIMIT, PERIOD).acquire,
    "aiolimiter AsyncLimiter(1, 0.6)": lambda: AsyncLimiter(1, PERIOD / LIMIT).acquire,
    "sliding log, no margin": lambda: QuotaLimiter(LIMIT, PERIOD, margin=0.0).acquire,
}


def quota_report(make_acquire: Callable[[], Acquire], n: int, phases: list[float]) -> QuotaReport:
    """Worst case over the client start phases (each with its own jitter seed)."""
    reports = []
    for seed, start in enumerate(phases):
        times = run_admissions(make_acquire, n, start=start)
        first = min(times)
        server_phases = [0.0]
        server_phases += [first + d for d in (0.01, 0.025, 0.04)]
        server_phases += [first + f * PERIOD for f in (0.25, 0.5, 0.99)]
        reports.append(
            evaluate(
                times,
                start=start,
                limit=LIMIT,
                period=PERIOD,
                max_jitter=JITTER,
                seed=seed,
                server_phases=server_phases,
            )
        )
    return QuotaReport(
        max_in_window=max(r.max_in_window for r in reports),
        fixed_429=max(r.fixed_429 for r in reports),
        sliding_429=max(r.sliding_429 for r in reports),
        elapsed=max(r.elapsed for r in reports),
        ideal=reports[0].ideal,
    )


async def _empty() -> None:
    return None


async def _seconds_per_call(acquire: Acquire, calls: int) -> float:
    begin = time.perf_counter()
    for _ in range(calls):
        await acquire()
    return (time.perf_counter() - begin) / calls


def uncontended_cost_us(calls: int, repeats: int) -> dict[str, float]:
    """Median real cost of one acquire() that never has to wait, in microseconds."""
    makers: dict[str, Callable[[], Acquire]] = {
        "await of an empty coroutine (floor)": lambda: _empty,
        "aiolimiter AsyncLimiter": lambda: AsyncLimiter(10**9, PERIOD).acquire,
        OURS: lambda: QuotaLimiter(10**9, PERIOD).acquire,
    }

    async def main() -> dict[str, float]:
        samples: dict[str, list[float]] = {name: [] for name in makers}
        for _ in range(repeats):  # interleaved, so drift in machine load hits all alike
            for name, make in makers.items():
                samples[name].append(await _seconds_per_call(make(), calls))
        return {name: statistics.median(s) * 1e6 for name, s in samples.items()}

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="300 calls, 2 phases, a few seconds")
    args = parser.parse_args(argv)
    n, phases = (300, [0.0, 59.5]) if args.quick else (1000, [0.0, 15.0, 30.0, 59.5])

    print(
        f"{n} calls at {LIMIT}/{PERIOD:g} s, client start phases {phases} s, "
        f"arrival jitter 0-{JITTER * 1000:g} ms (virtual time)"
    )
    header = (
        f"{'limiter':34} {'max/60s':>7} {'x limit':>7} {'fixed 429':>9} {'slide 429':>9} "
        f"{'time s':>8} {'x ideal':>7}"
    )
    print(header)
    print("-" * len(header))
    reports: dict[str, QuotaReport] = {}
    for name, make in CANDIDATES.items():
        report = reports[name] = quota_report(make, n, phases)
        print(
            f"{name:34} {report.max_in_window:7d} {report.max_in_window / LIMIT:7.2f} "
            f"{report.fixed_429:9d} {report.sliding_429:9d} {report.elapsed:8.1f} "
            f"{report.time_ratio:7.3f}"
        )
    print(f"ideal time: {reports[OURS].ideal:g} s")

    calls, repeats = (2_000, 3) if args.quick else (20_000, 7)
    costs = uncontended_cost_us(calls, repeats)
    baseline = costs["aiolimiter AsyncLimiter"]
    print(f"\nuncontended acquire(), real loop, median of {repeats} x {calls} calls:")
    for name, us in costs.items():
        print(f"  {name:36} {us:6.2f} us  {us / baseline:5.2f}x AsyncLimiter")

    ours = reports[OURS]
    failures = []
    if ours.max_in_window > LIMIT:
        failures.append(f"{ours.max_in_window} admissions in one {PERIOD:g} s window")
    if ours.fixed_429 or ours.sliding_429:
        failures.append(f"429s: fixed {ours.fixed_429}, sliding {ours.sliding_429}")
    if ours.time_ratio > MAX_TIME_RATIO:
        failures.append(f"{ours.time_ratio:.4f}x ideal time (bar {MAX_TIME_RATIO}x)")
    if failures:
        print(f"\nFAIL {OURS}: " + "; ".join(failures))
        return 1
    print(f"\nOK {OURS}: within the quota, {ours.time_ratio:.4f}x ideal time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
