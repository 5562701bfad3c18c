"""Make docs/report.png: the HTML report of a real campaign against the fake server.

A campaign of the demo's list (260 numbers, 5 repeats, 3 invalid entries) runs against a
`FakeRyzeServer` on 127.0.0.1 at a quota of 30 calls per 20 s (90 a minute, so the report's
per-minute chart has a few minutes to show); the server drops two requests after reading them
(``unknown``) and answers two with a 500 in RyzeAPI's envelope (``failed``). Then
``ryze-async report campaign.db --html`` writes the report and a headless Chromium takes its
picture. Nothing leaves the machine; Chromium runs with its network features off, and the page
fetches nothing anyway (inline CSS and SVG).

    python docs/report_screenshot.py    # about 3 minutes; needs chromium on PATH

Run it again whenever the HTML report's look changes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ryze_async import Campaign, Media, RyzeClient
from ryze_async._cli._demo import demo_numbers
from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

OUT = Path(__file__).with_name("report.png")
NUMBERS = 260
LIMIT, PERIOD = 30, 20.0
TOKEN = "report-token"  # noqa: S105 - the fake server's token
INSTANCE = "demo"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--hide-scrollbars", "--window-size=1200,1450"]


async def run_campaign(where: Path) -> Path:
    numbers = where / "numbers.csv"
    numbers.write_text(demo_numbers(NUMBERS), encoding="utf-8")
    audio = where / "message.wav"
    audio.write_bytes(wav_tone())
    journal = where / "campaign.db"
    async with FakeRyzeServer(token=TOKEN, instances=(INSTANCE,), rate_limit=LIMIT,
                              rate_period=PERIOD) as server:
        server.fail_next(Fault.DROP_AFTER_READ, times=2)
        server.fail_next(Fault.SERVER_ERROR, times=2)
        async with RyzeClient(token=TOKEN, instance=INSTANCE, base_url=server.url,
                              rate_limit=LIMIT, rate_period=PERIOD) as client:
            campaign = Campaign(client, numbers, journal=journal, media=Media.from_file(audio),
                                concurrency=10)
            summary = await campaign.run()
    print(f"campaign: {summary.placed} placed, {summary.failed} failed, "
          f"{summary.unknown} unknown, {summary.skipped} skipped")
    return journal


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("needs chromium on PATH", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="ryze-report-shot-") as tmp:
        where = Path(tmp)
        journal = asyncio.run(run_campaign(where))
        page = where / "report.html"
        subprocess.run([sys.executable, "-m", "ryze_async", "report", journal.name,  # noqa: S603
                        "--html", page.name, "--quota", str(LIMIT * 60 / PERIOD)],
                       cwd=where, check=True)
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={where / 'profile'}",  # noqa: S603
                        f"--screenshot={OUT}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
