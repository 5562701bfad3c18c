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

import asyncio
import datetime
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ._checks import check_settings
from ._exceptions import ConnectionFailedError

__all__ = ["RetryPolicy", "retry_after_seconds"]

T = TypeVar("T")
_log = logging.getLogger("ryze_async")
Sleep = Callable[[float], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


def _http_date(value: str) -> float | None:
    """Unix seconds of an HTTP date; every HTTP date is UTC, whatever zone it spells."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 9110, not local time
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds, or an HTTP date read on the
    server's clock via its ``Date``); None when absent or unusable."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = _http_date(value)
    if when is None:
        return None
    date = headers.get("Date")
    now = _http_date(date) if date is not None else None
    if now is None:
        return None  # no server clock to read the date against: ours may be off by minutes
    delay = when - now
    return max(delay, 0.0) if math.isfinite(delay) else None


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
        check_settings(max_retries=max_retries, backoff_initial=backoff_initial,
                       backoff_max=backoff_max)
        self.max_retries = max_retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep

    def _retrying(self, not_sent: Hook | None, sleep: Sleep | None) -> AsyncRetrying:
        async def before_sleep(state: RetryCallState) -> None:
            _log_retry(state)
            if not_sent is not None:  # proven never sent: the caller may record it so
                await not_sent()

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_random_exponential(multiplier=self._backoff_initial, max=self._backoff_max),
            retry=retry_if_exception(_never_sent),
            before_sleep=before_sleep,
            reraise=True,
            sleep=sleep or self._sleep or asyncio.sleep,
        )

    async def run(self, send: Callable[[], Awaitable[T]]) -> T:
        """Await ``send()``; resend only after a failure that provably sent nothing."""
        try:
            return await send()
        except ConnectionFailedError as exc:
            return await self.resend(exc, send)

    async def resend(
        self,
        failure: ConnectionFailedError,
        send: Callable[[], Awaitable[T]],
        *,
        before_attempt: Hook | None = None,
        not_sent: Hook | None = None,
        sleep: Sleep | None = None,
    ) -> T:
        """Carry on after a first attempt that failed with ``failure``: re-raise it unless it is
        retryable, else resend with backoff (``failure`` counts as tenacity's attempt 1).

        ``not_sent`` is awaited before each backoff (the last failure provably sent nothing),
        ``before_attempt`` before each resend; neither runs once the policy gives up.
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
            if before_attempt is not None:
                await before_attempt()
            attempts += 1
            return await send()

        try:
            return await self._retrying(not_sent, sleep)(attempt)
        except ConnectionFailedError as exc:
            exc.attempts = attempts
            raise
