"""The quick loop starts no program: a test without the ``infra`` marker that starts a child
process fails at that line (tests/infra.py); one with the marker may."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from .infra import (
    INFRA_FIXTURES,
    UnmarkedInfraError,
    mark_infra_by_fixture,
    spawns_of_unmarked_tests,
)


def test_an_unmarked_test_cannot_start_a_process() -> None:
    with pytest.raises(UnmarkedInfraError, match="has no 'infra' marker"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert spawns_of_unmarked_tests.pop()[1] == sys.executable


async def test_nor_an_asyncio_subprocess() -> None:
    with pytest.raises(UnmarkedInfraError):
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    assert spawns_of_unmarked_tests.pop()[1] == sys.executable


@pytest.mark.infra
def test_a_marked_test_can() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)


class _Item:
    def __init__(self, *fixturenames: str) -> None:
        self.fixturenames = fixturenames
        self.markers: list[pytest.MarkDecorator] = []

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.append(marker)


@pytest.mark.parametrize("fixture", sorted(INFRA_FIXTURES))
def test_a_test_using_a_program_starting_fixture_is_marked(fixture: str) -> None:
    uses, plain = _Item("tmp_path", fixture), _Item("tmp_path", "make_client")
    mark_infra_by_fixture([uses, plain])  # type: ignore[list-item]
    assert [m.name for m in uses.markers] == ["infra"]
    assert plain.markers == []
