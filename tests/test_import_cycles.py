"""#17: no import cycles between the package's modules, function-local imports included.

Every ``import`` and ``from ... import`` of every module counts, at any depth (a function-local
import runs too, only later), relative ones resolved; those under ``if TYPE_CHECKING:`` never
run and do not count. An import of the package root (``from ryze_async import RyzeClient``)
counts as an edge to the module each name really lives in (``ryze_async._EXPORTS``), since the
root's lazy ``__getattr__`` imports it then; ARCHITECTURE.md ("Import cycles") says why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ryze_async

PACKAGE = Path(ryze_async.__file__).parent
ROOT = "ryze_async"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` that can run: all but ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:  # the ``else:`` of TYPE_CHECKING does run
                if isinstance(other, ast.Import | ast.ImportFrom):
                    yield other
                yield from _runtime_imports(other)
        else:
            yield from _runtime_imports(child)


def _known(name: str) -> str | None:
    """The package's module ``name`` stands for (``a.b.C`` names a class in ``a.b``), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {found for alias in node.names if (found := _known(alias.name))}
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    if base == ROOT:  # the root re-exports: the edge goes where each name is defined
        return {_known(_root_target(alias.name)) or ROOT for alias in node.names}
    return {found for alias in node.names if (found := _known(f"{base}.{alias.name}"))}


def _root_target(name: str) -> str:
    relative = ryze_async._EXPORTS.get(name)
    return f"{ROOT}{relative}" if relative else f"{ROOT}.{name}"


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in _runtime_imports(tree):
            edges |= _targets(module, node)
        graph[module] = edges - {module}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import one another (in a loop), sorted; [] when none do."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {tuple(sorted(other for other in reach[node] if node in reach[other]))
              for node in graph if node in reach[node]}
    return sorted(list(group) for group in groups)


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_walker_sees_local_relative_and_root_imports_but_not_type_checking_ones() -> None:
    graph = import_graph()
    # _client imports ._exceptions at module level, relative:
    assert "ryze_async._exceptions" in graph["ryze_async._client"]
    # ``from .. import Media`` in a campaign module reaches the name's real module:
    assert "ryze_async._media" in graph["ryze_async._campaign.engine"]
    assert ROOT not in graph["ryze_async._campaign.engine"]
    # ryze_async/__init__ imports its names only under TYPE_CHECKING (or by string, lazily:
    # those edges are the importers' own, above):
    assert graph[ROOT] == {"ryze_async._version"}


def test_the_finder_reports_a_cycle_through_a_function_local_import() -> None:
    source = "def f():\n    from . import b\n"
    tree = ast.parse(source)
    (node,) = list(_runtime_imports(tree))
    assert isinstance(node, ast.ImportFrom)
    assert node.level == 1
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n")
    assert [n.lineno for n in _runtime_imports(guarded)] == [1]
