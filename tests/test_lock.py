"""The README's test command installs the locked set: pyproject.toml's ``dev`` extra is the
exact pins of requirements/dev.lock, and the lock was made from today's requirements
(``python scripts/lock.py`` rewrites both)."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dev_extra_is_the_locked_set_pinned_exactly() -> None:
    lock = _lock_script()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = lock.pins((ROOT / "requirements" / "dev.lock").read_text())
    assert len(locked) > 40  # the whole closure, not a handful
    assert pyproject["project"]["optional-dependencies"]["dev"] == locked, (
        "the dev extra and requirements/dev.lock disagree: run python scripts/lock.py"
    )


def test_the_lock_was_made_from_todays_requirements() -> None:
    lock = _lock_script()
    recorded = lock.recorded_digest((ROOT / "requirements" / "dev.lock").read_text())
    assert recorded == lock.inputs_digest(ROOT), (
        "pyproject.toml's dependencies or requirements/dev.in changed since the lock was made: "
        "run python scripts/lock.py"
    )


def test_every_requirement_of_the_library_has_a_lower_bound_that_ci_tests() -> None:
    lock = _lock_script()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for name, rs in lock.user_extras(ROOT).items() if name not in lock._RUNNER_EXTRAS
              for r in rs]
    tested = {pin.split("==")[0] for pin in lock.lowest(ROOT)}
    names = {lock._normalized(re.split(r"[\[<>=!~;\s]", r)[0]) for r in
             [*project["dependencies"], *extras]}
    assert names <= {lock._normalized(name) for name in tested}, (
        "a requirement without a >= lower bound: .ci/run cannot test its lowest version"
    )


def test_a_package_locked_once_per_python_version_is_read_at_this_pythons_pin() -> None:
    """The universal lock pins some packages twice, under markers (``deprecated`` for limits:
    1.3.1 below Python 3.12, 3.0.1 from it): `drift` (CI's newest run) compares with the pin for
    the running Python, or the locked set itself passes for drift and its subset runs again."""
    lock = _lock_script()
    text = ("deprecated==1.3.1 ; python_full_version < '3.12' \\\n"
            "    --hash=sha256:00\n"
            "deprecated==3.0.1 ; python_full_version >= '3.12' \\\n"
            "    --hash=sha256:11\n"
            "limits==5.8.0 \\\n"
            "    --hash=sha256:22\n")
    expected = "1.3.1" if sys.version_info < (3, 12) else "3.0.1"
    assert lock.locked_versions(text) == {"deprecated": expected, "limits": "5.8.0"}
