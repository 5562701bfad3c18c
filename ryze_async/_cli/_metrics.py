"""``campaign --metrics-port``: Prometheus metrics served while the campaign runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from ._exits import UsageError

if TYPE_CHECKING:
    from ryze_async.metrics import PrometheusHooks

__all__ = ["metrics_hooks", "serving"]


def metrics_hooks(port: int | None, sender: str) -> PrometheusHooks | None:
    """The hooks to give the client when ``--metrics-port`` is set (None otherwise)."""
    if port is None:
        return None
    try:
        from ryze_async.metrics import PrometheusHooks  # noqa: PLC0415 - an optional extra
    except ImportError:
        raise UsageError('--metrics-port needs prometheus-client: pip install '
                         '"ryze-async[metrics]"') from None
    return PrometheusHooks(sender=sender)


@contextlib.contextmanager
def serving(hooks: PrometheusHooks | None, host: str, port: int | None,
            out: TextIO) -> Iterator[None]:
    """Serve ``hooks``' registry on ``host:port`` for the block (nothing when None)."""
    if hooks is None or port is None:
        yield
        return
    from ryze_async.metrics import serve_metrics  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        try:
            bound = stack.enter_context(serve_metrics(hooks.registry, port, host))
        except OSError as exc:
            raise UsageError(f"--metrics-port: cannot listen on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
        print(f"metrics: http://{host}:{bound}/metrics", file=out, flush=True)
        yield
