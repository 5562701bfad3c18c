"""Draw docs/quota-across-processes.svg from a real run: three processes on one token.

Three worker processes each place 20 fake calls on one token against a `FakeRyzeServer` on
127.0.0.1, at a sped-up quota of 10 calls per 2 s, twice: first each with its own in-process
limiter, then all through one shared Redis quota (``quota_url=``, a throw-away redis-server).
From the server's own record (its arrival stamps), the chart plots, at each arrival, how many
requests arrived in the 2 s before it, against the limit. Nothing leaves the machine.

    python docs/quota_across_processes.py   # needs redis-server on PATH and the redis extra

Takes about 20 s; exits 1 if the shared run ever exceeded the limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from ryze_async import RyzeClient
from ryze_async.testing import FakeRyzeServer, RedisServer

PROCESSES = 3
CALLS = 20
LIMIT = 10
PERIOD = 2.0
TOKEN = "chart-token"  # noqa: S105 - the fake server's token
INSTANCE = "chart"
OUT = Path(__file__).with_name("quota-across-processes.svg")
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")


def _number(process: int, call: int) -> str:
    return f"55119{process + 1:04d}{call + 1:04d}"  # one Sao Paulo mobile range per process


async def _place_calls(process: int, base_url: str, quota_url: str | None) -> None:
    async with RyzeClient(token=TOKEN, instance=INSTANCE, base_url=base_url, rate_limit=LIMIT,
                          rate_period=PERIOD, quota_url=quota_url) as client:
        await asyncio.gather(*(client.fake_call(_number(process, i)) for i in range(CALLS)))


def _worker(process: int, base_url: str, quota_url: str | None) -> None:
    asyncio.run(_place_calls(process, base_url, quota_url))


@dataclass
class Run:
    title: str
    arrivals: list[tuple[float, int]]  # (seconds since the first arrival, process)
    limit: int = LIMIT  # examples/distributed.py draws its own runs with its own quota
    period: float = PERIOD

    def in_window(self) -> list[int]:
        """At each arrival, the requests that arrived in the period up to it."""
        times = [t for t, _ in self.arrivals]
        return [bisect_right(times, t) - bisect_right(times, t - self.period) for t in times]


async def _run(title: str, quota_url: str | None) -> Run:
    # A server that never refuses shows what each setting sends; refusals are counted apart.
    async with FakeRyzeServer(token=TOKEN, instances=(INSTANCE,), rate_limit=None) as server:
        spawn = multiprocessing.get_context("spawn")
        workers = [spawn.Process(target=_worker, args=(k, server.url, quota_url))
                   for k in range(PROCESSES)]
        for worker in workers:
            worker.start()
        for worker in workers:
            await asyncio.to_thread(worker.join, 120)
            if worker.exitcode != 0:
                raise SystemExit(f"a worker failed (exit {worker.exitcode})")
        requests = sorted(server.requests, key=lambda r: r.received_at)
        first = requests[0].received_at
        arrivals = [(r.received_at - first, int(r.json["number"][5:9]) - 1) for r in requests]
    return Run(title, arrivals)


def _panel(run: Run, top: float, size: tuple[float, float], x_max: float, y_max: int) -> str:
    width, height = size
    left, plot_w, plot_h = 60.0, width - 80.0, height - 70.0

    def x(t: float) -> float:
        return left + plot_w * t / x_max

    def y(n: float) -> float:
        return top + 40 + plot_h * (1 - n / y_max)
    counts = run.in_window()
    parts = [f'<text x="{left}" y="{top + 22}" class="title">{run.title}</text>']
    for n in range(0, y_max + 1, 10):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(n):.1f}" y2="{y(n):.1f}" '
                     f'class="grid"/><text x="{left - 8}" y="{y(n) + 4:.1f}" '
                     f'class="tick" text-anchor="end">{n}</text>')
    for second in range(int(x_max) + 1):
        parts.append(f'<text x="{x(second):.1f}" y="{y(0) + 18:.1f}" class="tick" '
                     f'text-anchor="middle">{second}</text>')
    limit = run.limit
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(limit):.1f}" '
                 f'y2="{y(limit):.1f}" class="limit"/><text x="{left + plot_w}" '
                 f'y="{y(limit) - 6:.1f}" class="tick" text-anchor="end">limit: {limit} per '
                 f'{run.period:g} s</text>')
    for (t, process), n in zip(run.arrivals, counts, strict=True):
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(n):.1f}" r="3.5" '
                     f'fill="{COLOURS[process % len(COLOURS)]}"/>')
    return "\n".join(parts)


def draw(runs: list[Run], labels: list[str] | None = None) -> str:
    """The SVG chart of `runs`; `labels` name the colours (default: process 1, 2, ...)."""
    width, panel_h = 760.0, 260.0
    x_max = max(max(t for t, _ in run.arrivals) for run in runs) + 0.5
    y_max = max(10, *(((max(run.in_window()) + 9) // 10) * 10 for run in runs))
    height = panel_h * len(runs) + 60
    if labels is None:
        count = 1 + max(p for run in runs for _, p in run.arrivals)
        labels = [f"process {k + 1}" for k in range(count)]
    legend = "".join(
        f'<circle cx="{70 + 130 * k}" cy="{height - 22}" r="5" fill="{COLOURS[k % len(COLOURS)]}"/>'
        f'<text x="{80 + 130 * k}" y="{height - 18}" class="tick">{text}</text>'
        for k, text in enumerate(labels))
    panels = "\n".join(_panel(run, i * panel_h, (width, panel_h), x_max, y_max)
                       for i, run in enumerate(runs))
    return f"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" \
font-family="sans-serif" role="img" aria-label="Requests per sliding window, three processes on \
one token: own limiters against one shared Redis quota">
<style>.title{{font-size:15px;font-weight:bold}} .tick{{font-size:12px;fill:#444}} \
.grid{{stroke:#ddd}} .limit{{stroke:#d62728;stroke-width:2;stroke-dasharray:6 4}}</style>
<rect width="100%" height="100%" fill="white"/>
{panels}
<text x="{width / 2:.0f}" y="{height - 40}" class="tick" text-anchor="middle">seconds since the \
first request; each dot is one request at the server, at the height of the requests in the \
{runs[0].period:g} s before it</text>
{legend}
</svg>
"""


async def main() -> int:
    own = await _run(f"{PROCESSES} processes, each with its own limiter", None)
    with RedisServer() as redis:
        shared = await _run(f"{PROCESSES} processes, one shared Redis quota (quota_url=)",
                            redis.url)
    OUT.write_text(draw([own, shared]), encoding="utf-8")
    worst = max(shared.in_window())
    print(f"wrote {OUT}: most in any {PERIOD:g} s window: own limiters "
          f"{max(own.in_window())}, shared {worst} (limit {LIMIT})")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
