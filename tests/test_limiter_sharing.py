"""Every client of one event loop on one server and token shares one quota; on virtual time.

Seen from outside: the requests a ``MockTransport`` receives, stamped with the loop's clock.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections import Counter

import pytest

from ryze_async import QuotaLimiter, QuotaTimeoutError, RyzeClient
from ryze_async.testing import MockRequest, MockResponse, MockTransport, run_virtual

LIMIT = 10
PERIOD = 60.0
TOKEN = "token-one"
MARGIN = 1.0  # the default margin: 1 s per 60 s (docs/client.md, "The quota")
WAKES_PER_TURN = 8  # the limiters of one loop wake at most 8 per turn (docs/quota-bound.md)


class Stamped:
    """A transport that answers every request placed and notes when (loop time) and where."""

    def __init__(self, sent: list[tuple[float, str]] | None = None) -> None:
        self.sent: list[tuple[float, str]] = [] if sent is None else sent  # shared: one record
        self.transport = MockTransport(self._answer)

    def _answer(self, request: MockRequest) -> MockResponse:
        self.sent.append((asyncio.get_running_loop().time(), request.url))
        return MockResponse(200, {"success": True, "message": "placed"})

    def times(self) -> list[float]:
        return sorted(t for t, _ in self.sent)


def _client(stamped: Stamped, token: str = TOKEN, **settings: object) -> RyzeClient:
    settings = {"rate_limit": LIMIT, "rate_period": PERIOD, **settings}
    return RyzeClient(token=token, instance="i", transport=stamped.transport,
                      **settings)  # type: ignore[arg-type]


async def _calls(client: RyzeClient, count: int) -> None:
    await asyncio.gather(*(client.fake_call(f"55119{i:08d}") for i in range(count)))


def _burst(first: dict[str, object], second: dict[str, object], each: int = LIMIT) -> list[float]:
    """Admission times of `each` concurrent calls from each of two clients of one loop."""
    stamped = Stamped()

    async def main() -> None:
        await asyncio.gather(_calls(_client(stamped, **first), each),  # type: ignore[arg-type]
                             _calls(_client(stamped, **second), each))  # type: ignore[arg-type]

    run_virtual(main())
    return stamped.times()


def test_two_clients_on_one_token_never_exceed_the_limit_together() -> None:
    times = _burst({}, {}, each=15)
    assert times == [0.0] * LIMIT + [PERIOD + MARGIN] * LIMIT + [2 * (PERIOD + MARGIN)] * LIMIT
    for start in times:  # any window of one period holds at most LIMIT requests
        assert sum(start <= t < start + PERIOD for t in times) <= LIMIT


@pytest.mark.parametrize(("first", "second"), [
    ({"token": "token-one"}, {"token": "token-two"}),
    ({"base_url": "https://a.example"}, {"base_url": "https://b.example"}),
    ({"base_url": "https://a.example"}, {"base_url": "https://a.example:8443"}),
    ({"base_url": "https://a.example"}, {"base_url": "http://a.example", "allow_http": True}),
], ids=["other token", "other host", "other port", "other scheme"])
def test_another_token_or_server_is_another_quota(
    first: dict[str, object], second: dict[str, object]
) -> None:
    assert _burst(first, second) == [0.0] * (2 * LIMIT)


@pytest.mark.parametrize("spelling", ["https://a.example/api", "HTTPS://A.EXAMPLE:443/"])
def test_one_server_spelt_two_ways_is_one_quota(spelling: str) -> None:
    times = _burst({"base_url": "https://a.example"}, {"base_url": spelling})
    assert times == [0.0] * LIMIT + [PERIOD + MARGIN] * LIMIT


def test_clients_in_another_event_loop_do_not_share_its_bookkeeping() -> None:
    stamped = Stamped()
    client = _client(stamped)
    for _ in range(2):  # each run_virtual is a fresh loop whose clock starts at 0
        run_virtual(_calls(client, LIMIT))
    assert stamped.times() == [0.0] * (2 * LIMIT)


def test_the_stricter_configuration_wins() -> None:
    stamped = Stamped()

    async def main() -> None:
        loose = _client(stamped, rate_limit=100, rate_period=60.0)
        strict = _client(stamped, rate_limit=50, rate_period=90.0, rate_margin=0.5)
        looser = _client(stamped, rate_limit=200, rate_period=30.0)
        for client in (loose, strict, looser):
            await client.fake_call("5511999999999")
        await _calls(looser, 100)  # the looser client changes nothing

    run_virtual(main())
    # limit 50, period 90 and the larger margin: the default for 90 s (1.5 s) over 0.5 s.
    assert Counter(stamped.times()) == {0.0: 50, 91.5: 50, 183.0: 3}


def test_a_closed_clients_stricter_settings_end_with_it() -> None:
    """A client's stricter limit holds the token's other clients only while it is open: a
    closed one no longer slows them down (CI run 12: a hypothesis example's ``rate_limit=1``
    held every later example of the loop a whole period)."""
    stamped = Stamped()

    async def main() -> None:
        loose = _client(stamped)
        strict = _client(Stamped(stamped.sent), rate_limit=1, rate_period=90.0, rate_margin=5.0)
        async with strict:
            await strict.fake_call("5511999999999")
        await _calls(loose, LIMIT - 1)

    run_virtual(main())
    assert stamped.times() == [0.0] * LIMIT


def test_a_stricter_client_leaving_never_lets_a_window_go_over() -> None:
    """What the token's clients spent stays counted whatever limit a client brought and took
    away with it: the log keeps every admission of the window, not just the stricter limit's."""
    stamped = Stamped()

    async def main() -> None:
        loose = _client(stamped)
        await _calls(loose, LIMIT)  # the whole window, spent at once
        async with _client(Stamped(stamped.sent), rate_limit=1) as strict:
            with pytest.raises(QuotaTimeoutError):
                await strict.fake_call("5511999999999", max_wait=1.0)
        await _calls(loose, LIMIT)

    run_virtual(main())
    assert stamped.times() == [0.0] * LIMIT + [PERIOD + MARGIN] * LIMIT


