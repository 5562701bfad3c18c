"""#17: ARCHITECTURE.md's Layout table has one row per package folder of ``ryze_async``.

The table is where a reader looks for where a part lives; a folder added, moved or removed
without its row would send them to the wrong place. Each row's first cell is one folder,
written `` `ryze_async/PATH/` ``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parent.parent
_ROW = re.compile(r"^\| *`([^`]+)` *\|", re.MULTILINE)


def package_folders(package: Path = ROOT / "ryze_async") -> set[str]:
    """Every folder of the package that is a package, as ``ryze_async/.../``."""
    return {f"{init.parent.relative_to(package.parent).as_posix()}/"
            for init in package.rglob("__init__.py")}


def layout_rows(text: str) -> list[str]:
    """The first cell of each row of the table under ``## Layout``."""
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return _ROW.findall(section)


def test_every_package_folder_has_one_row_and_every_row_is_a_folder() -> None:
    rows = layout_rows((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert [row for row, seen in Counter(rows).items() if seen > 1] == [], "one row per folder"
    folders = package_folders()
    assert folders - set(rows) == set(), "add a row to ARCHITECTURE.md's Layout table"
    assert set(rows) - folders == set(), "rows that are not package folders of ryze_async"


def test_the_reading_sees_folders_and_rows(tmp_path: Path) -> None:
    (tmp_path / "ryze_async" / "_a" / "b").mkdir(parents=True)
    for folder in ("", "_a", "_a/b"):
        (tmp_path / "ryze_async" / folder / "__init__.py").write_text("")
    (tmp_path / "ryze_async" / "_data").mkdir()  # not a package
    assert package_folders(tmp_path / "ryze_async") == {
        "ryze_async/", "ryze_async/_a/", "ryze_async/_a/b/"}
    text = ("# A\n\n## Layout\n\n| Where | What |\n|---|---|\n| `ryze_async/` | x |\n"
            "| `ryze_async/_a/` | y `z` |\n\n## Next\n\n| `ryze_async/_c/` | no |\n")
    assert layout_rows(text) == ["ryze_async/", "ryze_async/_a/"]
