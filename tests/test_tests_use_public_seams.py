"""#8: the tests reach the client core only through its public API and documented seams.

A test that imports ``ryze_async._quota.shared`` (say) pins an implementation detail: it breaks
when the code is reshaped and keeps passing when the behaviour users rely on breaks. The client
core is tested through ``ryze_async`` and ``ryze_async.testing`` (``MockTransport``,
``FakeRyzeServer``, ``run_virtual``) and the hooks. Campaign and CLI private modules are not the
client core and stay allowed. Module names in strings (start-up tests) are not imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
PACKAGE = TESTS.parent / "ryze_async"
#: Every private module and package of ``ryze_async`` but the campaign, the CLI and the version:
#: derived, so a new core module is guarded from the day it is added.
CLIENT_CORE = frozenset(
    path.stem for path in PACKAGE.iterdir()
    if path.name.startswith("_") and not path.name.startswith("__")
    and (path.suffix == ".py" or (path / "__init__.py").exists())
) - {"_campaign", "_cli", "_version"}


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an import statement names, ``from a import b`` giving ``a`` and ``a.b``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def core_imports(source: str) -> list[str]:
    """``line: module`` for each import of a client-core private module in ``source``."""
    bad = []
    for line, module in _imported_modules(ast.parse(source)):
        parts = module.split(".")
        if parts[0] == "ryze_async" and len(parts) > 1 and parts[1] in CLIENT_CORE:
            bad.append(f"{line}: {module}")
    return bad


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.py")), ids=lambda p: p.name)
def test_no_test_imports_a_private_module_of_the_client_core(path: Path) -> None:
    assert core_imports(path.read_text(encoding="utf-8")) == []


def test_the_core_is_derived_from_the_package() -> None:
    assert {"_client", "_retry", "_quota", "_transports", "_cancels"} <= CLIENT_CORE
    assert not {"_campaign", "_cli", "__init__", "__main__"} & CLIENT_CORE


@pytest.mark.parametrize("source", [
    "from ryze_async._quota.shared import shared_limiter",
    "from ryze_async import _answers",
    "import ryze_async._transports._aiohttp",
    "import ryze_async._client as c",
    "def f():\n    from ryze_async._config import Secret\n",
    "from ryze_async._hooks import HookDispatch",
])
def test_the_guard_sees_each_form_of_import(source: str) -> None:
    assert core_imports(source) != []


@pytest.mark.parametrize("source", [
    "from ryze_async import QuotaLimiter, RyzeClient",
    "from ryze_async.testing import MockTransport, run_virtual",
    "from ryze_async import RedisQuota",  # public since #9.1 (the shared quota)
    "from ryze_async.testing import RedisServer",
    "from ryze_async._campaign.journal import JournalStore",
    "from ryze_async._cli import main",
    "MODULES = ['ryze_async._client', 'ryze_async._quota']",
    "from ._quota import x",
])
def test_the_guard_allows_the_public_api_and_other_private_parts(source: str) -> None:
    assert core_imports(source) == []
