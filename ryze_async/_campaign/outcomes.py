"""What a campaign reports: one outcome per number, a summary, and the error-to-state mapping."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from .. import (
    APIError,
    AuthenticationError,
    ConnectionFailedError,
    InstanceNotConnectedError,
    InstanceNotFoundError,
    InvalidRequestError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QuotaBackendError,
    RateLimitError,
)
from .._public import public

__all__ = ["CampaignOutcome", "CampaignSummary", "StopReason", "Verdict", "classify"]

#: Why a run ended: every number dealt with, Ctrl-C/SIGTERM/``stop()``, the circuit breaker,
#: or ``abort()`` (second Ctrl-C: in-flight calls not waited for); ``outside_window``: nothing
#: could be called before the next calling window (or ``not_before``) and the campaign was
#: asked to stop then (``exit_outside_window``) rather than wait.
StopReason = Literal["completed", "interrupted", "circuit_breaker", "aborted",
                     "outside_window"]


@public
@dataclass(frozen=True, slots=True)
class CampaignOutcome:
    """The final state of one number in this run (requeued attempts are not reported).

    ``sent`` is False when no request went out (an invalid number, or one refused by the
    client's own validation). ``line`` is the CSV line (or the iterable position).
    """

    number: str
    state: Literal["placed", "failed", "unknown"]
    line: int
    call_id: str | None = None
    status: int | None = None
    error: str | None = None
    sent: bool = True


@public
@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """The state of a whole campaign (its journal), and how this run ended.

    Invariants (exact, tested):

    - ``total`` counts input entries ingested so far (blank lines, comments and a CSV header
      excluded), over every run of this journal; when the input changed between runs and was
      read again, numbers of the old input that were dealt with (or removed) still count;
    - ``skipped == duplicates + invalid + removed + excluded + expired``: never sent (a repeat
      of an earlier number, not a callable number, a number removed from the input file before
      it was called, one on an opt-out list, or one still pending at ``not_after``;
      the invalid ones are stored as ``failed`` rows but counted here, not in ``failed``);
    - ``total == placed + failed + unknown + pending + in_flight + skipped``;
    - ``in_flight`` is 0 in a finished run's summary (in-flight calls end, or become
      ``unknown``); it is non-zero only in a live snapshot or a report on a running campaign.

    ``elapsed`` is this run's wall time in seconds (for ``report``: all runs added up).
    """

    total: int
    placed: int
    failed: int
    unknown: int
    pending: int
    skipped: int
    duplicates: int
    invalid: int
    in_flight: int
    elapsed: float
    stop_reason: StopReason | None = None
    message: str = ""
    #: Pending numbers no longer in the input when it was read again (edited between runs).
    removed: int = 0
    #: Numbers on an opt-out list (``exclude=``) when they were about to be called.
    excluded: int = 0
    #: Numbers still pending at the campaign's ``not_after``: never called late.
    expired: int = 0
    #: Of ``pending``: numbers waiting for their calling window (read from the journal; 0 in
    #: a live snapshot, whose progress line asks the campaign instead).
    held: int = 0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the CLI's ``--json`` line)."""
        data = asdict(self)
        data["elapsed"] = round(self.elapsed, 3)
        return data


@dataclass(frozen=True, slots=True)
class Verdict:
    """Where one attempt leaves its number.

    ``state`` ``pending`` means provably not placed: ``requeue`` says the engine may try it
    again in this run; ``breaker`` (a reason) says the error concerns the token or instance,
    so dispatching must stop.
    """

    state: Literal["placed", "failed", "unknown", "pending"]
    status: int | None = None
    error: str | None = None
    requeue: bool = False
    breaker: str | None = None
    connection_failure: bool = False


_BREAKERS = (
    AuthenticationError,
    PermissionDeniedError,
    InstanceNotFoundError,
    InstanceNotConnectedError,
)


def classify(exc: Exception) -> Verdict | None:
    """Map a call's exception to a :class:`Verdict`; None for an unexpected exception.

    The mapping (CONTRACT "Campaign mapping"): 401/403/404/not-connected trip the breaker
    and leave the number pending, as does a failed shared quota (``QuotaBackendError``: nothing
    was sent); 429 and connection failures are provably not placed (back
    to pending, retried later; a non-retryable connection failure such as TLS trips the
    breaker at once); every ``OutcomeUnknownError`` (a hang-up, a timeout, an answer that
    is not RyzeAPI's envelope whatever its status or text) is unknown; everything else
    RyzeAPI refused is failed.
    """
    verdict: Verdict | None = None
    # First: "may have been placed" wins over any other class an error may also have.
    if isinstance(exc, OutcomeUnknownError):
        verdict = Verdict("unknown", exc.status, str(exc))
    elif isinstance(exc, _BREAKERS):
        verdict = Verdict("pending", exc.status, str(exc),
                          breaker=f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, QuotaBackendError):  # the shared quota is down: nothing was sent
        verdict = Verdict("pending", None, str(exc), breaker=f"QuotaBackendError: {exc}")
    elif isinstance(exc, RateLimitError):
        verdict = Verdict("pending", exc.status, str(exc), requeue=True)
    elif isinstance(exc, ConnectionFailedError):
        verdict = Verdict("pending", None, str(exc), requeue=True, connection_failure=True,
                          breaker=None if exc.retryable else f"ConnectionFailedError: {exc}")
    elif isinstance(exc, APIError):
        verdict = Verdict("failed", exc.status, str(exc))
    elif isinstance(exc, InvalidRequestError):
        verdict = Verdict("failed", None, str(exc))
    return verdict
