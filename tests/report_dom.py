"""Headless Chromium for the HTML report's tests: render a page, read its DOM back.

Debian's ``chromium`` runs with no network and a throw-away profile; ``CHROMIUM`` is None
where it is not installed (the tests then skip, naming ``.ci/run``, which installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["CHROMIUM", "Dom", "chromium"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--window-size=1280,2000"]


class Dom(HTMLParser):
    """The rendered DOM's counts, problem rows and svg ids."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.rows: list[list[str]] = []
        self.svgs: list[str] = []
        self.bars = 0
        self._count: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.svgs.append(a.get("id") or "")
        elif tag == "rect" and a.get("class") == "bar":
            self.bars += 1
        elif tag == "td" and a.get("data-count"):
            self._count = a["data-count"]
        elif tag == "tr" and a.get("class") == "problem":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._count is not None:
            self.counts[self._count] = int(data)
            self._count = None
        elif self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None


def chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, timeout=120, check=False)
