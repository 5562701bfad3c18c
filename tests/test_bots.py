"""Bots on a shared token, end to end: lanes, max_wait, per-call timeout, with_options, and
errors that carry their evidence. Virtual clock; the fake server's record is the oracle."""

from __future__ import annotations

import asyncio
import datetime
import pickle
from pathlib import Path
from typing import Any

import pytest

from ryze_async import (
    APIError,
    Campaign,
    ClientClosedError,
    OutcomeUnknownError,
    QuotaTimeoutError,
    RyzeClient,
)
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual
from ryze_async.testing._quota_sim import max_in_window

LIMIT, PERIOD = 10, 2.0
EPOCH = 1_750_000_000.0
START = 1000.0
MARGIN = 0.1


def virtual_server(**settings: Any) -> FakeRyzeServer:
    loop = asyncio.get_running_loop()
    settings.setdefault("rate_limit", LIMIT)
    return FakeRyzeServer(clock=lambda: EPOCH + loop.time(), rate_period=PERIOD, **settings)


def client_for(server: FakeRyzeServer, **settings: Any) -> RyzeClient:
    return RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                      rate_limit=LIMIT, rate_period=PERIOD, backoff_initial=0.01,
                      backoff_max=0.05, **settings)


def numbers(n: int, first: int = 0) -> list[str]:
    return [f"55119{i:08d}" for i in range(first, first + n)]


def assert_bound_held(server: FakeRyzeServer) -> None:
    statuses = [r.status for r in server.requests]
    assert statuses.count(429) == 0
    arrivals = [r.received_at for r in server.requests]
    assert max_in_window(arrivals, PERIOD) <= LIMIT


def test_interactive_call_takes_the_next_free_slot_ahead_of_200_bulk_calls() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server(window="sliding") as server, \
                client_for(server, priority="bulk") as campaign, \
                client_for(server) as bot:
            bulk = [asyncio.create_task(campaign.fake_call(n)) for n in numbers(200)]
            await asyncio.sleep(0.5)  # the first burst is out, 190 bulk calls wait
            began = loop.time()
            result = await bot.fake_call("5511988887777")
            waited = loop.time() - began
            assert result.success
            # The next free slot: when the burst's slots come back (period + margin after 0).
            assert waited == pytest.approx(PERIOD + MARGIN - 0.5, abs=1e-6)
            order = [r.json["number"] for r in server.requests if r.json]
            assert order.index("5511988887777") == LIMIT  # first of the second window
            for task in bulk:
                task.cancel()
            await asyncio.gather(*bulk, return_exceptions=True)
            assert_bound_held(server)

    run_virtual(main(), start=START)


def test_reserve_gives_an_interactive_call_a_slot_at_once() -> None:
    # A server that reports no binding quota: the same-instant burst's answers, read
    # conservatively, would otherwise cap the window below the reserve (see docs/bots.md).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server(rate_limit=None) as server, \
                client_for(server, priority="bulk", interactive_reserve=2) as campaign, \
                client_for(server) as bot:
            bulk = [asyncio.create_task(campaign.fake_call(n)) for n in numbers(50)]
            await asyncio.sleep(0.5)
            assert len(server.requests) == LIMIT - 2  # bulk left the reserve free
            began = loop.time()
            await bot.fake_call("5511988887777", max_wait=0.0 + 1e-3)
            assert loop.time() - began < 0.01
            for task in bulk:
                task.cancel()
            await asyncio.gather(*bulk, return_exceptions=True)
            assert max_in_window([r.received_at for r in server.requests], PERIOD) <= LIMIT

    run_virtual(main(), start=START)


def test_max_wait_raises_at_once_when_the_slot_is_later_and_sends_nothing() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server() as server, client_for(server) as bot:
            busy = [asyncio.create_task(bot.fake_call(n)) for n in numbers(30)]
            await asyncio.sleep(0.5)
            sent = len(server.requests)
            began = loop.time()
            with pytest.raises(QuotaTimeoutError) as caught:
                await bot.fake_call("5511988887777", max_wait=1.0)
            assert loop.time() == began  # at once, not after a second of waiting
            error = caught.value
            assert error.max_wait == 1.0
            assert error.kind == "fake"
            assert error.instance == "my-instance"
            # 20 ahead of it, 10 per window: its turn is in the third window from now.
            assert error.available_in == pytest.approx(3 * (PERIOD + MARGIN) - 0.5)
            await asyncio.gather(*busy)
            assert "5511988887777" not in [r.json["number"] for r in server.requests if r.json]
            assert len(server.requests) == sent + 20

    run_virtual(main(), start=START)


