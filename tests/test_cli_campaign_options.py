"""#10 CLI: every option says what it does, ``campaign --help`` shows a worked example, and
``--timeout``, ``--max-retries`` and ``--media-base64`` reach the campaign's client."""

from __future__ import annotations

import argparse
import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async._cli._campaign import job_from_args
from ryze_async._cli._parser import build_parser
from ryze_async.testing import FakeRyzeServer, Fault, wav_tone

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
A = "5511900000001"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["call", "fake-call", "campaign", "report", "sandbox", "demo"])
def test_every_option_has_help_text(command: str) -> None:
    missing = [a.dest for a in _subparsers()[command]._actions if not a.help]
    assert missing == []


async def test_campaign_help_shows_a_worked_example() -> None:
    code, out, _ = await run_cli(["campaign", "--help"], {})
    assert code == 0
    assert "example:" in out
    assert "ryze-async campaign numbers.xlsx" in out
    assert "ryze-async report spring.db --html" in out
    for option in ("--timeout", "--max-retries", "--media-base64", "--media-url",
                   "--metrics-port", "--sheet"):
        assert option in out


async def _campaign(server: FakeRyzeServer, tmp_path: Path, *extra: str) -> tuple[int, str]:
    numbers = tmp_path / "n.csv"
    numbers.write_text(f"phone\n{A}\n")
    journal = tmp_path / "j.db"
    journal.unlink(missing_ok=True)
    env = {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
           "RYZE_BASE_URL": server.url}
    code, _, err = await run_cli(["campaign", str(numbers), "--journal", str(journal),
                                  "--json", *extra], env)
    return code, err


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


async def test_media_base64(server: FakeRyzeServer, tmp_path: Path) -> None:
    audio = base64.b64encode(wav_tone(0.1)).decode()
    code, err = await _campaign(server, tmp_path, "--media-base64", audio)
    assert code == 0, err
    assert [r.json["mediaBase64"] for r in server.placed_calls] == [audio]


async def test_timeout_bounds_a_request_that_never_answers(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    server.fail_next(Fault.HANG)
    started = time.monotonic()
    code, err = await _campaign(server, tmp_path, "--fake", "--timeout", "0.1")
    assert code == 1, err  # unknown: it may have been placed
    assert time.monotonic() - started < 10  # not the default 30 s
    assert len(server.requests) == 1  # and never sent again


def test_max_retries_and_timeout_reach_the_job() -> None:
    args = build_parser().parse_args(["campaign", "n.csv", "--journal", "j.db", "--fake",
                                      "--max-retries", "0", "--timeout", "2.5"])
    job = job_from_args(args)
    assert (job.max_retries, job.timeout) == (0, 2.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["campaign", "n.csv", "--journal", "j.db", "--fake",
                                   "--max-retries", "-1"])
