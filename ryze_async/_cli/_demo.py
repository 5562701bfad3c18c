"""``ryze-async demo``: a real campaign against an in-process sandbox, in well under a minute.

It starts the fake RyzeAPI on 127.0.0.1 (its own token: no RYZE_* variable is read, nothing
else is contacted), writes a one-second WAV tone and a CSV of numbers with a header, a comment,
duplicates and invalid entries, and runs them through exactly the ``campaign`` command's code
at a sped-up quota.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from ryze_async import Media
from ryze_async._config import Secret
from ryze_async.testing import FakeRyzeServer, wav_tone

from ._campaign import CampaignJob, run_campaign_job

__all__ = ["demo_numbers", "run_demo"]

_INSTANCE = "demo"


def demo_numbers(count: int, seed: int = 7) -> str:
    """CSV text: a header, a comment, ``count`` distinct numbers, 5 repeats, 3 invalid."""
    rng = random.Random(seed)
    numbers = [f"+55 (11) 9{n // 10000:04d}-{n % 10000:04d}"
               for n in rng.sample(range(10**8), count)]
    lines = ["number,name", "# demo list: repeats and invalid entries are on purpose"]
    lines += [f"{number},Person {i}" for i, number in enumerate(numbers, 1)]
    lines += [f"{number},Repeat" for number in numbers[:5]]
    lines += ["12345,Too short", "not-a-number,Typo", "123456@g.us,A group"]
    return "\n".join(lines) + "\n"


def _prepare(where: Path, numbers: int) -> tuple[Path, Path, Path]:
    where.mkdir(parents=True, exist_ok=True)
    audio = where / "message.wav"
    audio.write_bytes(wav_tone())
    csv_path = where / "numbers.csv"
    csv_path.write_text(demo_numbers(numbers), encoding="utf-8")
    return audio, csv_path, where / "demo-journal.db"


async def run_demo(
    *, numbers: int, rate_limit: int, rate_period: float, keep_dir: Path | None,
    as_json: bool, out: TextIO,
) -> int:
    """Run the demo; with ``keep_dir`` its files (and journal, to resume or report) stay."""
    if keep_dir is not None:
        return await _demo_in(keep_dir, numbers=numbers, rate_limit=rate_limit,
                              rate_period=rate_period, as_json=as_json, out=out, keep=True)
    with tempfile.TemporaryDirectory(prefix="ryze-demo-") as tmp:
        return await _demo_in(Path(tmp), numbers=numbers, rate_limit=rate_limit,
                              rate_period=rate_period, as_json=as_json, out=out, keep=False)


async def _demo_in(
    where: Path, *, numbers: int, rate_limit: int, rate_period: float, as_json: bool,
    out: TextIO, keep: bool,
) -> int:
    audio, csv_path, journal = await asyncio.to_thread(_prepare, where, numbers)
    token = secrets.token_urlsafe(16)
    async with FakeRyzeServer(token=token, instances=(_INSTANCE,), rate_limit=rate_limit,
                              rate_period=rate_period) as server:
        print(f"demo: sandbox RyzeAPI on {server.url}; {numbers} numbers (+ repeats and "
              f"invalid entries) in {csv_path.name}; audio {audio.name} (1 s WAV tone); "
              f"quota sped up to {rate_limit} calls per {rate_period:g}s", file=out, flush=True)
        job = CampaignJob(
            numbers=csv_path, journal=journal, media=Media.from_file(audio),
            token=Secret(token), instance=_INSTANCE, base_url=server.url,
            rate_limit=rate_limit, rate_period=rate_period, concurrency=10,
            tty=sys.stdout.isatty(), log_interval=2.0, as_json=as_json,
        )

        def epilogue() -> str:
            record = (f"demo: the sandbox's own record: {len(server.placed_calls)} calls "
                      f"placed, {len({r.json['number'] for r in server.placed_calls})} "
                      "distinct numbers")
            if keep:
                record += f"\ndemo: files kept in {where}; try: ryze-async report {journal}"
            return record

        return await run_campaign_job(job, out, epilogue)