def _spend(token_parts: tuple[str, ...], servers: tuple[str, ...]) -> None:
    async def use(server: str) -> None:
        token = "".join(token_parts)  # built at run time: not interned, no other copy exists
        async with _client(Stamped(), token, rate_limit=1, base_url=server) as client:
            await client.fake_call("5511999999999")

    async def main() -> None:
        for server in servers:
            await use(server)
        # The clients, their transports and requests are gone; the quota state is not (a new
        # client would wait for the slot taken above): none of it may hold the token.
        _assert_nothing_holds(token_parts)

    run_virtual(main())


def _assert_nothing_holds(token_parts: tuple[str, ...]) -> None:
    gc.collect()
    needle = "".join(token_parts)
    raw = needle.encode()
    found = []
    for holder in gc.get_objects():
        # A dict whose keys are all str does not report its keys to the collector.
        keys = list(holder) if type(holder) is dict else []
        for ref in [*gc.get_referents(holder), *keys]:
            if ref is needle or ref is raw:
                continue
            if (type(ref) is str and needle in ref) or (type(ref) is bytes and raw in ref):
                found.append(type(holder).__name__)
    assert found == []


def test_the_raw_token_is_never_kept() -> None:
    _spend(("sk-", "live-", "0123456789abcdef"), ("https://a.example", "https://b.example"))


def test_finished_loops_are_not_kept_alive() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with _client(Stamped(), rate_limit=1) as client:
            await client.fake_call("5511999999999")
            await client.fake_call("5511999999999")  # waits: this loop's timers passed through

    run_virtual(main())
    gc.collect()
    assert loops[0]() is None


def test_unrelated_limiters_woken_at_one_instant_wake_a_few_per_loop_turn() -> None:
    """Fifty clients started together (issue 18): their limiters' slots come back at one
    instant, and each would wake its whole burst in one turn of the loop, hundreds of calls
    starting before the loop serves anything else. They wake in order, a few per turn, all at
    that same instant (no slot later than the quota allows)."""
    clients, burst = 50, LIMIT
    woken: list[float] = []
    per_turn: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limiters = [QuotaLimiter(LIMIT, PERIOD, margin=MARGIN) for _ in range(clients)]
        for limiter in limiters:
            for _ in range(burst):
                assert limiter.try_acquire() is not None
        waiters = [limiter.acquire() for limiter in limiters for _ in range(burst)]
        tasks = [asyncio.ensure_future(w) for w in waiters]

        def count_turn(seen: int) -> None:
            done = sum(t.done() for t in tasks)
            per_turn.append(done - seen)
            if done < len(tasks):
                loop.call_soon(count_turn, done)

        loop.call_at(PERIOD + MARGIN, count_turn, 0)
        woken.extend(await asyncio.wait_for(asyncio.gather(*tasks), PERIOD * 2))

    run_virtual(main())
    assert set(woken) == {PERIOD + MARGIN}  # every slot at the instant it came
    assert max(per_turn) <= 2 * WAKES_PER_TURN  # a turn's budget spans two of the counter's
    assert len(per_turn) >= clients * burst // (2 * WAKES_PER_TURN)
