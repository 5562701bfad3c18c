"""Every answer and failure lands in its class; only never-sent requests are resent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ryze_async import (
    AuthenticationError,
    ConnectionFailedError,
    InstanceNotConnectedError,
    InstanceNotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    RyzeClient,
    ServerError,
)
from ryze_async.testing import FakeRyzeServer, Fault, run_virtual

from .conftest import ClientFactory

NUMBER = "5511999999999"
# make_client's settings, for the tests on the virtual clock (their own event loop).
SETTINGS: dict[str, Any] = {"token": "test-token", "instance": "my-instance",
                            "backoff_initial": 0.01, "backoff_max": 0.05}


async def test_wrong_token_is_authentication_error(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    client = make_client(ryze_server, token="wrong-token")
    with pytest.raises(AuthenticationError) as info:
        await client.fake_call(NUMBER)
    assert info.value.status == 401
    assert info.value.message == "Invalid token"
    assert "wrong-token" not in str(info.value)
    assert len(ryze_server.requests) == 1


async def test_unknown_instance(ryze_server: FakeRyzeServer, make_client: ClientFactory) -> None:
    client = make_client(ryze_server)
    with pytest.raises(InstanceNotFoundError) as info:
        await client.fake_call(NUMBER, instance="nope")
    assert info.value.status == 404
    assert info.value.rate_limit is not None


@pytest.mark.parametrize("status", [400, 503])
async def test_instance_not_connected(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, status: int
) -> None:
    ryze_server.disconnect_instance("my-instance", status=status)
    client = make_client(ryze_server)
    with pytest.raises(InstanceNotConnectedError) as info:
        await client.fake_call(NUMBER)
    assert info.value.status == status
    assert len(ryze_server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "status", "error", "says"),
    [
        (Fault.SERVER_ERROR, 500, ServerError, "internal failure"),
        (Fault.HTML_502, 502, OutcomeUnknownError, "text/html"),
    ],
)
async def test_5xx_is_never_resent(
    ryze_server: FakeRyzeServer, make_client: ClientFactory,
    fault: Fault, status: int, error: type[ServerError | OutcomeUnknownError], says: str,
) -> None:
    # RyzeAPI's own 500 envelope means it handled the request and failed (ServerError, not
    # placed); a proxy's HTML 502 may have forwarded it first (#7.5: OutcomeUnknownError).
    ryze_server.fail_next(fault)
    client = make_client(ryze_server, max_retries=5)
    with pytest.raises(error) as info:
        await client.fake_call(NUMBER)
    assert info.value.status == status
    assert isinstance(info.value, OutcomeUnknownError) is (error is OutcomeUnknownError)
    assert says in info.value.message
    assert len(ryze_server.requests) == 1


async def test_drop_after_send_is_unknown_and_not_resent(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    ryze_server.fail_next(Fault.DROP_AFTER_READ)
    client = make_client(ryze_server, max_retries=5)
    with pytest.raises(OutcomeUnknownError, match="may have been placed"):
        await client.fake_call(NUMBER)
    assert len(ryze_server.requests) == 1
    # The client is still usable, and the next call is a separate, single request.
    await client.fake_call(NUMBER)
    assert len(ryze_server.requests) == 2


def test_hang_is_unknown_and_not_resent() -> None:
    # On the virtual clock: the timeout's half second costs no real time.
    async def main() -> None:
        async with FakeRyzeServer() as server:
            server.fail_next(Fault.HANG)
            async with RyzeClient(**SETTINGS, base_url=server.url, rate_limit=None, timeout=0.5,
                                  connect_timeout=0.2, max_retries=5) as client:
                with pytest.raises(OutcomeUnknownError, match=r"within 0\.5 s"):
                    await client.fake_call(NUMBER)
            assert len(server.requests) == 1

    run_virtual(main(), start=1000.0)


async def test_truncated_answer_is_unknown(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    ryze_server.fail_next(Fault.TRUNCATED)
    client = make_client(ryze_server, max_retries=5)
    with pytest.raises(OutcomeUnknownError, match="cut off") as cut:
        await client.fake_call(NUMBER)
    assert len(ryze_server.requests) == 1
    # The status line came whole before the body was cut: the error says what it saw.
    assert cut.value.status == 200
    assert "HTTP 200" in str(cut.value)


async def test_redirect_is_not_followed(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    ryze_server.fail_next(Fault.REDIRECT)
    client = make_client(ryze_server)
    # Not RyzeAPI's envelope: nothing proves it was not handled first (#7.5).
    with pytest.raises(OutcomeUnknownError, match="not followed") as info:
        await client.fake_call(NUMBER)
    assert info.value.status == 307
    assert [r.path for r in ryze_server.requests] == ["/api/call/fake/my-instance"]


async def test_refused_connection_is_retried_until_the_server_comes_up(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await ryze_server.refuse_connections()
    first_failure = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "not sent" in record.getMessage():
                first_failure.set()

    watch = Watch()
    logging.getLogger("ryze_async").addHandler(watch)
    try:
        client = make_client(ryze_server, max_retries=50, backoff_initial=0.05, backoff_max=0.1)
        call = asyncio.create_task(client.fake_call(NUMBER))
        await first_failure.wait()
        assert ryze_server.requests == []
        await ryze_server.accept_connections()
        result = await call
    finally:
        logging.getLogger("ryze_async").removeHandler(watch)
    assert result.success
    assert len(ryze_server.requests) == 1


async def test_refused_connection_gives_up_after_max_retries(
    ryze_server: FakeRyzeServer, make_client: ClientFactory
) -> None:
    await ryze_server.refuse_connections()
    client = make_client(ryze_server, max_retries=2)
    with pytest.raises(ConnectionFailedError, match="nothing was sent") as info:
        await client.fake_call(NUMBER)
    assert info.value.attempts == 3
    assert info.value.retryable is True
    assert ryze_server.requests == []


def test_429_waits_for_the_reset_then_places_one_call() -> None:
    # The wait is what is under test: on the virtual clock it is measured exactly and costs no
    # real second.
    async def main() -> None:
        frozen = 1_800_000_000.0
        async with FakeRyzeServer(rate_period=1.0, clock=lambda: frozen) as server:
            server.fail_next(Fault.RATE_LIMITED)
            async with RyzeClient(**SETTINGS, base_url=server.url, rate_limit=100,
                                  rate_period=1.0) as client:
                loop = asyncio.get_running_loop()
                started = loop.time()
                result = await client.fake_call(NUMBER)
                waited = loop.time() - started

        assert result.success
        assert [r.status for r in server.requests] == [429, 200]
        assert len(server.placed_calls) == 1
        # Reset is one second after the server's Date on the server's (frozen) clock.
        assert waited >= 1.0

    run_virtual(main(), start=1000.0)


def test_429_gives_up_after_max_retries() -> None:
    async def main() -> None:
        frozen = 1_800_000_000.0
        async with FakeRyzeServer(rate_period=1.0, clock=lambda: frozen) as server:
            server.set_fault(Fault.RATE_LIMITED)
            async with RyzeClient(**SETTINGS, base_url=server.url, rate_limit=None,
                                  max_retries=1) as client:
                with pytest.raises(RateLimitError) as info:
                    await client.fake_call(NUMBER)
        assert info.value.reset_at == frozen + 1
        assert info.value.rate_limit is not None
        assert info.value.rate_limit.remaining == 0
        assert [r.status for r in server.requests] == [429, 429]
        assert server.placed_calls == []

    run_virtual(main(), start=1000.0)
