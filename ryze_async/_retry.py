"""The retry boundary, and the only module that imports tenacity.

Exactly one kind of failure is retried: ``ConnectionFailedError`` with ``retryable`` set, i.e. the
TCP connection was never made, so the server cannot have seen the request. Everything else,
above all ``OutcomeUnknownError`` and any HTTP answer, passes through untouched: resending a
request the server may have processed would call a person twice.

The first attempt runs outside tenacity (the client sends it itself and calls ``resend`` only
on failure): building and running a retry state costs 20-30 µs, a large share of the client's
per-call budget, and it is only needed once a first attempt failed. That failure is then
replayed as tenacity's attempt 1, so attempt numbers and backoff are tenacity's own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ._errors import ConnectionFailedError

__all__ = ["RetryPolicy"]

T = TypeVar("T")
_log = logging.getLogger("ryze_async")
Sleep = Callable[[float], Awaitable[None]]


def _never_sent(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionFailedError) and exc.retryable


def _log_retry(state: RetryCallState) -> None:
    if not _log.isEnabledFor(logging.WARNING):
        return
    exc = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    _log.warning(
        "request not sent (%s); retrying in %.2f s (attempt %d)",
        exc, delay, state.attempt_number + 1,
    )


class RetryPolicy:
    """Exponential backoff with full jitter, for failures that never reached the server."""

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_initial: float,
        backoff_max: float,
        sleep: Sleep | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep

    def _retrying(self) -> AsyncRetrying:
        extra = {} if self._sleep is None else {"sleep": self._sleep}
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_random_exponential(multiplier=self._backoff_initial, max=self._backoff_max),
            retry=retry_if_exception(_never_sent),
            before_sleep=_log_retry,
            reraise=True,
            **extra,  # type: ignore[arg-type]
        )

    async def run(self, send: Callable[[], Awaitable[T]]) -> T:
        """Await ``send()``; resend only after a failure that provably sent nothing."""
        try:
            return await send()
        except ConnectionFailedError as exc:
            return await self.resend(exc, send)

    async def resend(self, failure: ConnectionFailedError, send: Callable[[], Awaitable[T]]) -> T:
        """Carry on after a first attempt that failed with ``failure``: re-raise it unless it is
        retryable, else resend with backoff (``failure`` counts as tenacity's attempt 1).

        The client sends its first attempt itself and calls this only on failure, so a call that
        succeeds at once never pays for a retry frame or closure.
        """
        if not failure.retryable or self.max_retries == 0:
            raise failure
        first_failure: ConnectionFailedError | None = failure
        attempts = 1

        async def attempt() -> T:
            nonlocal first_failure, attempts
            if first_failure is not None:
                replayed, first_failure = first_failure, None
                raise replayed
            attempts += 1
            return await send()

        try:
            return await self._retrying()(attempt)
        except ConnectionFailedError as exc:
            exc.attempts = attempts
            raise
