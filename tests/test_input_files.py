"""#7.3: a file that is not a list of numbers is refused before any call and before a journal
exists; the number column is found by its header or given; UTF-16/UTF-8 with BOM are read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ryze_async import Campaign, CampaignSummary, InputError, InvalidRequestError, Media, RyzeClient
from ryze_async.testing import FakeRyzeServer, wav_tone

from .cli_helpers import run_cli

ServerFactory = Callable[..., Awaitable[FakeRyzeServer]]
MEDIA = Media.from_bytes(wav_tone(0.1))
A, B = "5511900000001", "5511900000002"


@pytest.fixture
async def server(ryze_server_factory: ServerFactory) -> FakeRyzeServer:
    return await ryze_server_factory(rate_limit=None)


def dialed(server: FakeRyzeServer) -> list[str]:
    return [r.json["number"] for r in server.requests if r.route in ("audio", "fake")]


async def run(server: FakeRyzeServer, path: Path, **kw: Any) -> CampaignSummary:
    async with RyzeClient("test-token", "my-instance", base_url=server.url,
                          rate_limit=None) as client:
        return await Campaign(client, path, journal=path.with_suffix(".db"), media=MEDIA,
                              **kw).run()


GOOD = {
    "name-phone": (b"name,phone\nAna,+55 11 90000-0001\nBia,5511900000002\n", None),
    "phone-number-header": (f"Name;Phone Number;Notes\nAna;{A};x\nBia;{B};y\n".encode(), None),
    "whatsapp-col": (f"id,WhatsApp\n1,{A}\n2,{B}\n".encode(), None),
    "telefone-accents": (f"Nome,Telefone Célula\nAna,{A}\nBia,{B}\n".encode(), None),
    "utf16-bom": ("\ufeffnome,celular\nAna,5511900000001\r\nBia,5511900000002\r\n"
                  .encode("utf-16-le"), None),
    "utf16be-bom": (f"\ufeffmsisdn\n{A}\n{B}\n".encode("utf-16-be"), None),
    "utf8-bom": (f"\ufeffnumber\n{A}\n{B}\n".encode(), None),
    "no-header-single": (f"{A}\n{B}\n".encode(), None),
    "no-header-two-cols": (f"{A},Ana\n{B},Bia\n".encode(), None),
    "no-header-keyword-in-data": (f"{A},cell\n{B},phone\n".encode(), None),
    "column-name": (f"a,b,c\nx,{A},y\nx,{B},y\n".encode(), "B"),
    "column-index": (f"a,b,c\nx,{A},y\nx,{B},y\n".encode(), 2),
    "column-index-no-header": (f"x,{A}\ny,{B}\n".encode(), 2),
}


@pytest.mark.parametrize("name", sorted(GOOD))
async def test_number_column_and_encodings(
    server: FakeRyzeServer, tmp_path: Path, name: str
) -> None:
    data, column = GOOD[name]
    path = tmp_path / "numbers.csv"
    path.write_bytes(data)
    summary = await run(server, path, column=column)
    assert sorted(dialed(server)) == [A, B]
    assert (summary.placed, summary.invalid) == (2, 0)


BAD = {
    "empty": (b"", "no numbers"),
    "blank-and-comments": (b"\n# nothing\n\n", "no numbers"),
    "header-only": (b"name,phone\n", "header and no numbers"),
    "xlsx": (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4, "spreadsheet"),
    "binary-nul": (b"5511900000001\n\x00\x01\x02\x00binary\n", "NUL"),
    "utf16-no-bom": (f"number\n{A}\n".encode("utf-16-le"), "NUL"),
    "latin1": ("nome,telefone\nJoão,5511900000001\n".encode("latin-1"), "not UTF-8"),
    "undecodable-deep": (f"number\n{A}\n".encode() * 5000 + b"\xff\xfe\xfa\n", "not UTF-8"),
    "no-number-column": (b"name,email,city\nAna,a@x,Rio\n", "'name', 'email', 'city'"),
    "unknown-column": (f"number\n{A}\n".encode(), "no column 'mobile'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
async def test_not_a_list_of_numbers_is_refused_before_anything(
    server: FakeRyzeServer, tmp_path: Path, name: str
) -> None:
    data, message = BAD[name]
    path = tmp_path / "numbers.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=message) as info:
        await run(server, path, column="mobile" if name == "unknown-column" else None)
    assert isinstance(info.value, InvalidRequestError)
    assert not path.with_suffix(".db").exists(), "a journal was left behind"
    assert server.requests == []


async def test_all_invalid_ends_saying_nothing_could_be_called(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text("phone\n123\nabc-not-a-number\n")
    summary = await run(server, path)
    assert server.requests == []
    assert (summary.invalid, summary.placed) == (2, 0)
    assert "no entry" in summary.message


async def _cli(server: FakeRyzeServer, tmp_path: Path, data: bytes, *extra: str) -> tuple[
    int, str, str, Path
]:
    path = tmp_path / "numbers.csv"
    path.write_bytes(data)
    journal = tmp_path / "campaign.db"
    env = {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
           "RYZE_BASE_URL": server.url}
    code, out, err = await run_cli(
        ["campaign", str(path), "--fake", "--journal", str(journal), "--rate-limit", "100000",
         "--rate-period", "1", *extra], env)
    return code, out, err, journal


@pytest.mark.parametrize("name", ["xlsx", "no-number-column", "header-only", "empty"])
async def test_cli_refuses_with_exit_2_no_traceback_no_journal(
    server: FakeRyzeServer, tmp_path: Path, name: str
) -> None:
    code, out, err, journal = await _cli(server, tmp_path, BAD[name][0])
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert BAD[name][1] in err
    assert not journal.exists()
    assert server.requests == []


async def test_cli_all_invalid_exits_1_and_column_option(
    server: FakeRyzeServer, tmp_path: Path
) -> None:
    code, _, err, _ = await _cli(server, tmp_path, b"phone\n123\nnope\n")
    assert code == 1, err
    assert server.requests == []
    (tmp_path / "campaign.db").unlink()
    code, _, err, _ = await _cli(server, tmp_path, f"a,b\nx,{A}\n".encode(), "--column", "2")
    assert code == 0, err
    assert dialed(server) == [A]
