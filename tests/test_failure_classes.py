"""Narrow unit tests: each aiohttp failure is sorted into never-sent or outcome-unknown.

aioresponses stands in for the network here only because some failures (TLS, DNS) cannot be
produced on loopback; everything else is tested end to end against the fake server.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses

from ryze_async import ConnectionFailedError, OutcomeUnknownError, RyzeClient
from ryze_async.testing import MockResponse, MockTransport

BASE = "http://127.0.0.1:9"
URL = f"{BASE}/api/call/fake/my-instance"
KEY = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)


@pytest.fixture
async def client() -> AsyncIterator[RyzeClient]:
    async with RyzeClient(
        token="t", instance="my-instance", base_url=BASE, rate_limit=None, max_retries=2,
        backoff_initial=0.001, backoff_max=0.002,
    ) as client:
        yield client


def _attempts(mocked: aioresponses) -> int:
    return sum(len(calls) for calls in mocked.requests.values())


NEVER_SENT_RETRIED = [
    aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connection refused")),
    aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known")),
    aiohttp.ConnectionTimeoutError("connect timed out"),
]


@pytest.mark.parametrize("error", NEVER_SENT_RETRIED, ids=lambda e: type(e).__name__)
async def test_never_sent_failures_are_retried(client: RyzeClient, error: Exception) -> None:
    with aioresponses() as mocked:
        for _ in range(3):
            mocked.post(URL, exception=error)
        with pytest.raises(ConnectionFailedError, match="nothing was sent") as info:
            await client.fake_call("5511999999999")
        assert _attempts(mocked) == 3
    assert info.value.retryable
    assert info.value.attempts == 3


async def test_a_retry_that_reaches_the_server_is_never_retried_again(client: RyzeClient) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=NEVER_SENT_RETRIED[0])
        mocked.post(URL, exception=aiohttp.ServerDisconnectedError())
        mocked.post(URL, exception=NEVER_SENT_RETRIED[0])
        with pytest.raises(OutcomeUnknownError):
            await client.fake_call("5511999999999")
        assert _attempts(mocked) == 2


async def test_tls_failures_are_never_sent_but_not_retried(client: RyzeClient) -> None:
    cert = aiohttp.ClientConnectorCertificateError(KEY, ssl.SSLCertVerificationError("bad cert"))
    with aioresponses() as mocked:
        mocked.post(URL, exception=cert)
        with pytest.raises(ConnectionFailedError, match="TLS") as info:
            await client.fake_call("5511999999999")
        assert _attempts(mocked) == 1
    assert info.value.retryable is False


AFTER_SEND = [
    aiohttp.ServerDisconnectedError(),
    aiohttp.ClientOSError(104, "Connection reset by peer"),
    aiohttp.SocketTimeoutError("read timed out"),
    aiohttp.ClientPayloadError("truncated"),
    TimeoutError(),
]


@pytest.mark.parametrize("error", AFTER_SEND, ids=lambda e: type(e).__name__)
async def test_failures_after_send_are_unknown_and_not_retried(
    client: RyzeClient, error: Exception
) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=error)
        mocked.post(URL, payload={"success": True})
        with pytest.raises(OutcomeUnknownError, match="may have been placed"):
            await client.fake_call("5511999999999")
        assert _attempts(mocked) == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b"<html>ok</html>"), (200, b'{"success": false}'), (201, b"[]"),
     (200, b'{"success": true, "callId": 5}')],
)
async def test_a_2xx_that_is_not_a_success_report_is_unknown(status: int, body: bytes) -> None:
    # aioresponses cannot build responses for aiohttp 3.14, and the fake server only answers
    # like RyzeAPI does: the transport seam serves the answer.
    answer = MockResponse(status, headers={"Content-Type": "text/html"}, body=body)
    transport = MockTransport(lambda _request: answer)
    async with RyzeClient(token="t", instance="i", base_url=BASE, rate_limit=None,
                          transport=transport) as client:
        with pytest.raises(OutcomeUnknownError, match=f"HTTP {status}"):
            await client.fake_call("5511999999999")
    assert len(transport.requests) == 1
