"""``-v`` shows the per-request lines; repeated warnings are told once per kind (#7 CLI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "log-test-token-VALUE"


async def campaign(server: FakeRyzeServer, tmp_path: Path, count: int, *extra: str,
                   verbose: bool = False) -> tuple[int, str, str]:
    numbers_csv = tmp_path / "n.csv"
    numbers_csv.write_text("".join(f"55119{i:08d}\n" for i in range(count)))
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}
    code, out, err = await run_cli(
        [*(["-v"] if verbose else []), "campaign", str(numbers_csv), "--fake", "--journal",
         str(tmp_path / "j.db"), "--rate-limit", "100000", "--rate-period", "1", *extra], env)
    assert TOKEN not in out + err
    return code, out, err


async def test_verbose_shows_each_request(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    code, _, err = await campaign(server, tmp_path, 3, verbose=True)
    assert code == 0
    assert sum("POST " in line and "-> 200" in line for line in err.splitlines()) == 3


async def test_connection_failures_are_one_line_per_kind(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await ryze_server_factory(token=TOKEN, rate_limit=None)
    await server.refuse_connections()
    # One resend per call (a backoff of up to 0.5 s) still logs ten refusals of one kind; the
    # default three would cost seconds of backoff and show nothing more.
    code, _, err = await campaign(server, tmp_path, 40, "--concurrency", "10", "--max-retries", "1")
    assert code == 3  # the circuit breaker
    lines = err.splitlines()
    assert sum(line.startswith("ryze-async: request not sent") for line in lines) == 1, err
    assert any("more like" in line for line in lines), err
