"""(#18) The uncontended admission's fast path (``room_at``, O(log n)) gives exactly the slot the
full search (``first_fit``) gives: both run in one script call on a real redis-server, on the
same log and the same Redis ``TIME``, over logs hypothesis draws (entries before and after now,
ties, full and almost full windows)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("redis", reason="the shared quota needs the 'redis' extra")

from redis import Redis

from ryze_async.testing import RedisServer
from ryze_async.testing._shared_quota import fast_path_and_search

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def raw() -> Iterator[Redis]:
    with RedisServer() as server, Redis.from_url(server.url) as client:
        yield client


# Offsets in microseconds from now, within two windows each way; many on a few values (ties).
offsets = st.lists(st.one_of(st.integers(-200_000, 200_000),
                             st.sampled_from([-100_000, -99_999, -1, 0, 1, 99_999])),
                   max_size=14)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cap=st.integers(1, 6), entries=offsets)
def test_the_fast_path_admits_exactly_where_the_full_search_would(
        raw: Redis, cap: int, entries: list[int]) -> None:
    room, slot = fast_path_and_search(raw, cap, entries)
    if room:
        assert slot == 0  # first_fit also admits at now
    # The fast path must never be the one that says no room when there is nothing queued and
    # the window holds fewer than cap (first_fit's own answer then is now).
    past = [e for e in entries if e <= 0]
    if len(past) == len(entries) and sum(1 for e in past if e > -100_000) < cap:
        assert room == 1


def test_the_fast_path_is_taken_and_skipped_as_expected(raw: Redis) -> None:
    assert fast_path_and_search(raw, 2, [-50_000])[0] == 1
    assert fast_path_and_search(raw, 2, [-50_000, -10])[0] == 0
    assert fast_path_and_search(raw, 2, [10])[0] == 0  # queued ahead
