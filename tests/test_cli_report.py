"""``report`` output contracts and the CLI's usage errors (``main`` run in-process).

``report --json`` prints exactly one JSON object; ``--csv -`` writes the CSV to stdout; a CSV
into a missing folder is a usage error. Configuration errors are reported before the
campaign banner, in the CLI's own words, with exit code 2.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ryze_async import Campaign, RyzeClient
from ryze_async.testing import FakeRyzeServer, wav_tone

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
NUMBERS = [f"55119{i:08d}" for i in range(5)]


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await run_cli(args, env or {})


@pytest.fixture
async def journal(ryze_server_factory: ServerFactory, tmp_path: Path) -> Path:
    server = await ryze_server_factory(rate_limit=None)
    path = tmp_path / "j.db"
    async with RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                          rate_limit=None) as client:
        await Campaign(client, [*NUMBERS, "123"], journal=path, fake=True).run()
    return path


async def test_report_json_is_exactly_one_object(journal: Path) -> None:
    code, out, _ = await run("report", str(journal), "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["placed"], data["invalid"], data["journal"]) == (5, 1, str(journal))


async def test_report_csv_to_stdout(journal: Path) -> None:
    code, out, err = await run("report", str(journal), "--csv", "-")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["number"] for r in rows if r["state"] == "placed"] == NUMBERS
    assert "placed" in err  # the human summary moved out of the way, to stderr


async def test_report_into_a_missing_folder_is_a_usage_error(
    journal: Path, tmp_path: Path
) -> None:
    code, _, err = await run("report", str(journal), "--csv",
                               str(tmp_path / "no-such-folder" / "r.csv"))
    assert code == 2
    assert "Traceback" not in err
    assert "no-such-folder" in err


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    path = tmp_path / "m.wav"
    path.write_bytes(wav_tone(0.1))
    return path


@pytest.mark.parametrize(("case", "expected"), [
    ("no-token", "pass --token or set RYZE_TOKEN"),
    ("no-instance", "pass --instance or set RYZE_INSTANCE"),
    ("bad-base-url", "--base-url 'ftp://example.invalid/api' must be an http(s) URL"),
    ("bad-media", "--media: media does not look like audio"),
])
async def test_campaign_configuration_errors_come_before_the_banner_in_cli_words(
    tmp_path: Path, audio: Path, case: str, expected: str
) -> None:
    numbers_csv = tmp_path / "n.csv"
    numbers_csv.write_text("\n".join(NUMBERS) + "\n")
    env = {"RYZE_TOKEN": "t0ken", "RYZE_INSTANCE": "my-instance",
           "RYZE_BASE_URL": "http://127.0.0.1:9"}
    media = audio
    if case == "no-token":
        del env["RYZE_TOKEN"]
    elif case == "no-instance":
        del env["RYZE_INSTANCE"]
    elif case == "bad-base-url":
        env["RYZE_BASE_URL"] = "ftp://example.invalid/api"
    else:
        media = tmp_path / "not-audio.wav"
        media.write_text("hello")
    code, out, err = await run("campaign", str(numbers_csv), "--media", str(media),
                               "--journal", str(tmp_path / "j.db"), env=env)
    assert code == 2, err
    assert expected in err
    assert "token=" not in err  # the library's words, not the command line's
    assert "base_url" not in err
    assert "campaign:" not in out
    assert not (tmp_path / "j.db").exists()
