"""#10 metrics attacked: hostile sender (instance) names cannot forge series or break the
exposition, and no label or value ever holds a called number or a token, even when a token
was pasted where the instance name goes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ryze_async import Campaign, InvalidRequestError, RyzeClient
from ryze_async.metrics import PrometheusHooks
from ryze_async.testing import FakeRyzeServer

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
TOKEN = "hostile-metrics-token-9876543210"
NUMBERS = [f"55119{i:08d}" for i in range(6)]
HOSTILE = ['x"} ryze_calls_total{outcome="placed",sender="forged"} 1e9 #', "a\\b\\\"c",
           "{}", "ação 🙂", "5511999999999"]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_sender_names_cannot_forge_series(
    ryze_server_factory: ServerFactory, tmp_path: Path, name: str
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKEN, instances=[name])
    hooks = PrometheusHooks(sender=name)
    async with RyzeClient(TOKEN, name, base_url=server.url, rate_limit=None,
                          hooks=hooks) as client:
        campaign = Campaign(client, NUMBERS[1:], journal=tmp_path / "j.db", fake=True)
        hooks.watch(campaign)
        await campaign.run()
    text = generate_latest(hooks.registry).decode()
    senders = {s.labels.get("sender") for f in text_string_to_metric_families(text)
               for s in f.samples if "sender" in s.labels}
    assert senders == {name}  # parsed back exactly: no forged series
    assert TOKEN not in text
    for number in NUMBERS[1:]:
        assert number not in text


async def test_a_token_given_as_the_instance_name_is_refused(
    ryze_server_factory: ServerFactory,
) -> None:
    # Swapped settings would put the token in every log line, journal row and metric label
    # that names the instance.
    server = await ryze_server_factory(rate_limit=None, token=TOKEN)
    with pytest.raises(InvalidRequestError, match="instance") as caught:
        RyzeClient(TOKEN, TOKEN, base_url=server.url)
    assert TOKEN not in str(caught.value)
    assert TOKEN[:8] not in str(caught.value)


async def test_cli_senders_file_with_a_token_in_the_instance_column_is_refused(
    ryze_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = await ryze_server_factory(rate_limit=None, token=TOKEN)
    pool = tmp_path / "senders.csv"
    pool.write_text(f"instance,token\nmy-instance,{TOKEN}\n{TOKEN},{TOKEN}\n")
    pool.chmod(0o600)
    numbers = tmp_path / "n.csv"
    numbers.write_text("phone\n" + "\n".join(NUMBERS) + "\n")
    code, out, err = await run_cli(["campaign", str(numbers), "--fake", "--journal",
                                    str(tmp_path / "j.db"), "--senders", str(pool),
                                    "--metrics-port", "0"], {"RYZE_BASE_URL": server.url})
    assert code == 2, err
    assert TOKEN not in out + err
    assert server.requests == []
