"""The CLI's exit codes: the user's mistakes are exit 2, our bugs are exit 70 and say so.

Run in-process through ``main`` (no subprocess: fast); the engine's failures are injected by
replacing a public method, the way a bug would surface from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import ryze_async._cli._commands as commands
from ryze_async import (
    Campaign,
    CampaignSummary,
    InputError,
    JournalMismatchError,
    OutcomeUnknownError,
)
from ryze_async._cli import main
from ryze_async._cli._exits import exit_for as real_exit_for
from ryze_async.testing import FakeRyzeServer, Fault

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]

TOKEN = "tok-0123456789abcdefghijklmnopqrstuv"
UNREACHABLE = "http://127.0.0.1:9"  # discard port, nothing listens: connection refused


@pytest.fixture(autouse=True)
def _no_ryze_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RYZE_TOKEN", "RYZE_INSTANCE", "RYZE_BASE_URL", "RYZE_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def campaign_args(tmp_path: Path, *extra: str) -> list[str]:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("number\n5511900000001\n", encoding="utf-8")
    return ["campaign", str(numbers), "--fake", "--journal", str(tmp_path / "j.db"),
            "--token", TOKEN, "--instance", "x", "--base-url", UNREACHABLE, *extra]


def engine_raises(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    async def run(self: Campaign) -> CampaignSummary:
        raise exc

    monkeypatch.setattr(Campaign, "run", run)


@pytest.mark.parametrize("exc", [ValueError("engine bug"), OSError(28, "No space left"),
                                 KeyError("state")])
def test_an_engine_bug_is_exit_70_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    exc: BaseException,
) -> None:
    engine_raises(monkeypatch, exc)
    assert main(campaign_args(tmp_path)) == 70
    err = capsys.readouterr().err
    assert "bug" in err
    assert type(exc).__name__ in err
    assert "Traceback" not in err
    assert "usage" not in err


def test_verbose_shows_the_bugs_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    engine_raises(monkeypatch, ValueError("engine bug"))
    assert main(["-v", *campaign_args(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "ValueError: engine bug" in err


@pytest.mark.parametrize("exc", [InputError("numbers.csv holds no numbers"),
                                 JournalMismatchError("a different campaign")])
def test_the_users_input_errors_stay_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    exc: BaseException,
) -> None:
    engine_raises(monkeypatch, exc)
    assert main(campaign_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert str(exc) in err
    assert "bug" not in err


@pytest.mark.parametrize("relative", [False, True])
def test_files_the_user_named_are_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    relative: bool,
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = Path("no-such-folder", "j.db") if relative else tmp_path / "no-such-folder" / "j.db"
    args = campaign_args(tmp_path)
    args[args.index("--journal") + 1] = str(missing)
    assert main(args) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["call", "5511900000001", "--media", str(tmp_path / "nope.mp3"),
                 "--token", TOKEN, "--instance", "x", "--base-url", UNREACHABLE]) == 2
    assert "nope.mp3" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope.db")]) == 2
    assert "no journal" in capsys.readouterr().err


def test_argparse_errors_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["campaign", "--concurrency", "0"])
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_the_json_summary_is_printed_once_and_last(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["demo", "--numbers", "3", "--rate-limit", "1000", "--dir", str(tmp_path),
                 "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    json_lines = [line for line in out if line.startswith("{")]
    assert json_lines == [out[-1]]
    assert json.loads(out[-1])["placed"] == 3


def leaked(exc: BaseException) -> list[str]:
    """The 8-character pieces of TOKEN found in the traceback text with every frame's locals."""
    text = "".join(traceback.TracebackException.from_exception(
        exc, capture_locals=True).format())
    return [TOKEN[i:i + 8] for i in range(len(TOKEN) - 7) if TOKEN[i:i + 8] in text]


def caught_by_main(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    seen: list[BaseException] = []

    def record(exc: BaseException, args: argparse.Namespace) -> int:
        seen.append(exc)
        return real_exit_for(exc, args)

    monkeypatch.setattr(commands, "exit_for", record)
    return seen


async def test_no_token_in_the_locals_of_a_failed_calls_traceback(
    monkeypatch: pytest.MonkeyPatch, ryze_server_factory: ServerFactory
) -> None:
    # The request reaches the server (the token travelled in its headers), then the connection
    # drops: OutcomeUnknownError through the transport's, the client's and the CLI's frames.
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    server.fail_next(Fault.DROP_AFTER_READ)
    seen = caught_by_main(monkeypatch)
    code, out, err = await run_cli(["fake-call", "5511900000001", "--token", TOKEN,
                                    "--instance", "my-instance", "--base-url", server.url], {})
    assert code == 1, err
    [exc] = seen
    assert isinstance(exc, OutcomeUnknownError)
    assert leaked(exc) == []
    assert TOKEN[:8] not in out + err


def test_no_token_in_the_locals_of_a_failed_campaigns_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seen = caught_by_main(monkeypatch)
    engine_raises(monkeypatch, RuntimeError("engine bug"))
    assert main(["-v", *campaign_args(tmp_path)]) == 70
    [exc] = seen
    assert leaked(exc) == []
    assert TOKEN[:8] not in capsys.readouterr().err


def test_main_leaves_the_library_loggers_level_as_it_found_it(tmp_path: Path) -> None:
    logger = logging.getLogger("ryze_async")
    before = logger.level
    main(["report", str(tmp_path / "nope.db")])
    main(["-v", "report", str(tmp_path / "nope.db")])
    assert logger.level == before
    assert logger.handlers == []
