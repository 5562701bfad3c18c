"""Per-request options: ``RyzeClient.with_options`` views, a call's lane, ``max_wait`` and
``timeout``, and its admission by the quota in its lane and by its deadline (issue 11).

A view is a shallow copy of its client with another configuration: it shares the transport
(the session), the quota, the hooks and the close guard, so closing the client ends the
views' use too, while closing a view only ends new calls through that view.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable
from dataclasses import replace
from typing import Self

from ._checks import check_settings
from ._closing import CloseGuard
from ._config import ClientConfig, check_lanes
from ._hooks import HookDispatch
from ._quota import Lane, QuotaBackend, observed_wait
from ._retry import Call, RetryPolicy, Sender
from ._transports import Transport

__all__ = ["UNSET", "Options", "Unset"]


class Unset:
    """``max_wait`` not given: the client's own applies (None means "no limit")."""


UNSET = Unset()


class Options:
    """``RyzeClient``'s per-request options (a mixin: the state is the client's)."""

    _config: ClientConfig
    _transport: Transport
    _hooks: HookDispatch | None
    _guard: CloseGuard
    _policy: RetryPolicy
    _sender: Sender
    _is_view = False
    _root: Self  # a view's client: the one whose quota (and its connections) the view uses
    _view_closed = False  # a view closed: no new calls through it
    _attempt_timeout: float | None = None  # with_options(timeout=): bounds each attempt
    _limited = False  # see _note_limits

    def with_options(
        self, *, timeout: float | None = None, max_retries: int | None = None,
        priority: Lane | None = None, max_wait: float | Unset | None = UNSET,
    ) -> Self:
        """A light view of this client with other per-request options; this one is unchanged.

        The view shares the session (transport), the quota and the hooks. ``timeout`` bounds
        each attempt of the view's calls (sending and the answer; its expiry after sending is
        an ``OutcomeUnknownError``); ``max_retries``, ``priority`` and ``max_wait`` replace
        this client's. Closing the view does not close this client; closing this client
        ends the views' use too.
        """
        self._check_open()
        if timeout is not None:
            check_settings(timeout=timeout)
        cfg = self._config
        config = replace(
            cfg,
            max_retries=cfg.max_retries if max_retries is None else max_retries,
            priority=cfg.priority if priority is None else priority,
            max_wait=cfg.max_wait if isinstance(max_wait, Unset) else max_wait,
        )
        check_lanes(config.priority, cfg.interactive_reserve, cfg.rate_limit, config.max_wait)
        view = copy.copy(self)
        view._root = self._root if self._is_view else self
        view._is_view = True
        view._view_closed = False
        view._config = config
        view._policy = replace(self._policy, max_retries=config.max_retries)  # checks it
        view._sender = Sender(self._transport, cfg.headers, view._policy, self._guard.sleep,
                              self._hooks)
        view._attempt_timeout = self._attempt_timeout if timeout is None else float(timeout)
        view._note_limits()
        return view

    @property
    def priority(self) -> Lane:
        """This client's quota lane: ``"interactive"`` or ``"bulk"``."""
        return self._config.priority

    @property
    def max_retries(self) -> int:
        """How many times a refused (429) or never-sent attempt is sent again."""
        return self._config.max_retries

    def _check_open(self) -> None:
        raise NotImplementedError  # the client's

    def _note_limits(self) -> None:
        """Whether calls need ``_limit`` (a lane, a wait or a bound not the defaults): when
        not, the hot path skips it with one attribute test."""
        cfg = self._config
        self._limited = (cfg.priority != "interactive" or cfg.max_wait is not None
                         or self._attempt_timeout is not None)

    def _limit(self, call: Call, max_wait: float | Unset | None, timeout: float | None) -> None:
        """Give the call its lane, its quota deadline and its attempts' bound."""
        cfg = self._config
        if cfg.priority != "interactive":
            call.lane = cfg.priority
        if isinstance(max_wait, Unset):
            max_wait = cfg.max_wait
        if max_wait is not None:
            check_settings(max_wait=max_wait)
            call.max_wait = max_wait
            call.deadline = asyncio.get_running_loop().time() + max_wait
        if timeout is None:
            timeout = self._attempt_timeout
        if timeout is not None:
            check_settings(timeout=timeout)
            call.timeout = timeout

    async def _admit(self, call: Call, quota: QuotaBackend) -> float:
        # The defaults are not passed: a backend that knows no lanes serves the default lane.
        slot = quota.try_acquire() if call.lane is None else quota.try_acquire(lane=call.lane)
        if slot is not None:
            return slot

        def acquiring() -> Awaitable[float]:
            if call.lane is None and call.deadline is None:
                return quota.acquire()
            return quota.acquire(lane=call.lane or "interactive", deadline=call.deadline)

        if self._hooks is None:
            return await self._guard.wait(acquiring())
        return await observed_wait(self._guard.wait, acquiring, self._hooks, call.kind,
                                   call.instance)
