"""Every code example of the documentation runs here, against the fake server, so none can rot.

Each ```python block of README.md and docs/**/*.md is one test: it runs with ``RYZE_TOKEN``,
``RYZE_INSTANCE`` and ``RYZE_BASE_URL`` pointing at a `FakeRyzeServer` on 127.0.0.1 (in a thread
of its own, so an example may call ``asyncio.run`` itself), in a directory holding the files the
examples name (numbers.csv, message.mp3, ...). Top-level ``await`` is allowed, as in
``python -m asyncio``. An example that defines ``test_*`` functions is a pytest example: each is
called with the fixtures it names. A block that cannot run here is marked just above it with
``<!-- not run: REASON -->``; those are counted, and must stay few. Shell examples are checked
more cheaply: every option of every ``ryze-async`` command they show exists in the parser.

Nothing here needs the ``docs`` extra: the Markdown is read as text.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import inspect
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ryze_async._cli._parser import build_parser
from ryze_async.testing import FakeRyzeServer
from tests.audio import AUDIO_SAMPLES as AUDIO

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: The token the examples write when they show the keyword (``token="..."``) and the fixtures'.
TOKENS = ("...", "test-token")
INSTANCE = "my-instance"
#: More blocks marked "not run" than this means the docs drift towards untested fragments.
MAX_NOT_RUN = 3
EXAMPLE_TIMEOUT = 60.0  # seconds; an example waits for nothing longer than a quota window

_FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
_NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]*?) -->\s*$")
_INCLUDE = re.compile(r'^\s*--8<-- "[^"]+"\s*$')


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    not_run: str | None  # the reason, for a block marked not to run

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(path: Path) -> Iterator[Block]:
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        indent = len(match["indent"])
        code = "".join(line[indent:] + "\n" for line in match["body"].splitlines())
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _NOT_RUN.search(before)
        yield Block(path, text.count("\n", 0, match.start()) + 1, match["lang"], code,
                    marker["reason"].strip() if marker else None)


def _is_include(block: Block) -> bool:
    """A block that only includes a file (pymdownx.snippets): that file has its own tests."""
    return all(_INCLUDE.match(line) for line in block.code.splitlines() if line.strip())


ALL_BLOCKS = [block for path in DOC_FILES for block in _blocks(path)]
PYTHON = [b for b in ALL_BLOCKS if b.lang == "python" and not _is_include(b)]
RUN = [b for b in PYTHON if b.not_run is None]
NOT_RUN = [b for b in PYTHON if b.not_run is not None]
SHELL = [b for b in ALL_BLOCKS if b.lang in {"bash", "console", "sh", "shell"}]


# --- running one example -------------------------------------------------------------------

class ThreadedFakeServer:
    """A `FakeRyzeServer` on a loop in its own thread: the example owns the main thread's loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: FakeRyzeServer | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def __enter__(self) -> FakeRyzeServer:
        self._thread.start()

        async def start() -> FakeRyzeServer:
            server = FakeRyzeServer(tokens=TOKENS, instances=(INSTANCE,))
            await server.start()
            return server

        self.server = self._run(start())
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self._run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _write_example_files(directory: Path) -> None:
    """The files the examples name, as a user would have them."""
    numbers = "number,name\n+55 11 99999-0001,Ana\n+55 11 99999-0002,Bruno\n5511999990003,Carla\n"
    (directory / "numbers.csv").write_text(numbers, encoding="utf-8")
    for name in ("message.mp3", "m.mp3"):
        (directory / name).write_bytes(AUDIO["mp3"])
    (directory / "message.wav").write_bytes(AUDIO["wav"])
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    for row in numbers.splitlines():
        sheet.append(row.split(","))
    book.save(directory / "numbers.xlsx")


def run_example(code: str, filename: str, fixtures: dict[str, object]) -> dict[str, Any]:
    """Run one example as its reader would; its pytest functions get `fixtures` by name."""
    compiled = compile(code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    if compiled.co_flags & inspect.CO_COROUTINE:
        asyncio.run(asyncio.wait_for(eval(compiled, namespace), EXAMPLE_TIMEOUT))  # noqa: S307
    else:
        exec(compiled, namespace)  # noqa: S102 - the documentation's own code, on loopback
    for name, test in list(namespace.items()):
        if name.startswith("test_") and inspect.iscoroutinefunction(test):
            wanted = inspect.signature(test).parameters
            missing = set(wanted) - set(fixtures)
            assert not missing, f"{filename}: {name} wants fixtures the docs test lacks: {missing}"
            arguments = {key: fixtures[key] for key in wanted}
            asyncio.run(asyncio.wait_for(test(**arguments), EXAMPLE_TIMEOUT))
    return namespace


@pytest.fixture
def example_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRyzeServer]:
    _write_example_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    with ThreadedFakeServer() as server:
        monkeypatch.setenv("RYZE_TOKEN", "test-token")
        monkeypatch.setenv("RYZE_INSTANCE", INSTANCE)
        monkeypatch.setenv("RYZE_BASE_URL", server.url)
        for name in ("RYZE_QUOTA_URL", "RYZE_DEFAULT_REGION", "RYZE_CA_FILE"):
            monkeypatch.delenv(name, raising=False)
        yield server


