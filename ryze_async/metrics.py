"""Prometheus metrics for the client and its campaigns (``pip install "ryze-async[metrics]"``).

:class:`PrometheusHooks` is an instrumentation hooks object (``RyzeClient(hooks=...)``): it
counts what the client and its campaigns report, under Prometheus' naming conventions:

- ``ryze_calls_total{outcome,sender}``: calls a campaign finished, by outcome (``placed``,
  ``failed``, ``unknown``): only numbers a request was sent for. An entry refused before its
  first byte (an invalid number: the event's ``sent`` is False) was never a call, so it is not
  a ``failed`` call; it shows in ``ryze_campaign_numbers{state="skipped"}``, as in the summary,
  and on its own in ``{state="invalid"}`` (a part of ``skipped``, as every report shows it);
- ``ryze_request_duration_seconds{kind,sender}``: each request's time on the wire (histogram);
- ``ryze_quota_wait_seconds{sender}``: each wait for a quota slot (histogram);
- ``ryze_campaign_numbers{state}``: the watched campaign's live counts (gauge).

``sender`` is the instance name. No label ever holds a phone number or the token: the hooks'
details objects carry neither. :func:`serve_metrics` serves a registry on ``127.0.0.1``::

    hooks = PrometheusHooks(sender="my-instance")
    async with RyzeClient(token, "my-instance", hooks=hooks) as client:
        campaign = Campaign(client, "numbers.csv", journal="c.db", media=media)
        hooks.watch(campaign)
        with serve_metrics(hooks.registry, port=9464):
            await campaign.run()

``import ryze_async`` does not import this module nor ``prometheus_client``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from ryze_async import CampaignOutcomeRecorded, Hooks, QuotaWaitEnded, RequestEnded

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import start_http_server
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('ryze_async.metrics needs prometheus-client: pip install '
                      '"ryze-async[metrics]"') from exc

if TYPE_CHECKING:
    from ryze_async import CampaignSummary

__all__ = ["PrometheusHooks", "serve_metrics"]

_STATES = ("pending", "in_flight", "placed", "failed", "unknown", "skipped", "invalid")
_QUOTA_BUCKETS = (0.0, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, float("inf"))


class _Snapshots(Protocol):
    def snapshot(self) -> CampaignSummary: ...


class PrometheusHooks(Hooks):
    """Hooks that feed Prometheus metrics; ``registry`` defaults to a new, private one."""

    def __init__(self, *, sender: str = "", registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sender = sender
        self._calls = Counter("ryze_calls", "Campaign numbers finished, by outcome",
                              ("outcome", "sender"), registry=self.registry)
        self._duration = Histogram("ryze_request_duration_seconds",
                                   "Time of each request on the wire", ("kind", "sender"),
                                   registry=self.registry)
        self._quota = Histogram("ryze_quota_wait_seconds", "Time waited for a quota slot",
                                ("sender",), buckets=_QUOTA_BUCKETS, registry=self.registry)
        self._numbers = Gauge("ryze_campaign_numbers", "The watched campaign's numbers, by state",
                              ("state",), registry=self.registry)

    def on_request_ended(self, details: RequestEnded) -> None:
        self._duration.labels(details.kind, details.instance).observe(details.duration)

    def on_quota_wait_ended(self, details: QuotaWaitEnded) -> None:
        self._quota.labels(details.instance).observe(details.waited)

    def on_campaign_outcome(self, details: CampaignOutcomeRecorded) -> None:
        if details.sent:  # an entry refused before sending is not a call (module docstring)
            self._calls.labels(details.state, self.sender).inc()

    def watch(self, campaign: _Snapshots) -> None:
        """Serve ``campaign``'s live counts as ``ryze_campaign_numbers{state}``."""
        for state in _STATES:
            self._numbers.labels(state).set_function(_reader(campaign, state))


def _reader(campaign: _Snapshots, state: str) -> Callable[[], float]:
    return lambda: float(getattr(campaign.snapshot(), state))


@contextlib.contextmanager
def serve_metrics(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1"
) -> Iterator[int]:
    """Serve ``registry`` at ``http://host:port/metrics`` inside the block; yields the port
    (``port=0``: any free one). Loopback by default: the metrics are for this host only."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
