"""#10 metrics: Prometheus metrics scraped over HTTP agree with the fake server's own record,
and no phone number or token ever appears in the exposition."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ryze_async import Campaign, RyzeClient
from ryze_async.metrics import PrometheusHooks, serve_metrics
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "metrics-secret-token-0123456789"
# Digits no metric value shows by chance: with 55119000000NN, "00000001" was a suffix to look for
# in every float (a wait of 1.2000000000000455 s "contained" a number).
NUMBERS = [f"551198{i:02d}47362" for i in range(12)]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


async def scrape(port: int) -> str:
    """The exposition, read in a thread: the metrics server is one, and a thread's work holds
    the virtual clock still (an await on its socket would let the clock run past timeouts)."""
    return await asyncio.to_thread(_scrape, port)


def assert_private(text: str) -> None:
    assert TOKEN not in text
    assert TOKEN[:8] not in text
    for number in NUMBERS:
        assert number not in text
        assert number[-8:] not in text


def test_metrics_agree_with_the_servers_record(tmp_path: Path) -> None:
    # On the virtual clock: the quota's waits (the point of the wait histogram) cost no real
    # time, and are exactly as long as the quota makes them.
    async def main() -> None:
        async with FakeRyzeServer(rate_limit=None, token=TOKEN) as server:
            server.fail_next(Fault.DROP_AFTER_READ, times=2)
            hooks = PrometheusHooks(sender="my-instance")
            async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=6,
                                  rate_period=0.5, hooks=hooks) as client:
                campaign = Campaign(client, [*NUMBERS, "123"], journal=tmp_path / "j.db",
                                    fake=True, concurrency=2)
                hooks.watch(campaign)
                with serve_metrics(hooks.registry, 0) as port:
                    summary = await campaign.run()
                    text = await scrape(port)
        got = samples(text)
        placed = len(server.placed_calls)
        assert placed == summary.placed == 10
        assert got["ryze_calls_total", (("outcome", "placed"), ("sender", "my-instance"))] == placed
        assert got["ryze_calls_total", (("outcome", "unknown"), ("sender", "my-instance"))] == 2
        sent = [r for r in server.requests if r.route == "fake"]
        assert got["ryze_request_duration_seconds_count",
                   (("kind", "fake"), ("sender", "my-instance"))] == len(sent) == 12
        # 12 calls at 6 per 0.5 s: the quota made some of them wait (and only those are waits).
        assert 1 <= got["ryze_quota_wait_seconds_count", (("sender", "my-instance"),)] <= 12
        assert got["ryze_quota_wait_seconds_sum", (("sender", "my-instance"),)] > 0.1
        assert got["ryze_campaign_numbers", (("state", "placed"),)] == placed
        assert got["ryze_campaign_numbers", (("state", "unknown"),)] == 2
        assert got["ryze_campaign_numbers", (("state", "pending"),)] == 0
        assert_private(text)

    run_virtual(main(), start=1000.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_cli_serves_metrics_while_the_campaign_runs(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKEN)
    numbers = tmp_path / "n.csv"
    numbers.write_text("phone\n" + "\n".join(NUMBERS) + "\n")
    port = free_port()
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}
    run = asyncio.create_task(run_cli(
        ["campaign", str(numbers), "--fake", "--journal", str(tmp_path / "j.db"),
         "--rate-limit", "4", "--rate-period", "0.25", "--metrics-port", str(port)], env))
    seen: list[str] = []
    while not run.done():
        # Not listening yet, or any more (refused; reset while it stops).
        with contextlib.suppress(urllib.error.URLError, ConnectionError):
            seen.append(await scrape(port))
        await asyncio.sleep(0.05)
    code, out, err = await run
    assert code == 0, err
    assert f"metrics: http://127.0.0.1:{port}/metrics" in out
    assert seen, "never scraped while the campaign ran"
    for text in seen:
        assert_private(text)
        got = samples(text)
        key = ("ryze_calls_total", (("outcome", "placed"), ("sender", "my-instance")))
        assert got.get(key, 0) <= len(server.placed_calls)
    mid = [samples(t).get(("ryze_campaign_numbers", (("state", "pending"),))) for t in seen]
    assert any(p not in (None, 0.0) for p in mid), "no scrape saw the campaign in progress"
    with pytest.raises(urllib.error.URLError, match="refused"):
        await scrape(port)  # stopped with the campaign


async def test_cli_metrics_port_in_use_is_a_usage_error(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKEN)
    numbers = tmp_path / "n.csv"
    numbers.write_text("phone\n" + "\n".join(NUMBERS) + "\n")
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = await run_cli(
            ["campaign", str(numbers), "--fake", "--journal", str(tmp_path / "j.db"),
             "--metrics-port", str(busy.getsockname()[1])], env)
    assert code == 2
    assert "--metrics-port" in err
    assert server.requests == []


async def test_metrics_without_prometheus_client_names_the_extra(
    ryze_server_factory: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKEN)
    numbers = tmp_path / "n.csv"
    numbers.write_text("phone\n" + "\n".join(NUMBERS) + "\n")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "ryze_async.metrics", raising=False)
    env = {"RYZE_TOKEN": TOKEN, "RYZE_INSTANCE": "my-instance", "RYZE_BASE_URL": server.url}
    code, _, err = await run_cli(["campaign", str(numbers), "--fake", "--journal",
                                  str(tmp_path / "j.db"), "--metrics-port", "0"], env)
    assert code == 2
    assert 'pip install "ryze-async[metrics]"' in err
    assert server.requests == []
    assert not (tmp_path / "j.db").exists()


async def test_invalid_entries_are_not_counted_as_failed_calls(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    """An entry refused before any byte was sent is not a call: ``ryze_calls_total`` counts
    only what the server's record holds; ``ryze_campaign_numbers{state="skipped"}`` still shows
    the invalid entries, as the summary does."""
    server = await ryze_server_factory(rate_limit=None, token=TOKEN)
    server.fail_next(Fault.SERVER_ERROR, times=1)
    hooks = PrometheusHooks(sender="my-instance")
    async with RyzeClient(TOKEN, "my-instance", base_url=server.url, rate_limit=None,
                          hooks=hooks) as client:
        campaign = Campaign(client, [*NUMBERS[:4], "123", "not-a-number"],
                            journal=tmp_path / "j.db", fake=True, concurrency=1)
        hooks.watch(campaign)
        with serve_metrics(hooks.registry, 0) as port:
            summary = await campaign.run()
            text = await scrape(port)
    got = samples(text)
    answered_500 = [r for r in server.requests if r.status == 500]
    assert (summary.failed, summary.invalid, len(answered_500)) == (1, 2, 1)
    calls = {k[1][0][1]: v for k, v in got.items() if k[0] == "ryze_calls_total"}
    assert calls == {"placed": 3, "failed": len(answered_500)}
    assert sum(calls.values()) == len(server.requests)  # a call is a request the server saw
    assert got["ryze_campaign_numbers", (("state", "skipped"),)] == 2
    # ... and by their own name, as every report form shows them (#15).
    assert got["ryze_campaign_numbers", (("state", "invalid"),)] == 2
    assert_private(text)
