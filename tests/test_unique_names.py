"""#17: no two classes or type aliases of ``ryze_async`` share a name for different things.

A reader who meets ``Call`` or ``Sender`` in a traceback, a review or a search must know which
one it is. Every module of the package is parsed (``ast``, nothing imported) and each name a
module defines at its top level (a class, or a type alias: a capitalised name assigned there,
also under ``if``/``try``) is collected; a re-export (``from x import Name``) defines nothing.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "ryze_async"
_TYPE_NAME = re.compile(r"_*[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*")  # CapWords, not CONSTANTS

def _defined(body: Iterable[ast.stmt]) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets
                        if isinstance(t, ast.Name) and _TYPE_NAME.fullmatch(t.id))
        elif isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and _TYPE_NAME.fullmatch(node.target.id):
                yield node.target.id
        elif type(node).__name__ == "TypeAlias":  # ``type X = ...`` (Python 3.12)
            yield node.name.id  # type: ignore[attr-defined]
        elif isinstance(node, ast.If | ast.Try):
            yield from _defined(node.body)
            yield from _defined(node.orelse)


def definitions(root: Path = PACKAGE) -> dict[str, list[str]]:
    """Each class or alias name: the modules that define it, sorted."""
    where: dict[str, set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        for name in _defined(ast.parse(path.read_text(encoding="utf-8")).body):
            where[name].add(module)
    return {name: sorted(modules) for name, modules in where.items()}


def duplicates(found: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: modules for name, modules in found.items() if len(modules) > 1}


def test_no_two_classes_or_aliases_share_a_name() -> None:
    clashes = duplicates(definitions())
    assert clashes == {}, "rename one of each: " + "; ".join(
        f"{name} in {', '.join(modules)}" for name, modules in sorted(clashes.items()))


def test_the_walker_sees_classes_and_aliases_not_imports_or_constants(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import Thing\nLIMIT = 3\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING, Literal\nclass Thing: ...\n"
        "Lane = Literal['a']\nif TYPE_CHECKING:\n    Alias: type = int\n"
        "def f():\n    class Local: ...\n")
    (package / "sub" / "b.py").write_text("class Thing:\n    class Inner: ...\nLane = str\n")
    found = definitions(package)
    assert duplicates(found) == {"Thing": ["pkg.a", "pkg.sub.b"], "Lane": ["pkg.a", "pkg.sub.b"]}
    assert found["Alias"] == ["pkg.a"]
    assert not {"LIMIT", "Local", "Inner", "TYPE_CHECKING"} & found.keys()
