"""Start-up cost: ``import ryze_async`` and ``ryze-async --help`` against ``import aiohttp``.

Each command runs in a fresh interpreter many times,
interleaved so that machine noise hits every candidate alike; the figure is the median wall time,
and the ratio is against the median of ``import aiohttp`` measured in the same run. The client
cannot start faster than the HTTP library it sends with, so that import is the baseline.

    python benchmarks/startup.py          # 25 rounds; exit 1 if a ratio is over the target
    python benchmarks/startup.py --quick  # 3 rounds; checks the commands run, not the timings

Target (issue "Seams"): each at most 1.15x ``import aiohttp``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _report import finish, machine, ruled

TARGET = 1.15
BASELINE = "import aiohttp"
COMMANDS: dict[str, list[str]] = {
    BASELINE: [sys.executable, "-c", "import aiohttp"],
    "import ryze_async": [sys.executable, "-c", "import ryze_async"],
    "ryze-async --help": [sys.executable, "-m", "ryze_async", "--help"],
}


def _time_once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: 3 rounds")
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    started = time.perf_counter()
    print(machine(f"Python {sys.version.split()[0]}"))
    for argv in COMMANDS.values():  # warm the OS page cache and .pyc files first
        _time_once(argv)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, argv in COMMANDS.items():
            samples[name].append(_time_once(argv))
    base = statistics.median(samples[BASELINE])
    print(f"median wall time of {rounds} fresh interpreters each, interleaved")
    for line in ruled(f"{'command':<22}{'median ms':>10}{'x aiohttp':>11}"):
        print(line)
    failures: list[str] = []
    for name, times in samples.items():
        ratio = statistics.median(times) / base
        print(f"{name:<22}{statistics.median(times) * 1e3:>10.1f}{ratio:>11.2f}")
        if name != BASELINE and ratio > TARGET and not args.quick:
            failures.append(f"{name} is {ratio:.2f}x {BASELINE} (target {TARGET}x)")
    ok = ("every command ran" if args.quick
          else f"every command within {TARGET}x of {BASELINE}")
    return finish(started, args.quick, failures, ok, sep="; ")


if __name__ == "__main__":
    sys.exit(main())