@pytest.mark.parametrize("block", RUN, ids=[b.name for b in RUN])
def test_example_runs(block: Block, example_env: FakeRyzeServer) -> None:
    run_example(block.code, block.name, {"ryze_server": example_env})


# --- the harness itself ---------------------------------------------------------------------

def test_the_harness_fails_on_a_broken_example(example_env: FakeRyzeServer) -> None:
    """A wrong example is a failing test: a refused number, a wrong assertion, a bad name."""
    refused = (
        "from ryze_async import RyzeClient\n"
        "async with RyzeClient() as client:\n"
        "    await client.fake_call('12')\n"
    )
    with pytest.raises(ValueError, match="not a phone number"):
        run_example(refused, "broken-number", {})
    wrong = (
        "from ryze_async import RyzeClient\n"
        "async with RyzeClient() as client:\n"
        "    result = await client.fake_call('5511999999999')\n"
        "assert result.call_id is None\n"
    )
    with pytest.raises(AssertionError):
        run_example(wrong, "broken-assert", {})
    with pytest.raises(NameError):
        run_example("client.fake_call('5511999999999')\n", "fragment", {})
    failing_pytest_example = (
        "async def test_it(ryze_server):\n"
        "    assert len(ryze_server.requests) == 99\n"
    )
    with pytest.raises(AssertionError):
        run_example(failing_pytest_example, "broken-test", {"ryze_server": example_env})


def test_the_examples_reach_the_fake_server(example_env: FakeRyzeServer) -> None:
    """The environment the examples see is the fake server: a call there is recorded."""
    code = (
        "from ryze_async import RyzeClient\n"
        "async with RyzeClient() as client:\n"
        "    await client.fake_call('5511999999999')\n"
    )
    run_example(code, "probe", {})
    assert [r.json for r in example_env.requests] == [{"number": "5511999999999"}]


def test_examples_are_found_and_few_are_not_run() -> None:
    assert len(RUN) >= 10, [b.name for b in RUN]
    assert len(NOT_RUN) <= MAX_NOT_RUN, [(b.name, b.not_run) for b in NOT_RUN]
    assert all(b.not_run for b in NOT_RUN), "a 'not run' marker must say why"


def test_every_block_names_its_language() -> None:
    """An unlabelled fence would escape both checks below; a fence says what it holds."""
    unlabelled = [b.name for b in ALL_BLOCKS if not b.lang]
    assert not unlabelled


# --- the API reference covers the public API ------------------------------------------------

def test_the_api_reference_documents_every_public_name() -> None:
    import ryze_async
    import ryze_async.testing

    reference = "".join(p.read_text() for p in (ROOT / "docs" / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)$", reference, re.M))
    public = {f"ryze_async.{name}" for name in ryze_async._EXPORTS}
    public |= {f"ryze_async.testing.{name}" for name in ryze_async.testing.__all__}
    public |= {"ryze_async.metrics", "ryze_async.otel"}
    assert public - documented == set()


# --- shell examples: every option of every command exists ------------------------------------

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no commands")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def _commands(block: Block) -> Iterator[list[str]]:
    """The ryze-async command lines of a shell block, as argument lists after the program."""
    text = block.code.replace("\\\n", " ")
    for raw in text.splitlines():
        if block.lang == "console" and not raw.startswith("$ "):
            continue  # the command's output
        line = raw.removeprefix("$ ").strip()
        for part in re.split(r"\s(?:\||&&|;|&)\s?", line):
            words = shlex.split(part.split(" #")[0], posix=True) if part.strip() else []
            if words[:1] == ["ryze-async"]:
                yield words[1:]
            elif words[:3] == ["python", "-m", "ryze_async"]:
                yield words[3:]


CLI_LINES = [(b, args) for b in SHELL for args in _commands(b)]


def test_shell_examples_show_commands() -> None:
    assert len(CLI_LINES) >= 20


@pytest.mark.parametrize(("block", "args"), CLI_LINES,
                         ids=[f"{b.name}:{' '.join(a)[:40]}" for b, a in CLI_LINES])
def test_every_cli_option_shown_exists(block: Block, args: list[str]) -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    globals_ = _options(parser)
    words = iter(args)
    command = next((w for w in words if not w.startswith("-")), None)
    global_words = args[: args.index(command)] if command in args else args
    assert all(w.split("=")[0] in globals_ for w in global_words if w.startswith("-")), args
    if command is None:
        return
    assert command in commands, f"{block.name}: no command {command!r}"
    known = _options(commands[command])
    unknown = [w for w in words if w.startswith("--") and w.split("=")[0] not in known]
    assert not unknown, f"{block.name}: {command} has no option {unknown}"


def test_the_documented_campaign_help_is_the_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/operating.md shows the end of ``campaign --help``: the worked example and exits."""
    monkeypatch.setenv("COLUMNS", "200")
    block = next(b for b in _blocks(ROOT / "docs" / "operating.md")
                 if b.code.startswith("$ ryze-async campaign --help | tail -8"))
    shown = block.code.splitlines()[1:]
    real = _subparsers(build_parser())["campaign"].format_help().rstrip("\n").splitlines()[-8:]
    assert shown == real


def test_getting_started_lists_every_extra() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    page = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([\w-]+)` \|", page, re.M))
    assert set(extras) == listed
