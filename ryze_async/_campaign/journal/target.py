"""Which store a ``journal`` target names, and how a target may be shown.

The dry run's read-only looks (``peek_journal``, ``peek_rules``) pick their store here too:
``_peek.py`` reads SQLite, ``_postgres_peek.py`` PostgreSQL.

A ``postgresql://`` (or ``postgres://``) URL names a PostgreSQL database that holds many
campaigns (one is named by ``campaign``); anything else is a path to a SQLite journal file.
asyncpg is imported only when a PostgreSQL target is opened (the ``postgres`` extra).
A URL is never shown with its password: every message, repr and log uses :func:`describe`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..._urls import scrub, shown_url
from .recorded_rules import CampaignRules
from .schema import CampaignIdentity, JournalError
from .sqlite.peek import JournalSnapshot, peek_sqlite, peek_sqlite_rules

if TYPE_CHECKING:
    from .postgres.watch import PgStore

__all__ = [
    "describe", "is_database_url", "open_postgres", "peek_journal", "peek_rules",
]

_SCHEMES = ("postgresql", "postgres")
INSTALL = 'the PostgreSQL journal needs asyncpg: pip install "ryze-async[postgres]"'


def is_database_url(target: object) -> bool:
    """True if ``target`` names a PostgreSQL journal rather than a file."""
    if not isinstance(target, str) or "://" not in target:
        return False
    return target.split("://", 1)[0].lower() in _SCHEMES


def describe(target: str | os.PathLike[str]) -> str:
    """The target as it may be shown: a path, or a URL without its password (`shown_url`)."""
    if not is_database_url(target):
        return os.fspath(target)
    return shown_url(str(target))


async def open_postgres(
    url: str, *, campaign: str | None, identity: CampaignIdentity | None, force: bool,
    read_only: bool,
) -> PgStore:
    """Open one campaign of a PostgreSQL journal (see ``_postgres.py``)."""
    if not campaign:
        raise JournalError(f"{describe(url)} holds many campaigns: name one (--campaign NAME, "
                           "or campaign= in Python)")
    try:
        from .postgres.watch import PgStore  # noqa: PLC0415 - asyncpg only when used
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "asyncpg":
            raise
        raise JournalError(INSTALL) from None
    try:
        return await PgStore.open(url, campaign=campaign, identity=identity, force=force,
                                  read_only=read_only)
    except JournalError as exc:
        if scrub(str(exc), url) == str(exc):
            raise
        raise type(exc)(scrub(str(exc), url)) from None
    except (ValueError, TypeError, OSError) as exc:
        # asyncpg's own parsing errors may quote the URL: never its password, never the chain.
        raise JournalError(f"{describe(url)} is not a usable journal: "
                           f"{scrub(str(exc), url)}") from None


async def peek_journal(target: str | Path, campaign: str | None) -> JournalSnapshot | None:
    """The journal ``target`` names, read-only; None if there is none yet (``_peek.py``)."""
    if isinstance(target, Path):
        return await asyncio.to_thread(peek_sqlite, target)
    from .postgres.peek import peek_postgres  # noqa: PLC0415 - asyncpg only when used

    return await peek_postgres(target, campaign or "")


async def peek_rules(target: str | Path, campaign: str | None) -> CampaignRules | None:
    """The rules the journal ``target`` records, read-only; None if it records none (or there
    is no journal yet)."""
    if isinstance(target, Path):
        return await asyncio.to_thread(peek_sqlite_rules, target)
    from .postgres.peek import peek_postgres_rules  # noqa: PLC0415 - asyncpg only when used

    return await peek_postgres_rules(target, campaign or "")
