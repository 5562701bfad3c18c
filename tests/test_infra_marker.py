"""The quick loop starts no program: a test without the ``infra`` marker that starts a child
process fails at that line (tests/infra.py); one with the marker may."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from .infra import (
    EDGE_MODULES,
    INFRA_FIXTURES,
    UnmarkedInfraError,
    mark_edge_modules,
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
    def __init__(self, *fixturenames: str, path: Path = Path("tests/test_x.py")) -> None:
        self.fixturenames = fixturenames
        self.path = path
        self.markers: list[pytest.MarkDecorator] = []

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.markers.append(marker)


@pytest.mark.parametrize("fixture", sorted(INFRA_FIXTURES))
def test_a_test_using_a_program_starting_fixture_is_marked(fixture: str) -> None:
    uses, plain = _Item("tmp_path", fixture), _Item("tmp_path", "make_client")
    mark_infra_by_fixture([uses, plain])  # type: ignore[list-item]
    assert [m.name for m in uses.markers] == ["infra"]
    assert plain.markers == []


def test_every_edge_module_is_a_test_module_of_the_suite() -> None:
    here = Path(__file__).parent
    assert EDGE_MODULES
    assert [name for name in sorted(EDGE_MODULES) if not (here / f"{name}.py").is_file()] == []


def test_the_tests_of_an_edge_module_are_marked_edge_and_no_other() -> None:
    """The newest and lowest runs of .ci/run take ``-m "not infra or edge"``."""
    name = sorted(EDGE_MODULES)[0]
    edge, other = _Item(path=Path(f"tests/{name}.py")), _Item(path=Path("tests/test_cli.py"))
    mark_edge_modules([edge, other])  # type: ignore[list-item]
    assert [m.name for m in edge.markers] == ["edge"]
    assert other.markers == []
