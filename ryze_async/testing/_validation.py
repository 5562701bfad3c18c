"""Body validation and success bodies of the two call routes, as the real API documents them.

Type mismatches are reported the way a Go-style JSON decoder would (before any field rule):
``400 Invalid request body: <detail>``. ``null`` counts as omitted. Unknown keys are ignored,
since the real server's behaviour for them is unknown.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from ._faults import error_body

CallRoute = Literal["audio", "fake"]

DEFAULT_DURATION = 8
MIN_DURATION = 1
MAX_DURATION = 60


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A request body parsed once, for both the record and the validation."""

    value: Any  # the parsed JSON, or None when `error` is set
    error: str | None  # the decoder's complaint, when the body is not JSON


@dataclass(frozen=True, slots=True)
class Answer:
    """The status and JSON body the server answers with."""

    status: int
    body: dict[str, object]


def parse_body(raw: bytes) -> ParsedBody:
    """Parse `raw` as JSON (UTF-8/16/32 detected like the stdlib does)."""
    try:
        return ParsedBody(json.loads(raw), None)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        return ParsedBody(None, str(exc))


def error(status: int, message: str) -> Answer:
    """An error outcome in RyzeAPI's envelope."""
    return Answer(status, error_body(message))


def new_call_id() -> str:
    """A WhatsApp-style call id: 20 uppercase hex characters."""
    return secrets.token_hex(10).upper()


def _type_error(data: dict[str, Any], route: CallRoute) -> str | None:
    strings = ("number", "mediaUrl", "mediaBase64") if route == "audio" else ("number",)
    for key in strings:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            return f"{key} must be a string"
    if route == "fake":
        duration = data.get("duration")
        # bool is an int subclass in Python but not in JSON.
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
            return "duration must be an integer"
    return None


def _body_problem(route: CallRoute, parsed: ParsedBody) -> str | None:
    """The first rule the body breaks, in the documented order, or None."""
    if parsed.error is not None:
        return f"Invalid request body: {parsed.error}"
    data = parsed.value
    if not isinstance(data, dict):
        return "Invalid request body: expected a JSON object"
    problem = _type_error(data, route)
    if problem is not None:
        return f"Invalid request body: {problem}"
    if not data.get("number"):
        return "Number is required"
    if route == "audio":
        exactly_one = bool(data.get("mediaUrl")) != bool(data.get("mediaBase64"))
        return None if exactly_one else "Provide exactly one of mediaUrl or mediaBase64"
    duration = data.get("duration") or DEFAULT_DURATION
    in_range = MIN_DURATION <= duration <= MAX_DURATION
    return None if in_range else "Duration must be between 1 and 60 seconds"


def call_outcome(route: CallRoute, parsed: ParsedBody) -> Answer:
    """Validate a call body (instance checks already passed) and, if valid, place the call."""
    problem = _body_problem(route, parsed)
    if problem is not None:
        return error(400, problem)
    data: dict[str, Any] = parsed.value
    body: dict[str, object] = {
        "success": True,
        "message": "Audio call placed" if route == "audio" else "Call placed successfully",
        "callId": new_call_id(),
        "number": data["number"],
    }
    if route == "fake":
        body["duration"] = data.get("duration") or DEFAULT_DURATION
    return Answer(200, body)
