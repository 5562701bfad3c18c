"""How the fake server reads a request: route, instance, token and headers; JSON answers."""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import hdrs, web

from ._records import Route
from ._validation import Answer


def classify(method: str, raw_path: str) -> tuple[Route, str | None]:
    """Route by the RAW path so an encoded ``%2F`` stays inside the instance segment."""
    if raw_path == "/health" and method in ("GET", "HEAD"):
        return "health", None
    segments = raw_path.split("/")
    if (
        method == "POST"
        and len(segments) == 5
        and segments[:3] == ["", "api", "call"]
        and segments[3] in ("audio", "fake")
    ):
        route: Route = "audio" if segments[3] == "audio" else "fake"
        return route, unquote(segments[4])
    return "other", None


def token_of(request: web.Request) -> str | None:
    """The ``token`` header, else an ``Authorization: Bearer`` token, else None."""
    token = request.headers.get("token")
    if token:
        return token
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def outcome_response(outcome: Answer, headers: dict[str, str] | None = None) -> web.Response:
    """`outcome` as a JSON response."""
    return web.json_response(outcome.body, status=outcome.status, headers=headers)
