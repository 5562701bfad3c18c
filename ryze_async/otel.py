"""OpenTelemetry tracing on the instrumentation hooks (``pip install ryze-async[otel]``).

    from ryze_async.otel import OpenTelemetryHooks
    client = RyzeClient(hooks=OpenTelemetryHooks())

One CLIENT span per attempt (a resend after a connection that was never made, or after a 429,
is a span of its own), following the HTTP client semantic conventions: named ``POST``, with
``http.request.method``, ``url.full`` (the endpoint's URL: the token travels in a header, never
in it), ``server.address``/``server.port``, ``http.request.resend_count`` on resends,
``http.response.status_code``, and ``error.type`` (the failure's class name, or the status for
an error status) with the span's status set to error. A wait for the quota before an attempt
is a span event, ``ryze.quota_wait``, with the seconds waited. The phone number is never in a
span: the hooks' details never carry it. Only ``opentelemetry-api`` is needed; without an SDK
configured the spans cost next to nothing.

Attempts are matched to their hooks by the asyncio task that runs the call: each call runs in
one task, and a task runs one call at a time.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from . import __version__
from ._hooks import Hooks, QuotaWaitEnded, RequestEnded, RequestStarted

__all__ = ["OpenTelemetryHooks"]

_Key = asyncio.Task[object] | None


def _task() -> _Key:
    try:
        return asyncio.current_task()
    except RuntimeError:  # pragma: no cover - hooks run on the loop
        return None


class OpenTelemetryHooks(Hooks):
    """Hooks that trace each attempt as an OpenTelemetry CLIENT span."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("ryze_async", __version__, tracer_provider)
        self._spans: dict[_Key, Span] = {}
        self._waits: dict[_Key, QuotaWaitEnded] = {}

    def on_quota_wait_ended(self, details: QuotaWaitEnded) -> None:
        if details.admitted:  # the attempt that follows tells it as an event
            self._waits[_task()] = details

    def on_request_started(self, details: RequestStarted) -> None:
        key = _task()
        parts = urlsplit(details.url)
        attributes: dict[str, str | int] = {
            "http.request.method": "POST",
            "url.full": details.url,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "ryze.call.kind": details.kind,
            "ryze.instance": details.instance,
        }
        if details.attempt > 1:
            attributes["http.request.resend_count"] = details.attempt - 1
        span = self._tracer.start_span("POST", kind=SpanKind.CLIENT, attributes=attributes)
        wait = self._waits.pop(key, None)
        if wait is not None:
            span.add_event("ryze.quota_wait", {"ryze.quota.wait_seconds": wait.waited})
        self._spans[key] = span

    def on_request_ended(self, details: RequestEnded) -> None:
        span = self._spans.pop(_task(), None)
        if span is None:
            return
        error = details.error
        if details.status is not None:
            span.set_attribute("http.response.status_code", details.status)
            if error is None and details.status >= 400:
                error = str(details.status)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR))
        span.end()
