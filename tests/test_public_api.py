"""The public surface is what users import: guard it."""

from __future__ import annotations

import json

import pytest

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
    RyzeClient,
    RyzeError,
    ServerError,
)

from .byte_server import byte_server, canned

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
    public -= {"testing", "metrics", "otel"}
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


STATUS_TABLE: list[tuple[int, str, type[Exception]]] = [
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


async def _error_for(status: int, body: bytes) -> APIError | OutcomeUnknownError:
    """What a call raises when the server answers ``status`` with ``body`` (never resent)."""
    answer = canned(status, body, "application/json")
    async with byte_server(answer) as server:
        client = RyzeClient(token="test-token", instance="my-instance", base_url=server.url,
                            rate_limit=None, max_retries=0)
        async with client:
            with pytest.raises((APIError, OutcomeUnknownError)) as info:
                await client.fake_call("5511999999999")
    assert len(server.requests) == 1
    error = info.value
    assert isinstance(error, APIError | OutcomeUnknownError)
    return error


def _envelope(message: str) -> bytes:
    return json.dumps({"success": False, "error": {"message": message}}).encode()


@pytest.mark.parametrize(("status", "message", "cls"), STATUS_TABLE)
async def test_status_table(status: int, message: str, cls: type[APIError]) -> None:
    error = await _error_for(status, _envelope(message))
    assert type(error) is cls, (status, message)
    assert isinstance(error, APIError)
    assert error.status == status
    assert error.message == message
    assert str(status) in str(error)


async def test_only_the_envelope_makes_a_server_error() -> None:
    # #7.5: an answer that is not RyzeAPI's envelope may have been processed: one signal.
    from_api = await _error_for(500, _envelope("failure"))
    from_proxy = await _error_for(502, b"<html>")
    assert isinstance(from_api, ServerError)
    assert not isinstance(from_api, OutcomeUnknownError)
    assert from_api.may_have_been_processed is False
    assert isinstance(from_proxy, OutcomeUnknownError)
    assert from_proxy.status == 502


def test_result_fields_are_described_by_their_attribute_docstrings() -> None:
    # What ``use_attribute_docstrings`` gave (issue 18 reads them without it, at import).
    schema = ryze_async.CallResult.model_json_schema()
    assert schema["properties"]["callId"]["description"] == "The call's id, assigned by WhatsApp."
    assert schema["$defs"]["RateLimitInfo"]["properties"]["limit"]["description"] == (
        "Requests allowed in the current period (``X-RateLimit-Limit``).")
    fields = ryze_async.CallResult.model_fields
    assert all(info.description for info in fields.values())
    assert ryze_async.CallResult.model_validate({"success": True, "callId": "c"}).call_id == "c"
