"""``ryze-async --help`` loads only what it uses: argparse, not the HTTP stack or the engine.

The commands import the client, the journal and rich when they run. The first test loads the
CLI modules under an empty ``ryze_async`` package (its ``__init__`` not run), so it sees what
the CLI modules themselves import whatever the package's own ``__init__`` does; the second runs
the real ``python -m ryze_async --help`` once ``import ryze_async`` is lazy too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra  # what a fresh interpreter imports

HEAVY = ("aiohttp", "pydantic", "rich", "sqlite3", "yarl", "phonenumbers", "tenacity")
ENGINE = ("ryze_async._client", "ryze_async._campaign", "ryze_async._campaign.journal",
          "ryze_async._transports", "ryze_async._quota", "ryze_async.testing")

# Each probe prints only the modules loaded after it started: the interpreter's own start-up
# (site, and coverage.py when CI measures subprocesses, which loads sqlite3) is not ours.
PROBE = """
import importlib.util, sys, types
before = set(sys.modules)
spec = importlib.util.find_spec("ryze_async")
package = types.ModuleType("ryze_async")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["ryze_async"] = package  # the CLI's own imports only: __init__ is not run
import ryze_async._cli
from ryze_async._cli import _parser
_parser.build_parser().format_help()
try:
    ryze_async._cli.main(["--help"])
except SystemExit:
    pass
try:
    ryze_async._cli.main(["campaign", "--help"])
except SystemExit:
    pass
print(" ".join(m for m in sys.modules if m not in before))
"""


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          check=True, timeout=60)


def _heavy(modules: list[str]) -> list[str]:
    return sorted(m for m in modules
                  if m.split(".")[0] in HEAVY or m.startswith(ENGINE))


def test_building_the_parser_and_help_import_nothing_heavy() -> None:
    loaded = _python("-c", PROBE).stdout.split()
    assert "ryze_async._cli._parser" in loaded  # the probe did load the CLI
    assert _heavy(loaded) == []


def _imported(stderr: str) -> list[str]:
    """Module names from ``-X importtime`` output."""
    return [line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line]


REAL_HELP = """
import runpy, sys
before = set(sys.modules)
sys.argv = ["ryze-async", "--help"]
try:
    runpy.run_module("ryze_async", run_name="__main__")
except SystemExit:
    pass
print("LOADED", " ".join(m for m in sys.modules if m not in before))
"""


def test_help_in_a_real_process_imports_nothing_heavy() -> None:
    result = _python("-c", REAL_HELP)
    assert "usage: ryze-async" in result.stdout
    loaded = result.stdout.rsplit("LOADED", 1)[1].split()
    assert "ryze_async._cli._parser" in loaded
    assert _heavy(loaded) == []


# A whole ``campaign`` run through the CLI's own path, its output a pipe (as under cron, CI or
# a service), against a fake server started in the same probe before anything is recorded.
CAMPAIGN_OFF_A_TERMINAL = """
import asyncio, io, sys, tempfile
from pathlib import Path
from ryze_async.testing import FakeRyzeServer

async def main():
    async with FakeRyzeServer(token="t", instances=("i",), rate_limit=None) as server:
        before = set(sys.modules)
        from ryze_async._cli import _parser
        from ryze_async._cli._commands import run_command
        work = Path(tempfile.mkdtemp())
        (work / "n.csv").write_text("number\\n+5511987654321\\n")
        args = _parser.build_parser().parse_args([
            "campaign", str(work / "n.csv"), "--journal", str(work / "j.db"), "--fake",
            "--token", "t", "--instance", "i", "--base-url", server.url])
        code = await asyncio.wait_for(run_command(args, io.StringIO()), 60)
        print("PLACED", len(server.placed_calls), "EXIT", code)
        print("LOADED", " ".join(m for m in sys.modules if m not in before))
        from ryze_async import _bodies
        print("BUILT", " ".join(model.__name__ for model in (_bodies.AudioCallBody,
              _bodies.FakeCallBody) if model.__pydantic_complete__))

