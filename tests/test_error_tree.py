"""Issue 8: one error tree in one module, named by its public path, with no state kept twice."""

from __future__ import annotations

import pickle
import traceback

import pytest

import ryze_async
from ryze_async import (
    ClientClosedError,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    OutcomeUnknownError,
    RateLimitError,
    RateLimitInfo,
    RyzeError,
)

PUBLIC_ERRORS = [
    getattr(ryze_async, name) for name in ryze_async.__all__
    if isinstance(getattr(ryze_async, name), type)
    and issubclass(getattr(ryze_async, name), BaseException)
]


def test_every_public_error_is_found() -> None:
    assert len(PUBLIC_ERRORS) == 18  # QuotaTimeoutError (#11) is the 18th


@pytest.mark.parametrize("cls", PUBLIC_ERRORS, ids=lambda c: c.__name__)
def test_every_public_error_is_named_by_its_public_path(cls: type[BaseException]) -> None:
    assert cls.__module__ == "ryze_async"
    assert getattr(ryze_async, cls.__qualname__) is cls


def test_a_traceback_shows_the_public_name() -> None:
    with pytest.raises(OutcomeUnknownError) as info:
        raise OutcomeUnknownError("the call may be ringing")
    shown = "".join(traceback.format_exception(info.value))
    assert "ryze_async.OutcomeUnknownError: the call may be ringing" in shown
    assert "_errors" not in shown
    assert "_exceptions" not in shown


@pytest.mark.parametrize("cls", [JournalError, JournalLockedError, JournalMismatchError])
def test_journal_errors_are_in_the_tree_outside_the_network_root(cls: type[Exception]) -> None:
    # A journal that cannot be written must stop a campaign, not pass for one call's outcome
    # in an ``except RyzeError``.
    assert issubclass(cls, JournalError)
    assert not issubclass(cls, RyzeError | OSError)
    copy = pickle.loads(pickle.dumps(cls("journal.db is locked")))  # noqa: S301 - our own bytes
    assert type(copy) is cls
    assert copy.args == ("journal.db is locked",)


def test_client_closed_stays_outside_the_network_root() -> None:
    assert issubclass(ClientClosedError, RuntimeError)
    assert not issubclass(ClientClosedError, RyzeError)


def test_reset_at_is_the_rate_limits_reset_and_read_only() -> None:
    error = RateLimitError("slow down", rate_limit=RateLimitInfo(limit=100, remaining=0,
                                                                 reset=1_800_000_060.0))
    assert error.reset_at == 1_800_000_060.0
    with pytest.raises(AttributeError):
        error.reset_at = 5.0  # type: ignore[misc]
    assert "reset_at" not in vars(error)  # one value, kept in one place
    assert RateLimitError("no headers").reset_at is None


def test_a_reset_given_alone_lands_in_the_rate_limit() -> None:
    error = RateLimitError("slow down", reset_at=42.0)
    assert error.rate_limit is not None
    assert error.rate_limit.reset == 42.0
    assert error.reset_at == 42.0
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert copy.reset_at == 42.0
    assert copy.rate_limit == error.rate_limit


def test_media_is_named_by_its_public_path() -> None:
    assert ryze_async.Media.__module__ == "ryze_async"
    assert repr(ryze_async.Media).startswith("<class 'ryze_async.Media'")
