"""Watching the default transport's aiohttp sessions without reaching into the client."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest


def record_sessions(monkeypatch: pytest.MonkeyPatch) -> list[aiohttp.ClientSession]:
    """Every aiohttp session made from now on (the default transport makes them)."""
    made: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def recorded(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        session = real(*args, **kwargs)
        made.append(session)
        return session

    monkeypatch.setattr(aiohttp, "ClientSession", recorded)
    return made
