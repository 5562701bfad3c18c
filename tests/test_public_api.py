"""The public surface is what users import: guard it."""

from __future__ import annotations

import ryze_async
from ryze_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConnectionFailedError,
    InstanceNotConnectedError,
    InstanceNotFoundError,
    InvalidRequestError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    RyzeError,
    ServerError,
)
from ryze_async._errors import error_for_status

FIXED_NAMES = {
    "RyzeClient", "RyzeError", "InvalidRequestError", "APIError", "BadRequestError",
    "AuthenticationError", "PermissionDeniedError", "InstanceNotFoundError",
    "InstanceNotConnectedError", "RateLimitError", "ServerError", "ConnectionFailedError",
    "OutcomeUnknownError", "CallResult", "RateLimitInfo", "Media", "Campaign", "CampaignSummary",
    "run_campaign",
}


def test_all_is_sorted_unique_and_importable() -> None:
    names = ryze_async.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(ryze_async, name), name


def test_names_other_code_depends_on_are_exported() -> None:
    assert set(ryze_async.__all__) >= FIXED_NAMES


def test_nothing_public_is_left_out_of_all() -> None:
    # pytest's assertion rewriting adds "@py_builtins"-style names to rewritten modules.
    public = {name for name in vars(ryze_async) if not name.startswith(("_", "@"))}
    # Submodules are attributes of the package too; they are not part of the API.
    public -= {"testing"}
    assert public <= set(ryze_async.__all__) | {"annotations"}


def test_error_tree() -> None:
    for cls in (BadRequestError, AuthenticationError, PermissionDeniedError,
                InstanceNotFoundError, InstanceNotConnectedError, RateLimitError, ServerError):
        assert issubclass(cls, APIError)
    for cls in (InvalidRequestError, APIError, ConnectionFailedError, OutcomeUnknownError):
        assert issubclass(cls, RyzeError)
    assert issubclass(InvalidRequestError, ValueError)
    assert not issubclass(ClientClosedError, RyzeError)
    assert issubclass(ClientClosedError, RuntimeError)
    assert not issubclass(OutcomeUnknownError, ConnectionFailedError)
    assert not issubclass(ConnectionFailedError, OutcomeUnknownError)


def test_status_table() -> None:
    cases: list[tuple[int, str, type[APIError]]] = [
        (400, "Number is required", BadRequestError),
        (400, "Instance is not connected to WhatsApp", InstanceNotConnectedError),
        (503, "Instance is not connected to WhatsApp", InstanceNotConnectedError),
        (401, "Invalid token", AuthenticationError),
        (403, "Forbidden", PermissionDeniedError),
        (404, "instance not found", InstanceNotFoundError),
        (429, "Rate limit exceeded. Try again later.", RateLimitError),
        (500, "boom", ServerError),
        (502, "bad gateway", ServerError),
        (503, "bridge not configured", ServerError),
        (409, "conflict", APIError),
    ]
    for status, message, cls in cases:
        error = error_for_status(status, message)
        assert type(error) is cls, (status, message)
        assert error.status == status
        assert error.message == message
        assert str(status) in str(error)


def test_only_the_envelope_makes_a_server_error() -> None:
    # #7.5: an answer that is not RyzeAPI's envelope may have been processed: one signal.
    from_api = error_for_status(500, "failure", from_api=True)
    from_proxy = error_for_status(502, "<html>", from_api=False)
    assert isinstance(from_api, ServerError)
    assert not isinstance(from_api, OutcomeUnknownError)
    assert from_api.may_have_been_processed is False
    assert isinstance(from_proxy, OutcomeUnknownError)
    assert from_proxy.status == 502
