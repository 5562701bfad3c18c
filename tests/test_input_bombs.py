"""Hostile numbers files (issue 15, attacker pass): a workbook that expands to hundreds of MB,
a line of a gigabyte. Each is refused with exit 2 before a journal exists, with memory bounded:
the CLI's peak RSS on the bomb is measured (a real process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ryze_async import InputError
from ryze_async._campaign.inputs.csv import inspect_csv
from ryze_async._campaign.inputs.jsonl import inspect_jsonl
from ryze_async._campaign.inputs.xlsx import XlsxReader

from .cli_helpers import run_cli

openpyxl = pytest.importorskip("openpyxl")

ROOT = Path(__file__).resolve().parent.parent
MB = 1 << 20
ENV = {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
       "RYZE_BASE_URL": "http://127.0.0.1:9"}


def workbook(path: Path, rows: list[list[object]]) -> Path:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    book.save(path)
    return path


def with_part(source: Path, target: Path, name: str, size: int, unit: bytes) -> Path:
    """`source` with its part `name` replaced by `size` bytes of repeated `unit` (deflated)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(
            target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for item in src.infolist():
            if item.filename != name:
                out.writestr(item, src.read(item.filename))
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                       b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
            chunk = unit * (MB // len(unit))
            for _ in range(size // len(chunk)):
                part.write(chunk)
            part.write(b"</sst>")
    return target


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 0.3 MB .xlsx whose shared strings expand to 250 MB (the attacker's file)."""
    folder = tmp_path_factory.mktemp("bomb")
    plain = workbook(folder / "plain.xlsx", [["number"], ["5511900000000"]])
    unit = b"<si><t>" + b"A" * 1000 + b"</t></si>"
    return with_part(plain, folder / "bomb.xlsx", "xl/sharedStrings.xml", 250 * MB, unit)


def test_the_bomb_is_small_on_disk(bomb: Path) -> None:
    assert bomb.stat().st_size < MB


@pytest.mark.infra
def test_the_cli_refuses_the_bomb_with_exit_2_before_a_journal_and_under_200_mb(
    bomb: Path, tmp_path: Path,
) -> None:
    journal = tmp_path / "j.db"
    # A wrapper process: its RUSAGE_CHILDREN is the CLI's alone (not this test run's). The CLI
    # gets 1 GiB of address space at most, so a regression fails fast instead of eating RAM.
    wrapper = (
        "import resource, subprocess, sys\n"
        "def cap():\n"
        "    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=cap,"
        " timeout=120)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(done.returncode, peak, sep='\\n')\n"
        "sys.stderr.write(done.stderr)\n"
    )
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "ryze_async", "campaign",
         str(bomb), "--journal", str(journal), "--fake"],
        capture_output=True, text=True, env=env, timeout=150, check=True)
    code, peak_kib = (int(x) for x in done.stdout.split())
    assert code == 2, (f"peak RSS {peak_kib / 1024:.0f} MB", done.stderr)
    assert "expands to" in done.stderr
    assert not journal.exists()
    assert peak_kib * 1024 < 200 * MB, f"peak RSS {peak_kib / 1024:.0f} MB"


def test_the_reader_refuses_the_bomb_before_openpyxl_parses_it(
    bomb: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("openpyxl parsed the bomb")

    monkeypatch.setattr(openpyxl, "load_workbook", never)
    with pytest.raises(InputError, match="expands to"):
        XlsxReader(bomb, None, None)


def test_a_highly_compressed_part_is_refused_even_under_the_size_limit(tmp_path: Path) -> None:
    plain = workbook(tmp_path / "plain.xlsx", [["number"], ["5511900000000"]])
    dense = with_part(plain, tmp_path / "dense.xlsx", "xl/sharedStrings.xml", 40 * MB,
                      b"<si><t>" + b"B" * 4000 + b"</t></si>")
    with pytest.raises(InputError, match="compress"):
        XlsxReader(dense, None, None)


def test_the_size_limit_can_be_raised_for_a_big_legitimate_workbook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = workbook(tmp_path / "plain.xlsx", [["number"], ["5511900000000"]])
    # Shared strings of varied text: not a bomb's ratio, only bigger than the default allows.
    big = tmp_path / "big.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as out:
        for item in src.infolist():
            out.writestr(item.filename, src.read(item.filename))
        out.writestr("xl/media/padding.bin", os.urandom(12 * MB))
    monkeypatch.setenv("RYZE_XLSX_MAX_MB", "8")
    with pytest.raises(InputError, match="RYZE_XLSX_MAX_MB"):
        XlsxReader(big, None, None)
    monkeypatch.setenv("RYZE_XLSX_MAX_MB", "64")
    XlsxReader(big, None, None).close()


def test_a_cell_longer_than_excel_allows_is_refused(tmp_path: Path) -> None:
    plain = workbook(tmp_path / "plain.xlsx", [["number"], ["5511900000000"]])
    long = tmp_path / "long.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(long, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/sharedStrings.xml" or b"<sheetData>" in data:
                data = data.replace(b"5511900000000", b"5" * 40_000)
            out.writestr(item.filename, data)
    with pytest.raises(InputError, match="32767"):
        XlsxReader(long, None, "number")


def test_a_workbook_with_more_rows_than_excel_allows_is_refused(tmp_path: Path) -> None:
    plain = workbook(tmp_path / "plain.xlsx", [["number"], ["5511900000000"]])
    many = tmp_path / "many.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(many, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if b"<sheetData>" in data:
                data = data.replace(b'<row r="2"', b'<row r="1048577"').replace(
                    b'r="A2"', b'r="A1048577"')
            out.writestr(item.filename, data)
    with pytest.raises(InputError, match="1048576"):
        XlsxReader(many, None, None)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_line_of_many_megabytes_is_refused_without_reading_it_whole(
    tmp_path: Path, kind: str,
) -> None:
    path = tmp_path / f"long.{kind}"
    head = "number\n5511900000000\n" if kind == "csv" else json.dumps(
        {"number": "5511900000000"}) + "\n"
    with path.open("w", encoding="utf-8") as f:
        f.write(head)
        f.write("5" * (3 * MB))  # no newline: one line of 3 MB
        f.write("\n")
    with pytest.raises(InputError, match="longer than"):
        (inspect_csv if kind == "csv" else inspect_jsonl)(path, None)


async def test_the_cli_refuses_a_long_line_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("number\n5511900000000\n" + "5" * (3 * MB) + "\n", encoding="utf-8")
    journal = tmp_path / "j.db"
    code, _out, err = await run_cli(["campaign", str(path), "--journal", str(journal), "--fake"],
                                   ENV)
    assert code == 2, err
    assert "longer than" in err
    assert not journal.exists()


async def test_a_quoted_field_past_the_csv_field_limit_is_the_input_s_fault(
    tmp_path: Path,
) -> None:
    # Short lines, but one quoted field that spans 4000 of them (over csv's 128 KB limit).
    path = tmp_path / "quoted.csv"
    path.write_text("number,notes\n5511900000000,ok\n5511900000001,\"" + ("x" * 60 + "\n") * 4000
                    + "\"\n", encoding="utf-8")
    code, _out, err = await run_cli(["campaign", str(path), "--journal", str(tmp_path / "j.db"),
                                    "--fake"], ENV)
    assert code == 2, err
    assert "internal error" not in err
    assert "field" in err


def test_a_row_numbered_with_letters_is_the_input_s_fault(tmp_path: Path) -> None:
    plain = workbook(tmp_path / "plain.xlsx", [["number"], ["5511900000000"]])
    odd = tmp_path / "odd.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(odd, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if b"<sheetData>" in data:
                data = data.replace(b'<row r="2"', b'<row r="two"')
            out.writestr(item.filename, data)
    with pytest.raises(InputError):
        XlsxReader(odd, None, None)
