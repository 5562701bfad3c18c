#!/usr/bin/env python3
"""Lock the development environment: ``python scripts/lock.py [uv pip compile options]``.

Resolves pyproject.toml's dependencies with every user extra, plus the tools of
requirements/dev.in, for every platform (``--universal``) and Python 3.11 on, into
requirements/dev.lock with the hash of every file; then writes pyproject.toml's ``dev`` extra
as the exact pins of that lock, so the README's ``pip install -e ".[dev]"`` installs the locked
versions. Without options it keeps every locked version that still fits (a new tool adds only
what it needs); ``--upgrade`` moves everything to today's releases, ``--upgrade-package NAME``
one package.

``python scripts/lock.py --lowest`` prints instead the lowest version that pyproject.toml allows
of each direct dependency (a ``>=`` bound), as pip constraints: .ci/run tests them too.
``python scripts/lock.py --drift`` prints each package installed in the running interpreter at
another version than the lock's (nothing when they agree): .ci/run names what moved.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCK = Path("requirements/dev.lock")
TOOLS = Path("requirements/dev.in")
PYTHON = "3.11"  # the lowest that requires-python allows: a universal lock from there up
_DIGEST = "# inputs-sha256: "
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+)(?:\s*;\s*(.+?))?\s*\\?$")
_DEV_EXTRA = re.compile(r"^dev = \[\n.*?^\]\n", re.MULTILINE | re.DOTALL)
# A requirement's name and its ``>=`` bound, wherever it stands among the specifiers.
_LOWER_BOUND = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:[^,]*,)*?\s*>=\s*([^,;\s]+)"
)


def _project(root: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return project


def user_extras(root: Path) -> dict[str, list[str]]:
    """Every extra but ``dev``, which this script writes."""
    extras: dict[str, list[str]] = _project(root)["optional-dependencies"]
    return {name: reqs for name, reqs in extras.items() if name != "dev"}


def inputs_digest(root: Path) -> str:
    """What the lock is made from: the library's requirements and the tools."""
    project = _project(root)
    inputs = {
        "requires-python": project["requires-python"],
        "dependencies": project["dependencies"],
        "extras": user_extras(root),
        "tools": (root / TOOLS).read_text(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock_text: str) -> str | None:
    for line in lock_text.splitlines():
        if line.startswith(_DIGEST):
            return line.removeprefix(_DIGEST).strip()
    return None


def pins(lock_text: str) -> list[str]:
    """The lock's packages as requirement strings: ``name==version`` and its marker, if any."""
    found = (_PIN.match(line) for line in lock_text.splitlines())
    return [m[1] + (f"; {m[2]}" if m[2] else "") for m in found if m]


def with_dev_extra(pyproject_text: str, requirements: list[str]) -> str:
    lines = [
        "dev = [",
        "  # Written by scripts/lock.py from requirements/dev.lock (edit requirements/dev.in):",
        "  # the exact versions CI tested, so `pip install -e \".[dev]\"` installs them.",
        *(f'  "{requirement}",' for requirement in requirements),
        "]",
    ]
    new, count = _DEV_EXTRA.subn("\n".join(lines) + "\n", pyproject_text)
    if count != 1:
        raise SystemExit("pyproject.toml: no `dev = [` extra to rewrite")
    return new


# The testing extra is the suite's own runner (pytest, pytest-asyncio): the lowest run keeps
# the lock's versions. At its lower bounds (pytest 8.2 with pytest-asyncio 0.24 to 1.0) the suite
# fails on a ResourceWarning of an unclosed event-loop socket that pytest 9 does not raise.
_RUNNER_EXTRAS = frozenset({"testing"})


def lowest(root: Path) -> list[str]:
    """``name==bound`` for every direct requirement of the library with a lower bound."""
    project = _project(root)
    extras = [r for name, rs in user_extras(root).items() if name not in _RUNNER_EXTRAS for r in rs]
    requirements = [*project["dependencies"], *extras]
    bounds = (_LOWER_BOUND.match(requirement) for requirement in requirements)
    runner = {_normalized(m[1]) for name in _RUNNER_EXTRAS
              for m in map(_LOWER_BOUND.match, user_extras(root)[name]) if m}
    locked = [pin.split(";")[0] for pin in pins((root / LOCK).read_text())]
    kept = {pin for pin in locked if _normalized(pin.split("==")[0]) in runner}
    return sorted({f"{m[1]}=={m[2]}" for m in bounds if m} | kept)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_text: str) -> dict[str, str]:
    """Each package's locked version for the running Python: the universal lock pins some
    twice, under markers (``deprecated``: one pin below Python 3.12, another from it)."""
    # Here, not at the top: --lowest runs on the system's python3, which may lack packaging;
    # this runs in a venv with pytest, which depends on it.
    from packaging.markers import Marker  # noqa: PLC0415

    locked = {}
    for pin in pins(lock_text):
        requirement, _, marker = pin.partition(";")
        if not marker or Marker(marker.strip()).evaluate():
            name, version = requirement.strip().split("==")
            locked[_normalized(name)] = version
    return locked


def drift(root: Path) -> list[str]:
    """The installed packages whose version is not the lock's, or that the lock lacks."""
    locked = locked_versions((root / LOCK).read_text())
    moved = []
    for dist in importlib.metadata.distributions():
        name = _normalized(dist.metadata["Name"])
        if name in {"pip", "setuptools", "ryze-async"} or locked.get(name) == dist.version:
            continue
        moved.append(f"{name} {dist.version} (locked: {locked.get(name, 'not in the lock')})")
    return sorted(moved)


def lock(root: Path, options: list[str]) -> None:
    extras = [arg for name in user_extras(root) for arg in ("--extra", name)]
    subprocess.run(  # noqa: S603 (this interpreter's uv, fixed arguments and the caller's)
        [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "pyproject.toml", str(TOOLS),
         *extras, "--universal", "--python-version", PYTHON, "--generate-hashes",
         "--custom-compile-command", "python scripts/lock.py", "--output-file", str(LOCK),
         *options],
        cwd=root, check=True,
    )
    lock_path = root / LOCK
    text = lock_path.read_text()
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith(_DIGEST)]
    kept.insert(2, f"{_DIGEST}{inputs_digest(root)}\n")
    lock_path.write_text("".join(kept))
    pyproject = root / "pyproject.toml"
    pyproject.write_text(with_dev_extra(pyproject.read_text(), pins(text)))


def main(argv: list[str]) -> int:
    if argv in (["--lowest"], ["--drift"]):
        found = lowest(ROOT) if argv == ["--lowest"] else drift(ROOT)
        print("\n".join(found), end="\n" if found else "")
        return 0
    lock(ROOT, argv)
    count = len(pins((ROOT / LOCK).read_text()))
    print(f"wrote {LOCK} and the dev extra of pyproject.toml ({count} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