asyncio.run(main())
"""


#: Loaded only when used: the live bar on a terminal, a workbook, metrics, tracing, a shared
#: quota, a PostgreSQL journal.
ONLY_WHEN_USED = ("rich", "openpyxl", "prometheus_client", "opentelemetry", "redis", "asyncpg")


def test_a_campaign_whose_output_is_not_a_terminal_does_not_load_rich() -> None:
    # rich draws the live bar on a terminal; off one, the progress is plain lines (issue 18:
    # start-up CPU of a campaign against a bare script). A CSV campaign on SQLite loads none
    # of the optional packages either.
    result = _python("-c", CAMPAIGN_OFF_A_TERMINAL)
    assert "PLACED 1 EXIT 0" in result.stdout
    loaded = result.stdout.rsplit("LOADED", 1)[1].split()
    assert "ryze_async._cli._campaign" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in ONLY_WHEN_USED) == []


#: What a CSV campaign without calling windows does not use: the dry run's planner, the
#: workbook reader, libphonenumber's time-zone tables (``--window`` only). (zipfile itself
#: comes with importlib.metadata, which pydantic loads to look for its plugins.)
NOT_FOR_A_CSV_RUN = ("ryze_async._campaign.dry_run", "ryze_async._campaign.inputs.xlsx",
                     "phonenumbers.timezone", "phonenumbers.tzdata")


def test_a_csv_campaign_loads_only_what_it_uses() -> None:
    # Issue 18: start-up CPU of a campaign against a bare script. The request-body models
    # validate only an argument the fast path refuses (a wrong type, a duration out of range):
    # a campaign of plain numbers never builds them.
    result = _python("-c", CAMPAIGN_OFF_A_TERMINAL)
    assert "PLACED 1 EXIT 0" in result.stdout
    loaded = result.stdout.rsplit("LOADED", 1)[1].split("BUILT", 1)[0].split()
    assert "ryze_async._cli._campaign" in loaded
    assert sorted(m for m in loaded if m in NOT_FOR_A_CSV_RUN) == []
    assert result.stdout.rsplit("BUILT", 1)[1].split() == []


# pydantic's ``use_attribute_docstrings`` finds each class's source by walking the call stack
# and matching it against every loaded module (about 4 % of a one-number campaign's start-up
# CPU); the answer models take their descriptions from this file's source, parsed once.
MODELS_AT_IMPORT = """
import pydantic._internal._fields as fields
walks = []
fields._update_fields_from_docstrings = lambda *a, **k: walks.append(a[0].__name__)
import ryze_async._models as models
print("WALKS", walks, "BUILT", [m.__name__ for m in (models.CallResult, models.RateLimitInfo)
                                 if m.__pydantic_complete__])
"""


def test_importing_the_answer_models_builds_nothing_and_reads_no_stack() -> None:
    out = _python("-c", MODELS_AT_IMPORT).stdout
    assert "WALKS [] BUILT []" in out, out


# ``ryze-async campaign`` as the program (no argv: the process is its own) against a fake
# server on another thread's loop; then the same run as a caller's ``main([...])``.
PROGRAM_RUN = """
import asyncio, gc, sys, tempfile, threading
from pathlib import Path
from ryze_async.testing import FakeRyzeServer
from ryze_async._cli import main

loop = asyncio.new_event_loop()
server = FakeRyzeServer(token="t", instances=("i",), rate_limit=None)
threading.Thread(target=loop.run_forever, daemon=True).start()
asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
work = Path(tempfile.mkdtemp())
(work / "n.csv").write_text("number\\n+5511987654321\\n")
argv = ["campaign", str(work / "n.csv"), "--journal", str(work / "j.db"), "--fake",
        "--token", "t", "--instance", "i", "--base-url", server.url]
code = main(argv)
print("CALLER", code, gc.get_freeze_count(), gc.isenabled())
sys.argv = ["ryze-async", *argv[:3], str(work / "k.db"), *argv[4:]]
code = main()
print("PROGRAM", code, gc.get_freeze_count() > 10000, gc.isenabled(), len(server.placed_calls))
"""


def test_the_program_freezes_its_start_up_heap_a_caller_s_is_left_alone() -> None:
    # Issue 18: the cyclic collector paused while a sending command's modules load, and what
    # they built frozen (never scanned again); only when the process is the CLI's own.
    out = _python("-c", PROGRAM_RUN).stdout
    assert "CALLER 0 0 True" in out, out
    assert "PROGRAM 0 True True 2" in out, out
