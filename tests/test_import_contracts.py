"""#17: the import contracts and the paths in ``pyproject.toml`` are derived, not hand-kept lists.

``lint-imports`` checks the contracts; these tests check that the contracts cover what they
must. The layers contract is ``exhaustive`` (import-linter then fails on a top-level module of
``ryze_async`` in no layer); the campaign's contract forbids every module of the client core's
layer but the few the campaign may use, so a core module added tomorrow is forbidden to it
from its first day. And every file, folder and module that ``pyproject.toml`` names exists.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "ryze_async"
PYPROJECT = ROOT / "pyproject.toml"
#: The client core's modules the campaign may import directly: the public-path decorator and the
#: one redaction of a URL's password. Everything else of the core only through ``ryze_async``.
CAMPAIGN_MAY_USE = frozenset({"_public", "_urls"})


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def _contract(kind: str, source: str | None = None) -> dict[str, Any]:
    found = [c for c in _contracts() if c["type"] == kind
             and (source is None or c.get("source_modules") == [source])]
    assert len(found) == 1, f"expected one {kind} contract on {source}, found {len(found)}"
    return found[0]


def top_level(package: Path = PACKAGE) -> set[str]:
    """The modules and packages directly in ``package`` (``__init__`` is the package itself)."""
    return {path.stem for path in package.iterdir()
            if (path.suffix == ".py" and path.stem != "__init__")
            or (path.is_dir() and (path / "__init__.py").exists())}


def _layer_members(layer: str) -> set[str]:
    return {name.strip() for name in re.split(r"[:|]", layer)}


def _core_layer() -> set[str]:
    return _layer_members(_contract("layers")["layers"][-1])


def test_the_layers_contract_is_exhaustive_and_names_every_top_level_module() -> None:
    contract = _contract("layers")
    assert contract["containers"] == ["ryze_async"]
    assert contract.get("exhaustive") is True  # import-linter fails on a module in no layer
    layered = set().union(*map(_layer_members, contract["layers"]))
    assert top_level() - layered == set(), "put these in a layer of pyproject.toml"
    assert layered - top_level() == set(), "these layers name no module"


def test_the_campaign_is_forbidden_every_core_module_but_the_few_it_may_use() -> None:
    forbidden = {m.removeprefix("ryze_async.")
                 for m in _contract("forbidden", "ryze_async._campaign")["forbidden_modules"]}
    assert _core_layer() >= CAMPAIGN_MAY_USE
    assert forbidden == _core_layer() - CAMPAIGN_MAY_USE


#: A path as pyproject.toml writes one: a file with an extension, or anything with a slash.
_PATH = re.compile(r"(?<![\w./:@-])(\.?[\w-]+(?:/[\w.*-]+)+|[\w-]+(?:\.[\w-]+)*\.(?:py|md|toml"
                   r"|ya?ml|lock|in|txt|cfg|json))(?![\w/])")
_MODULE = re.compile(r"(?<![\w./-])ryze_async(?:\.\w+)+")


def named_paths(text: str) -> set[str]:
    """Every path the text names (globs included), comments too."""
    return {path.rstrip(".") for path in _PATH.findall(text)}  # a sentence's full stop


def _exists(path: str) -> bool:
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


def _module_exists(name: str) -> bool:
    """A module, or an attribute defined at the top of one (``ryze_async.otel.SomeClass``)."""
    parts = name.split(".")
    base = ROOT.joinpath(*parts)
    if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
        return True
    parent = ROOT.joinpath(*parts[:-1])
    source = parent.with_suffix(".py") if parent.with_suffix(".py").exists() else (
        parent / "__init__.py")
    return source.exists() and re.search(
        rf"^(class|def|async def) {parts[-1]}\b|^{parts[-1]}\b.*=",
        source.read_text(encoding="utf-8"), re.MULTILINE) is not None


def test_every_path_and_module_pyproject_names_exists() -> None:
    text = PYPROJECT.read_text(encoding="utf-8")
    include = tomllib.loads(text)["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    missing = sorted(p for p in named_paths(text) | set(include) if not _exists(p))
    missing += sorted(m for m in set(_MODULE.findall(text)) if not _module_exists(m))
    assert missing == []


@pytest.mark.parametrize(("text", "paths"), [
    ('readme = "README.md"', {"README.md"}),
    ("# made in ryze_async/_gone.py, see tests/**.", {"ryze_async/_gone.py", "tests/**"}),
    ("# .ci/docs runs it; pip install -e '.[dev]'", {".ci/docs"}),
    ('redis = ["redis>=5.0.1"]  # 5.0.1: Redis.from_pool', set()),
    ('url = "redis://host:6379/0"', set()),
])
def test_the_path_finder_reads_paths_as_pyproject_writes_them(text: str, paths: set[str]) -> None:
    assert named_paths(text) == paths


def test_a_missing_path_or_module_is_seen() -> None:
    assert not _exists("ryze_async/_gone.py")
    assert not _module_exists("ryze_async._gone")
    assert not _module_exists("ryze_async.otel.NoSuchHooks")
    assert _module_exists("ryze_async._cli._commands")
    assert _module_exists("ryze_async.otel.OpenTelemetryHooks")