def test_max_wait_runs_out_when_the_slot_moves_later_while_waiting() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server() as server, client_for(server) as bot:
            await asyncio.gather(*(bot.fake_call(n) for n in numbers(LIMIT)))
            began = loop.time()
            # The log says: a slot at 2.1 s, within 3 s, so it waits...
            waiting = asyncio.create_task(bot.fake_call("5511988887777", max_wait=3.0))
            await asyncio.sleep(0.5)
            bot._quota().hold_until(10.0)  # type: ignore[union-attr]  # ...then a 429's hold
            with pytest.raises(QuotaTimeoutError):
                await waiting
            assert loop.time() - began == pytest.approx(3.0)
            assert "5511988887777" not in [r.json["number"] for r in server.requests if r.json]

    run_virtual(main(), start=START)


def test_timeout_after_sending_is_an_unknown_outcome_that_says_when_it_was_sent() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server() as server, client_for(server) as bot:
            server.fail_next(Fault.HANG)
            began = loop.time()
            with pytest.raises(OutcomeUnknownError) as caught:
                await bot.fake_call("5511988887777", timeout=3.0)
            assert loop.time() - began == pytest.approx(3.0)
            error = caught.value
            assert error.sent is True
            assert error.sent_at is not None
            assert error.sent_at.tzinfo is datetime.UTC
            assert error.kind == "fake"
            assert error.instance == "my-instance"
            assert len(server.requests) == 1  # never resent

    run_virtual(main(), start=START)


def test_with_options_is_a_view_sharing_transport_quota_and_hooks() -> None:
    async def main() -> None:
        async with virtual_server() as server:
            client = client_for(server, max_retries=3)
            bulk = client.with_options(priority="bulk", max_retries=0, timeout=5.0)
            assert client.priority == "interactive"
            assert bulk.priority == "bulk"
            assert client.max_retries == 3
            assert bulk.max_retries == 0
            assert bulk.hooks == client.hooks
            await bulk.fake_call("5511988887777")
            await client.fake_call("5511988887778")
            assert client._quota() is bulk._quota()  # one quota for the token
            await bulk.aclose()  # a view does not own the session
            assert not client.closed
            assert bulk.closed
            await client.fake_call("5511988887779")
            other = client.with_options(max_wait=0.5)
            await client.aclose()
            assert other.closed
            with pytest.raises(ClientClosedError):
                await other.fake_call("5511988887780")
            assert len(server.requests) == 3

    run_virtual(main(), start=START)


def test_api_errors_carry_their_evidence_and_pickle() -> None:
    async def main() -> None:
        async with virtual_server() as server, client_for(server) as bot:
            server.fail_next(Fault.SERVER_ERROR)
            with pytest.raises(APIError) as caught:
                await bot.fake_call("5511988887777")
            error = caught.value
            assert error.status == 500
            assert error.kind == "fake"
            assert error.instance == "my-instance"
            assert "Date" in error.headers
            assert error.body_excerpt
            assert "success" in error.body_excerpt
            again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
            assert again.headers == error.headers
            assert again.kind == "fake"
            server.fail_next(Fault.HTML_502)
            with pytest.raises(OutcomeUnknownError) as unknown:
                await bot.fake_call("5511988887778")
            assert unknown.value.status == 502
            assert unknown.value.sent is True
            assert unknown.value.body_excerpt
            assert "502" in unknown.value.body_excerpt
            assert unknown.value.sent_at is not None
            server.fail_next(Fault.RATE_LIMITED)
            with pytest.raises(APIError) as refused:
                await bot.with_options(max_retries=0).fake_call("5511988887779")
            assert refused.value.status == 429
            assert {"X-RateLimit-Remaining", "Date"} <= set(refused.value.headers)

    run_virtual(main(), start=START)


def test_priority_and_reserve_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="priority"):
        RyzeClient(token="t", instance="i", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interactive_reserve"):
        RyzeClient(token="t", instance="i", interactive_reserve=-1)
    with pytest.raises(ValueError, match="interactive_reserve"):
        RyzeClient(token="t", instance="i", rate_limit=10, interactive_reserve=10)


def test_a_campaign_runs_in_the_bulk_lane_behind_a_bot(tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with virtual_server() as server, client_for(server) as client, \
                client_for(server) as bot:
            campaign = asyncio.create_task(Campaign(
                client, numbers(60), journal=tmp_path / "j.db", fake=True, concurrency=60,
            ).run())
            while len(server.requests) < LIMIT:  # noqa: ASYNC110 - the record, on virtual time
                await asyncio.sleep(0.05)
            began = loop.time()
            await bot.fake_call("5511988887777")
            assert loop.time() - began <= PERIOD + MARGIN
            after = [r.json["number"] for r in server.requests
                     if r.json and r.received_at >= EPOCH + began]
            assert after[0] == "5511988887777"  # first of the next window, ahead of 40+ bulk
            summary = await campaign
            assert summary.placed == 60
            assert_bound_held(server)

    run_virtual(main(), start=START)
