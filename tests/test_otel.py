"""The OpenTelemetry adapter on the hooks: one CLIENT span per attempt, HTTP client semantic
conventions, a span event for the quota wait, no token and no number in any attribute."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ryze_async import OutcomeUnknownError, RyzeClient
from ryze_async.otel import OpenTelemetryHooks
from ryze_async.testing import MockRequest, MockResponse, MockTransport, run_virtual

TOKEN = "secret-token-0123456789"
NUMBER = "5511999999999"


def traced() -> tuple[OpenTelemetryHooks, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryHooks(tracer_provider=provider), exporter


def test_one_client_span_per_attempt_with_a_quota_wait_event() -> None:
    hooks, exporter = traced()
    answers = iter([MockTransport.not_sent(), None, None, MockTransport.unknown()])

    def answer(request: MockRequest) -> MockResponse:
        failure = next(answers)
        if failure is not None:
            raise failure
        return MockResponse(200, {"success": True, "message": "placed", "callId": "c1"})

    async def main() -> None:
        client = RyzeClient(token=TOKEN, instance="shop", transport=MockTransport(answer),
                            rate_limit=1, rate_period=10.0, backoff_initial=0.01,
                            hooks=hooks)
        await client.fake_call(NUMBER)  # a never-sent attempt, then a placed one
        await client.fake_call(NUMBER)  # waits 10 s for the quota first
        with pytest.raises(OutcomeUnknownError):
            await client.fake_call(NUMBER)
        await client.aclose()

    run_virtual(main(), start=1000.0)
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    assert {span.kind for span in spans} == {SpanKind.CLIENT}
    assert {span.name for span in spans} == {"POST"}
    first, resent, waited, unknown = spans
    assert first.attributes["error.type"] == "ConnectionFailedError"  # type: ignore[index]
    assert first.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in first.attributes  # type: ignore[operator]
    assert resent.attributes["http.request.resend_count"] == 1  # type: ignore[index]
    assert resent.attributes["http.response.status_code"] == 200  # type: ignore[index]
    assert "error.type" not in resent.attributes  # type: ignore[operator]
    assert resent.attributes["url.full"] == "https://ryzeapi.cloud/api/call/fake/shop"  # type: ignore[index]
    assert [event.name for event in resent.events] == []
    [event] = waited.events
    assert event.name == "ryze.quota_wait"
    assert event.attributes["ryze.quota.wait_seconds"] == pytest.approx(  # type: ignore[index]
        10.0 + 10.0 / 60, abs=0.2)
    assert unknown.attributes["error.type"] == "OutcomeUnknownError"  # type: ignore[index]
    for span in spans:
        said = repr(dict(span.attributes or {})) + repr(
            [dict(e.attributes or {}) for e in span.events])
        assert TOKEN not in said
        assert NUMBER not in said
        assert "99999999" not in said


def test_an_error_status_sets_error_type_to_the_status() -> None:
    hooks, exporter = traced()

    def refuse(request: MockRequest) -> MockResponse:
        return MockResponse(404, {"success": False, "error": {"message": "no such instance"}})

    async def main() -> None:
        async with RyzeClient(token=TOKEN, instance="shop", transport=MockTransport(refuse),
                              hooks=hooks) as client:
            with pytest.raises(Exception):  # noqa: B017, PT011 - its class is not under test
                await client.fake_call(NUMBER)

    asyncio.run(main())
    [span] = exporter.get_finished_spans()
    assert span.attributes["http.response.status_code"] == 404  # type: ignore[index]
    assert span.attributes["error.type"] == "404"  # type: ignore[index]
