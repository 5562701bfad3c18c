"""The campaign tells the client's hooks each outcome it records, never the number."""

from __future__ import annotations

from pathlib import Path

from ryze_async import Campaign, CampaignOutcomeRecorded, Hooks, RyzeClient
from ryze_async.testing import FakeRyzeServer, Fault

NUMBERS = ["5511990000001", "5511990000002", "not-a-number", "5511990000003"]


class Recorder(Hooks):
    def __init__(self) -> None:
        self.outcomes: list[CampaignOutcomeRecorded] = []

    def on_campaign_outcome(self, details: CampaignOutcomeRecorded) -> None:
        self.outcomes.append(details)


class Broken(Hooks):
    def on_campaign_outcome(self, details: CampaignOutcomeRecorded) -> None:
        raise RuntimeError("an observer's own bug")


async def test_every_recorded_outcome_reaches_the_hooks_without_its_number(
    ryze_server: FakeRyzeServer, tmp_path: Path
) -> None:
    recorder = Recorder()
    ryze_server.fail_next(Fault.DROP_AFTER_READ)  # the first call: outcome unknown
    async with RyzeClient(token="test-token", instance="my-instance", base_url=ryze_server.url,
                          rate_limit=None, hooks=[Broken(), recorder]) as client:
        summary = await Campaign(client, NUMBERS, journal=tmp_path / "j.db", fake=True).run()
    assert (summary.placed, summary.unknown, summary.invalid) == (2, 1, 1)
    states = sorted(o.state for o in recorder.outcomes)
    assert states == ["failed", "placed", "placed", "unknown"]
    assert sorted(o.status for o in recorder.outcomes if o.state == "placed") == [200, 200]
    # Only the invalid entry was never sent: it is an outcome, not a call.
    assert sorted((o.state, o.sent) for o in recorder.outcomes) == [
        ("failed", False), ("placed", True), ("placed", True), ("unknown", True)]
    for outcome in recorder.outcomes:
        assert not any(n in repr(outcome) for n in (*NUMBERS, "99000000"))
