"""The token stays secret; the session's lifetime is the client's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from typing import Any

import pytest

from ryze_async import (
    ClientClosedError,
    OutcomeUnknownError,
    RyzeClient,
    RyzeError,
)
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .conftest import ClientFactory
from .sessions import record_sessions

SECRET = "s3cr3t-T0KEN-value-9f8e7d"
NUMBER = "5511999999999"


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_token_never_in_logs_reprs_or_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    # On the virtual clock: the hang's timeout costs no real time.
    async def main() -> None:
        async with FakeRyzeServer(token=SECRET) as server, contextlib.AsyncExitStack() as stack:
            async def make_client(**overrides: Any) -> RyzeClient:
                settings: dict[str, Any] = {"instance": "my-instance", "base_url": server.url,
                                            "rate_limit": None, "backoff_initial": 0.01,
                                            "backoff_max": 0.05, **overrides}
                return await stack.enter_async_context(RyzeClient(SECRET, **settings))

            caplog.set_level(logging.DEBUG)  # every logger, aiohttp's and asyncio's included
            client = await make_client(timeout=0.5, connect_timeout=0.2)
            said: list[str] = [repr(client), str(client), repr(client._config)]

            result = await client.fake_call(NUMBER)
            said += [repr(result), str(result), result.model_dump_json()]
            for fault in (Fault.DROP_AFTER_READ, Fault.HANG, Fault.SERVER_ERROR, Fault.HTML_502,
                          Fault.TRUNCATED, Fault.REDIRECT, Fault.RATE_LIMITED):
                server.fail_next(fault)
                with pytest.raises(RyzeError) as info:
                    await client.fake_call(NUMBER, duration=5) if fault is not Fault.RATE_LIMITED \
                        else await (await make_client(max_retries=0)).fake_call(NUMBER)
                said.append(_everything_said(info.value))
            await server.refuse_connections()
            with pytest.raises(RyzeError) as refused:
                await (await make_client(max_retries=1)).fake_call(NUMBER)
            said.append(_everything_said(refused.value))

        assert any(record.levelno == logging.DEBUG for record in caplog.records)
        said += [record.getMessage() for record in caplog.records]
        said += [repr(record.args) for record in caplog.records]
        for text in said:
            assert SECRET not in text

    run_virtual(main(), start=1000.0)


async def test_token_echoed_by_a_server_is_redacted(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    # A proxy error page that echoes request headers must not carry the token into an error.
    ryze_server.fail_next(Fault.HTML_502)
    client = make_client(ryze_server, token="test-token")
    with pytest.raises(OutcomeUnknownError) as info:
        await client.fake_call(NUMBER)
    assert "test-token" not in _everything_said(info.value)


async def test_session_is_lazy_and_closed_with_the_client(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = record_sessions(monkeypatch)
    client = make_client(ryze_server)
    assert sessions == []
    await client.fake_call(NUMBER)
    await client.fake_call(NUMBER)
    (session,) = sessions  # one, made for the first call and kept
    await client.aclose()
    assert session.closed
    assert client.closed
    await client.aclose()  # closing twice is fine


async def test_closed_client_is_a_misuse_error(ryze_server: FakeRyzeServer) -> None:
    async with RyzeClient(
        token="test-token", instance="my-instance", base_url=ryze_server.url, rate_limit=None
    ) as client:
        await client.fake_call(NUMBER)
    with pytest.raises(ClientClosedError, match="closed") as info:
        await client.fake_call(NUMBER)
    assert not isinstance(info.value, RyzeError)
    with pytest.raises(ClientClosedError):
        await client.audio_call(NUMBER, media_url="https://example.com/a.mp3")
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert len(ryze_server.requests) == 1


async def test_client_built_outside_a_loop_works_inside_one(ryze_server: FakeRyzeServer) -> None:
    client = await asyncio.to_thread(
        RyzeClient, token="test-token", instance="my-instance", base_url=ryze_server.url
    )
    async with client:
        assert (await client.fake_call(NUMBER)).success


async def test_before_send_runs_once_after_admission_and_before_the_request(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    seen: list[int] = []

    async def mark() -> None:
        seen.append(len(ryze_server.requests))

    client = make_client(ryze_server)
    await client.fake_call(NUMBER, before_send=mark)
    assert seen == [0]

    async def refuse() -> None:
        raise RuntimeError("journal unavailable")

    with pytest.raises(RuntimeError, match="journal unavailable"):
        await client.fake_call(NUMBER, before_send=refuse)
    assert len(ryze_server.requests) == 1


async def test_cancelled_call_in_flight_is_the_callers_to_judge(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    ryze_server.fail_next(Fault.HANG)
    client = make_client(ryze_server)
    call = asyncio.create_task(client.fake_call(NUMBER))
    await ryze_server.wait_for_requests(1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(ryze_server.requests) == 1
