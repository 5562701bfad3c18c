"""Issue 8: one validation of every numeric setting, at construction, never on the first call.

Each numeric setting of ``RyzeClient`` (and of ``QuotaLimiter``, which users build directly) is
tried with hostile values: either the constructor refuses it with a ``ValueError``, or the first
calls work against the fake server. A bare ``ValueError``/``OverflowError``/``TypeError`` from
inside a call, or a ``TypeError`` from the constructor, fails the test.
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ryze_async import (
    ConnectionFailedError,
    InvalidRequestError,
    OutcomeUnknownError,
    QuotaLimiter,
    RyzeClient,
)
from ryze_async.testing import FakeRyzeServer

from .audio import MP3

NUMERIC_SETTINGS = [
    "rate_limit", "rate_period", "rate_margin", "max_retries", "timeout", "connect_timeout",
    "keepalive_timeout", "max_media_bytes", "backoff_initial", "backoff_max",
]

HOSTILE: st.SearchStrategy[object] = st.one_of(
    st.sampled_from([
        math.nan, math.inf, -math.inf, 0, 0.0, -0.0, -1, -1.5, 1e-300, 5e-324, 1e300,
        sys.float_info.max, sys.maxsize, 2**63, 10**400, -(10**400), True, False, "1", "nan",
        b"1", None, [], 1 + 0j,
    ]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)


@pytest.fixture
async def media_file(tmp_path: Path) -> Path:
    path = tmp_path / "m.mp3"
    path.write_bytes(MP3)
    return path


@pytest.mark.parametrize("name", NUMERIC_SETTINGS)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
async def test_a_numeric_setting_is_refused_at_construction_or_works(
    name: str, value: object, media_file: Path
) -> None:
    # A server (and so a quota) of its own per example: examples share the test's loop, and
    # with it the token's limiter, where an example's small limit rightly waits out the calls
    # earlier examples made in the same minute.
    async with FakeRyzeServer() as server:
        await _refused_at_construction_or_works(server, name, value, media_file)


async def _refused_at_construction_or_works(
    ryze_server: FakeRyzeServer, name: str, value: object, media_file: Path
) -> None:
    options: dict[str, Any] = {"token": "test-token", "instance": "my-instance",
                               "base_url": ryze_server.url, name: value}
    if not name.startswith("backoff_"):  # a refused connect is retried: after ms, not seconds
        options |= {"backoff_initial": 0.001, "backoff_max": 0.002}
    try:
        client = RyzeClient(**options)
    except ValueError as exc:  # InvalidRequestError is one: a clean refusal
        refusal: ValueError | None = exc
    else:
        refusal = None
    if refusal is not None:
        assert isinstance(refusal, InvalidRequestError), refusal
        assert refusal.field == name  # a short timeout's derived connect timeout: the timeout's
        return
    before = len(ryze_server.placed_calls)
    async with client:  # one call: a second could wait out a real quota period
        try:
            await client.audio_call("5511999999999", media=media_file)
        except (ConnectionFailedError, OutcomeUnknownError):
            # A deadline too short for loopback is an outcome of the call, not a setting error.
            assert name in ("timeout", "connect_timeout")
            assert isinstance(value, int | float)
            assert value < 1
            return
        except InvalidRequestError:
            # A cap below the file's size refuses that file, before anything is sent.
            assert name == "max_media_bytes"
            assert isinstance(value, int)
            assert value < len(MP3)
            assert len(ryze_server.placed_calls) == before
            return
    assert len(ryze_server.placed_calls) == before + 1


@settings(max_examples=300, deadline=None)
@given(limit=HOSTILE, period=HOSTILE, margin=HOSTILE)
async def test_a_limiter_setting_is_refused_at_construction_or_works(
    limit: object, period: object, margin: object
) -> None:
    try:
        limiter = QuotaLimiter(limit, period, margin=margin)  # type: ignore[arg-type]
    except ValueError:
        return
    admitted = await asyncio.wait_for(limiter.acquire(), 5)  # the first is never held back
    assert math.isfinite(admitted)
