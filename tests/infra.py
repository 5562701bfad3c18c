"""The ``infra`` marker, derived and enforced: the quick loop (``pytest -m "not infra"``) never
starts a program.

Every real server these tests use (redis-server, PostgreSQL, PgBouncer, Chromium) and every CLI
or worker process is a child process started through ``subprocess.Popen`` (``asyncio``'s
subprocesses included). So the marker is derived from the fixtures that start such programs, and
enforced where it matters: a test without the marker that starts a child process fails at that
very line, naming the program, whether it came from a fixture, a helper or the test itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = [
    "EDGE_MODULES",
    "INFRA_FIXTURES",
    "UnmarkedInfraError",
    "mark_edge_modules",
    "mark_infra_by_fixture",
    "spawns_of_unmarked_tests",
    "track_current_test",
]

# The fixtures that start a program: a test that uses one (directly or through another fixture)
# is infra without saying so.
INFRA_FIXTURES = frozenset({"pg_dsn", "redis_server", "redis_url", "fresh_redis"})


class UnmarkedInfraError(RuntimeError):
    """A test without the ``infra`` marker started a child process."""


_current: list[pytest.Item] = []
# What an unmarked test tried to start, in case the code under test swallowed the error.
spawns_of_unmarked_tests: list[tuple[str, str]] = []
_real_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]


def _guarded_execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any) -> Any:
    if _current and _current[-1].get_closest_marker("infra") is None:
        program = args if isinstance(args, str | bytes) else next(iter(args), "?")
        spawns_of_unmarked_tests.append((_current[-1].nodeid, str(program)))
        raise UnmarkedInfraError(
            f"{_current[-1].nodeid} starts a child process ({program!r}) but has no "
            "'infra' marker: add @pytest.mark.infra (or the module's pytestmark), or use a "
            "fixture from tests/infra.py's INFRA_FIXTURES"
        )
    return _real_execute_child(self, args, *rest)


subprocess.Popen._execute_child = _guarded_execute_child  # type: ignore[attr-defined]


def mark_infra_by_fixture(items: list[pytest.Item]) -> None:
    """Mark every collected test that uses a program-starting fixture."""
    for item in items:
        if INFRA_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.infra)


# The infra modules the newest and lowest runs of .ci/run take beside every in-process test, in
# one pytest run (-m "not infra or edge"): they reach redis-py and asyncpg through real servers
# (redis-py's cluster client before 8.2 closed every connection on a slot move:
# test_redis_cluster). Left out: the CLI's kill, signal and fresh-interpreter tests and Chromium,
# which test processes and the browser, not a dependency's API.
EDGE_MODULES = frozenset({
    "test_redis_quota", "test_redis_lanes", "test_pg_journal", "test_journal_stores",
    "test_redis_cluster", "test_redis_sentinel",
})


def mark_edge_modules(items: list[pytest.Item]) -> None:
    """Mark every collected test of an `EDGE_MODULES` module ``edge``."""
    for item in items:
        if item.path.stem in EDGE_MODULES:
            item.add_marker(pytest.mark.edge)


@pytest.hookimpl(wrapper=True)
def track_current_test(item: pytest.Item) -> Iterator[None]:
    """Around a test's setup and call (not its teardown, where a session fixture started by an
    earlier infra test may stop its server)."""
    _current.append(item)
    try:
        return (yield)
    finally:
        _current.pop()
