"""Client overhead per call: ryze_async `fake_call` and `audio_call` beside raw aiohttp and httpx.

The server runs in a separate process on 127.0.0.1, so ``time.process_time()`` of this process is
the client's CPU alone. Two servers:

- ``minimal``: a bare aiohttp.web handler that reads the body and answers at once with the same
  JSON and ``X-RateLimit-*``/``Date`` headers as the fake server (the default for timings);
- ``fake``: the project's ``FakeRyzeServer`` (``rate_limit=None``), which validates every body and
  records every placed call (slower, so wall times are mostly the server's).

Two schemes: plain HTTP, and HTTPS with a throw-away CA of its own (``tests/tls_certs.py``), which
every client trusts through an ``ssl.SSLContext`` (ryze_async: ``ssl=``).

Every call goes to a new number, as a campaign's or a bot's do (issue 18): ryze_async parses and
validates each one (no parse-cache hit); raw aiohttp and httpx build each call's JSON body and
parse each answer (``_overhead_clients.py``). Per body (a fake call's ``duration`` body, a small
``mediaUrl`` body, and, on http, a 1 MiB audio file sent as ``mediaBase64``) and per mode (calls
one after another; calls by 20 workers at once), every variant is opened side by side in one
event loop and warmed up (one connection per worker); then, round after round in a shuffled
order, each variant places one block of calls. The table gives the median block's CPU (user +
system) and wall time per call, the user-mode part (summed over all blocks), and TCP connections
opened while measured, with ratios to raw aiohttp. Both connection policies: a fresh connection
per call (ryze_async's default; raw aiohttp ``force_close=True``, httpx no keep-alive), and
``pooled`` (keep-alive, 15 s for both ryze_async and raw aiohttp); each ryze_async variant's
target is measured against raw aiohttp on its own policy, in the same run: at most 1.2x its CPU.

    python benchmarks/overhead.py                  # full run on the minimal server, ~4 min
    python benchmarks/overhead.py --server fake    # the same against FakeRyzeServer
    python benchmarks/overhead.py --scheme http    # plain HTTP only
    python benchmarks/overhead.py --quick          # CI smoke: few calls, checks only
    python benchmarks/overhead.py --quick --calls 1000 --rounds 10 --server minimal --small-bodies
                                                   # timings of the small bodies, a light load

Every mode checks, never timings: every call of every variant was answered "placed" by the server,
every variant sent the same number of bytes per call, and a prepared ``Media`` is base64-encoded
zero times per call (``media=bytes``: once per call). Exit 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import random
import ssl
import statistics
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from resource import RUSAGE_SELF, getrusage

import aiohttp
import httpx
from _loopback import ServerProcess, Stop, answer_commands, rate_headers, start_site
from _overhead_clients import (
    HTTPX,
    INSTANCE,
    NUMBER,
    POOLED,
    RAW,
    RAW_POOLED,
    TOKEN,
    Body,
    Call,
    count_encodes,
    make_bodies,
    make_fake_body,
    openers,
    place_calls,
)
from _report import finish, machine, ruled
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.tls_certs import make_pki  # the test suite's throw-away CA

WORKERS = 20
CPU_TARGET = 1.2
ANSWER = json.dumps({"success": True, "message": "Audio call placed",
                     "callId": "3F2A9C41D07B5E8A6C1D", "number": NUMBER}).encode()


# -- the server process -----------------------------------------------------------------------

def serve(kind: str, certs: str | None, conn: Connection) -> None:
    """Entry point of the server process: report the URL, then answer commands on ``conn``.
    ``certs``: the directory of a `make_pki` (serve https with its server certificate)."""
    asyncio.run(_serve(kind, server_tls(certs), conn))


def server_tls(certs: str | None) -> ssl.SSLContext | None:
    if certs is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(Path(certs) / "server.pem", Path(certs) / "server.key")
    return context


async def _serve(kind: str, tls: ssl.SSLContext | None, conn: Connection) -> None:
    placed = [0, 0, 0]  # the minimal server's calls answered 200, body bytes, new connections
    seen: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("token") != TOKEN:
            return web.json_response({"success": False}, status=401)
        placed[0] += 1
        placed[1] += len(body)
        if request.transport is not None and request.transport not in seen:
            seen.add(request.transport)
            placed[2] += 1
        return web.Response(body=ANSWER, content_type="application/json",
                            headers=rate_headers())

    stop: Stop
    if kind == "fake":
        from ryze_async.testing import FakeRyzeServer  # noqa: PLC0415 - server process only

        fake = FakeRyzeServer(token=TOKEN, instances=(INSTANCE,), rate_limit=None,
                              ssl_context=tls)
        await fake.start()
        url, stop = fake.url, fake.stop
        accepted = [0]

        def stats() -> tuple[int, int, int]:
            calls = fake.placed_calls
            opened = fake.connections_accepted - accepted[0]
            accepted[0] = fake.connections_accepted
            result = (len(calls), sum(len(r.body) for r in calls), opened)
            fake.reset()  # bounded memory: 1 MiB bodies are recorded
            return result
    else:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/api/call/audio/{instance}", answer)
        app.router.add_post("/api/call/fake/{instance}", answer)
        url, stop = await start_site(app, tls)

        def stats() -> tuple[int, int, int]:
            result = (placed[0], placed[1], placed[2])
            placed[0] = placed[1] = placed[2] = 0
            return result

    await answer_commands(conn, url, stats, stop)


class Server(ServerProcess):
    """The server in its own process (spawned: nothing of the client's state is shared)."""

    def __init__(self, kind: str, certs: str | None) -> None:
        self.kind = kind
        super().__init__(serve, kind, certs, name=f"{kind} server")

    def take_stats(self) -> tuple[int, int, int]:
        """(calls placed, body bytes, connections opened) since the last call."""
        calls, size, opened = self.stats()
        return int(calls), int(size), int(opened)


# -- measuring --------------------------------------------------------------------------------

@dataclass
class Sample:
    """One block of calls by one variant."""

    calls: int
    cpu: float  # seconds: user + system (time.process_time)
    user: float  # seconds in user mode (getrusage; tick-sampled, so only summed over blocks)
    wall: float
    connects: int = 0  # TCP connections the client opened during the block (0: steady state)


async def measure_block(call: Call, n: int, workers: int) -> Sample:
    usage, cpu, wall = getrusage(RUSAGE_SELF), time.process_time(), time.perf_counter()
    await place_calls(call, n, workers)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Sample(n, cpu, getrusage(RUSAGE_SELF).ru_utime - usage.ru_utime, wall)


# -- the run -----------------------------------------------------------------------------------

def run_mode(server: Server, body: Body, *, n: int, workers: int, rounds: int,
             tls: ssl.SSLContext | None, failures: list[str]) -> dict[str, list[Sample]]:
    """All variants open side by side in one loop; ``rounds`` rounds of one block of calls each.

    Blocks of a few tens of milliseconds, in a shuffled order every round, so drift in the
    machine's load hits every variant alike; the median block is reported.
    """
    order = list(openers(body))
    samples: dict[str, list[Sample]] = {v: [] for v in order}
    shuffle = random.Random(len(body.wire) + workers)

    def check(variant: str, calls: int) -> int:
        placed, size, opened = server.take_stats()
        if placed != calls:
            failures.append(f"{variant} / {body.name}: {placed} of {calls} placed")
        elif size != calls * len(body.wire):
            failures.append(f"{variant} / {body.name}: {size / placed:.0f} bytes per call, "
                            f"expected {len(body.wire)}")
        return opened

    async def run() -> None:
        opened = {v: await opener(server.url, body, v, tls)
                  for v, opener in openers(body).items()}
        try:
            for variant, (call, _) in opened.items():
                await place_calls(call, 2 * workers, workers)  # a warm connection per worker
                check(variant, 2 * workers)
            for _ in range(rounds):
                shuffle.shuffle(order)
                gc.collect()  # once a round: a full collection takes tens of ms here
                for variant in order:
                    block = max(calls_for(variant, n) // rounds, 1)
                    sample = await measure_block(opened[variant][0], block, workers)
                    sample.connects = check(variant, block)
                    samples[variant].append(sample)
        finally:
            for _, close in opened.values():
                await close()

    asyncio.run(run())
    return samples


def calls_for(variant: str, n: int) -> int:
    # httpx is 2-10x slower: an eighth of the calls measures it well and keeps rounds short.
    return max(n // 8, 2) if variant == HTTPX else n


@dataclass(frozen=True)
class Scheme:
    """http, or https with a loopback CA: its certificates' directory and the clients' context."""

    name: str
    certs: str | None = None
    context: ssl.SSLContext | None = None


def run_server(kind: str, scheme: Scheme, quick: bool, n: int, rounds: int, *,
               big_body: bool = True) -> tuple[list[str], list[str]]:
    """Measure every variant against one server; returns (table lines, failed checks)."""
    small, big, _ = make_bodies()
    plan = [(make_fake_body(), 20 if quick else n), (small, 20 if quick else n)]
    big_body = big_body and scheme.context is None  # the 1 MiB file: the body, not the link
    if big_body:
        plan.append((big, 4 if quick else max(n // 10, 40)))
    server = Server(kind, scheme.certs)
    failures: list[str] = []
    described = "FakeRyzeServer (rate_limit=None)" if kind == "fake" else "minimal aiohttp.web"
    lines = [f"server: {described} in a separate process at {server.url}"
             + (" (its own CA, trusted through ssl=)" if scheme.context else "")
             + "; client quota lifted (rate_limit=None); a new number every call"]
    try:
        server.take_stats()
        for body, calls in plan:
            for mode, workers in (("sequential", 1), (f"{WORKERS} concurrent", WORKERS)):
                samples = run_mode(server, body, n=calls, workers=workers, rounds=rounds,
                                   tls=scheme.context, failures=failures)
                lines += table(f"{scheme.name}, {body.name}", body, mode, samples)
        if big_body:
            lines.append(check_encodes(server, big, failures))
    finally:
        server.close()
    return lines, failures


def check_encodes(server: Server, big: Body, failures: list[str]) -> str:
    encodes = asyncio.run(count_encodes(server.url, big, 3))
    server.take_stats()
    if encodes["ryze_async media=Media"] != 0 or encodes["ryze_async media=bytes"] != 3:
        failures.append(f"unexpected base64 encode counts {encodes}")
    return ("base64 encodes by ryze_async over 3 calls with the 1 MiB file: "
            + ", ".join(f"{v}: {c}" for v, c in encodes.items()))


def table(title: str, body: Body, mode: str, samples: dict[str, list[Sample]]) -> list[str]:
    def per_call(field: str) -> dict[str, float]:
        return {v: statistics.median(getattr(s, field) / s.calls for s in ss) * 1e6
                for v, ss in samples.items()}

    cpu, wall = per_call("cpu"), per_call("wall")
    user = {v: sum(s.user for s in ss) / sum(s.calls for s in ss) * 1e6
            for v, ss in samples.items()}
    rounds = len(samples[RAW])
    lines = ruled("", f"{title}, {len(body.wire):,} B body, {mode}: {rounds} rounds of "
                  f"{samples[RAW][0].calls} calls ({samples[HTTPX][0].calls} for httpx), "
                  "median block",
                  f"{'client':31} {'CPU us/call':>11} {'x aiohttp':>9} {'user us':>8} "
                  f"{'x aiohttp':>9} {'wall us/call':>12} {'x aiohttp':>9} {'connects':>8}")
    for v, ss in samples.items():
        lines.append(f"{v:31} {cpu[v]:11.1f} {ratio(cpu[v], cpu[RAW]):9.3f} {user[v]:8.1f} "
                     f"{ratio(user[v], user[RAW]):9.3f} {wall[v]:12.1f} "
                     f"{ratio(wall[v], wall[RAW]):9.3f} {sum(s.connects for s in ss):8d}")
    httpx_cpu = cpu[HTTPX]
    for v in (v for v in samples if v.startswith("ryze_async") and "bytes" not in v):
        anchor = RAW_POOLED if v.endswith(POOLED) else RAW  # the same connection policy
        x_raw = ratio(cpu[v], cpu[anchor])
        verdict = "met" if x_raw <= CPU_TARGET else "NOT met"
        versus = "cheaper" if cpu[v] < httpx_cpu else "NOT cheaper"
        lines.append(f"  target {v}: {x_raw:.3f}x {anchor} CPU (<= {CPU_TARGET}: {verdict}), "
                     f"+{cpu[v] - cpu[anchor]:.0f} us, user {ratio(user[v], user[anchor]):.3f}x; "
                     f"{versus} than httpx (httpx {ratio(httpx_cpu, cpu[v]):.2f}x ours)")
    return lines


def verdicts(targets: list[str]) -> str:
    """How many cells met the target, per connection policy (timings, never a check)."""
    parts = []
    for policy, pooled in (("pooled", True), ("fresh connection", False)):
        lines = [t for t in targets if t.split(":")[0].endswith(POOLED) == pooled]
        met = sum(1 for t in lines if ": met)" in t)
        parts.append(f"{policy}: {met} of {len(lines)} cells within {CPU_TARGET}x")
    return "target (CPU vs raw aiohttp on the same policy, this run): " + "; ".join(parts)


def ratio(value: float, base: float) -> float:
    # --quick runs are too short for the tick-sampled user time: it can read 0.
    return value / base if base else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: few calls, two rounds, both servers; checks, no timings")
    parser.add_argument("--server", choices=("minimal", "fake", "both"),
                        help="server to measure against (default: minimal; --quick: both)")
    parser.add_argument("--scheme", choices=("http", "https", "both"), default="both",
                        help="plain HTTP, TLS with a loopback CA, or both (default)")
    parser.add_argument("--calls", type=int,
                        help="calls per variant and mode (default 2000; httpx an eighth); "
                        "with --quick: timings of a light run instead of the smoke's 20")
    parser.add_argument("--rounds", type=int,
                        help="rounds of one block per variant (default 20; --quick: 2)")
    parser.add_argument("--small-bodies", action="store_true",
                        help="only the fake_call and media_url bodies (not the 1 MiB file)")
    args = parser.parse_args(argv)
    kind = args.server or ("both" if args.quick else "minimal")
    few = args.quick and args.calls is None  # the smoke: checks only, no timings
    calls = args.calls or 2000
    rounds = args.rounds or (2 if args.quick else 20)
    print(machine(f"Python {platform.python_version()} ({platform.python_implementation()})",
                  f"{platform.system()} {platform.release()}", f"aiohttp {aiohttp.__version__}",
                  f"httpx {httpx.__version__}", ssl.OPENSSL_VERSION))
    started = time.perf_counter()
    prepare = time.process_time()
    make_bodies()
    print(f"one-off: building both bodies and Media.from_bytes(1 MiB) took "
          f"{(time.process_time() - prepare) * 1e3:.1f} ms CPU")
    failures: list[str] = []
    targets: list[str] = []
    with tempfile.TemporaryDirectory() as certs:
        schemes = []
        if args.scheme != "https":
            schemes.append(Scheme("http"))
        if args.scheme != "http":
            pki = make_pki(Path(certs))
            schemes.append(Scheme("https", certs, ssl.create_default_context(cafile=pki.ca)))
        for scheme in schemes:
            kinds = ("minimal", "fake") if kind == "both" else (kind,)
            if args.quick and args.server is None and scheme.context is not None:
                kinds = ("fake",)  # --quick: the fake server's TLS, the project's own
            for server_kind in kinds:
                lines, failed = run_server(server_kind, scheme, few, calls, rounds,
                                           big_body=not args.small_bodies)
                print("\n".join(lines), end="\n\n", flush=True)
                targets += [line for line in lines if line.startswith("  target ")]
                failures += failed
    print(verdicts(targets))
    return finish(started, few, failures, "every call placed, same bytes per call in every "
                  "variant, prepared Media never re-encoded", sep="; ")


if __name__ == "__main__":
    sys.exit(main())
