"""Issue 8: ``import ryze_async`` loads only what it uses; every public name still imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ryze_async

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> object:
    """Run ``code`` in a fresh interpreter on this checkout; it prints one JSON value."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    return json.loads(done.stdout)


def _loaded_after(statement: str) -> list[str]:
    # Only what the statement loaded: coverage.py, when CI measures subprocesses, starts
    # first and loads sqlite3 itself.
    code = (f"import sys\nbefore = set(sys.modules)\n{statement}\nimport json\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    loaded = _run(code)
    assert isinstance(loaded, list)
    return [str(name) for name in loaded]


@pytest.mark.infra
def test_importing_the_package_loads_no_submodule_and_no_dependency() -> None:
    loaded = _loaded_after("import ryze_async")
    ours = [name for name in loaded if name.startswith("ryze_async")]
    assert ours == ["ryze_async", "ryze_async._version"]
    for heavy in ("aiohttp", "pydantic", "tenacity", "phonenumbers", "yarl", "sqlite3"):
        assert heavy not in loaded, heavy


@pytest.mark.infra
def test_the_testing_package_does_not_load_the_client() -> None:
    loaded = _loaded_after("import ryze_async.testing")
    for module in ("ryze_async._client", "ryze_async._campaign", "pydantic", "phonenumbers"):
        assert module not in loaded, module


@pytest.mark.infra
def test_every_public_name_imports_in_a_fresh_interpreter() -> None:
    code = (
        "import inspect, json, ryze_async\n"
        "listed = sorted(dir(ryze_async))\n"
        "got = {}\n"
        "for name in ryze_async.__all__:\n"
        "    scope = {}\n"
        "    exec(f'from ryze_async import {name}', scope)\n"
        "    obj = scope[name]\n"
        "    named = inspect.isclass(obj) or inspect.isfunction(obj)\n"
        "    got[name] = obj.__name__ if named else None\n"
        "print(json.dumps({'dir': listed, 'got': got}))"
    )
    result = _run(code)
    assert isinstance(result, dict)
    assert set(ryze_async.__all__) <= set(result["dir"])  # before any name was touched
    assert sorted(result["got"]) == sorted(ryze_async.__all__)
    for name, shown in result["got"].items():
        assert shown in (name, None), (name, shown)  # None: an alias or a value
    assert result["got"]["RyzeClient"] == "RyzeClient"


def test_every_public_name_is_the_object_its_module_defines() -> None:
    for name in ryze_async.__all__:
        assert getattr(ryze_async, name) is not None
    assert ryze_async.__all__ == sorted(ryze_async.__all__)
    assert set(ryze_async.__all__) <= set(dir(ryze_async))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'RyzeClinet'"):
        ryze_async.RyzeClinet  # noqa: B018
