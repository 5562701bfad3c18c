"""How the benchmarks print: the machine line first, ruled table headers, the verdict last."""

from __future__ import annotations

import os
import time

import ryze_async


def machine(*details: str) -> str:
    """The first line of every report: figures mean little without the machine and its load."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPUs, {', '.join(details)}, "
            f"ryze_async {ryze_async.__version__}; load average {load}")


def ruled(*header: str) -> list[str]:
    """Table header lines, underlined as wide as the last one."""
    return [*header, "-" * len(header[-1])]


def finish(started: float, quick: bool, failures: list[str], ok: str, *, sep: str) -> int:
    """Print the run time and the verdict; returns the exit status (1 if a check failed)."""
    print(f"total {time.perf_counter() - started:.0f} s"
          + ("; --quick: timings are not meaningful" if quick else ""))
    if failures:
        print("FAIL: " + sep.join(failures))
        return 1
    print("OK: " + ok)
    return 0
