"""Who gets called: numbers are read with libphonenumber, in the country the user meant (#7.2).

The fake server's record is the oracle: a refused number sends nothing; an accepted one arrives
as E.164 digits without ``+``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ryze_async import Campaign, InvalidRequestError, RyzeClient, normalize_number
from ryze_async._cli._demo import demo_numbers
from ryze_async.testing import FakeRyzeServer, wav_tone

from .cli_helpers import run_cli
from .conftest import ClientFactory

ARABIC_INDIC = str.maketrans("0123456789", "".join(chr(0x660 + d) for d in range(10)))
FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


@pytest.mark.parametrize(
    "raw",
    [
        "(11) 99999-9999",  # national: was sent as 11999999999, country code 1
        "11999999999",
        "0055 11 99999-9999",  # was sent as 005511999999999
        "00 55 11 99999-9999",
        "12345678",
        "551199999999",  # a Brazilian mobile without its ninth digit
    ],
)
async def test_numbers_without_a_valid_country_code_send_nothing(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, raw: str
) -> None:
    client = make_client(ryze_server)
    with pytest.raises(InvalidRequestError) as info:
        await client.fake_call(raw)
    assert info.value.field == "number"
    message = str(info.value)
    # An international prefix is told to become a "+" (#15); the rest, to give the country.
    hint = "write a + instead (+55" if raw.startswith("00") else "default_region='BR'"
    assert hint in message
    assert "--default-region" not in message  # the API names its keyword, the CLI its flag
    assert ryze_server.requests == []


@pytest.mark.parametrize(
    ("raw", "region", "wire"),
    [
        ("(11) 99999-9999", "BR", "5511999999999"),
        ("11 99999-9999", "br", "5511999999999"),
        ("011 99999 9999", "BR", "5511999999999"),  # trunk prefix 0
        ("015 11 99999 9999", "BR", "5511999999999"),  # trunk 0 + carrier 15
        ("0015 55 11 99999 9999", "BR", "5511999999999"),  # IDD 00 + carrier 15
        ("5511999999999", "BR", "5511999999999"),  # the region's own country code
        ("+55 11 99999-9999", "US", "5511999999999"),
        ("011 55 11 99999-9999", "US", "5511999999999"),  # the US IDD is 011
        ("(650) 253-0000", "US", "16502530000"),
        ("1 650 253 0000", "US", "16502530000"),
        ("06 1234 5678", "IT", "390612345678"),  # Italian leading zero kept
        ("442079460958", "BR", "442079460958"),  # no valid BR reading: digits + country code
    ],
)
async def test_a_default_region_reads_national_formats(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, raw: str, region: str, wire: str
) -> None:
    assert normalize_number(raw, default_region=region) == wire
    client = make_client(ryze_server, default_region=region)
    await client.fake_call(raw)
    assert [r.json for r in ryze_server.requests] == [{"number": wire}]


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        # libphonenumber reads Brazil's international prefix as 00 + a carrier code: "0055" is
        # carrier 55, so this is +1 1999999999, which is not valid: refused, never dialled.
        ("0055 11 99999-9999", "BR"),
        ("00 55 11 99999-9999", "US"),  # 00 is no international prefix in the US
        ("(11) 9999-999", "BR"),
    ],
)
def test_what_phonenumbers_does_not_read_as_valid_is_refused(raw: str, region: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"not a phone number valid in {region}"):
        normalize_number(raw, default_region=region)


def test_the_region_reading_wins_over_the_digits() -> None:
    # 66970170001 is a Mato Grosso mobile in Brazil and also +66 97 017 0001 in Thailand.
    assert normalize_number("66970170001", default_region="BR") == "5566970170001"
    assert normalize_number("66970170001") == "66970170001"
    assert normalize_number("+66 97 017 0001", default_region="BR") == "66970170001"


async def test_a_campaign_refuses_a_number_whose_digits_read_differently_in_the_region(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    # A campaign stores the wire digits, and 66970170001 read in BR is a Brazilian mobile: the
    # Thai entry is refused at ingest, never dialled in the wrong country.
    entries = ["(11) 99999-9999", "+44 20 7946 0958", "+66 97 017 0001"]
    client = make_client(ryze_server, default_region="BR")
    outcomes = {o.line: o async for o in Campaign(client, entries, journal=tmp_path / "j.db",
                                                  fake=True)}
    assert [outcomes[line].state for line in (1, 2, 3)] == ["placed", "placed", "failed"]
    refused = outcomes[3]
    assert not refused.sent
    assert refused.error is not None
    assert "read as +5566970170001 in BR" in refused.error
    dialled = sorted(r.json["number"] for r in ryze_server.requests if r.json)
    assert dialled == ["442079460958", "5511999999999"]

    ryze_server.reset()  # without a region the same digits are the Thai number again
    plain = make_client(ryze_server)
    summary = await Campaign(plain, entries[2:], journal=tmp_path / "k.db", fake=True).run()
    assert summary.placed == 1
    assert [r.json["number"] for r in ryze_server.requests if r.json] == ["66970170001"]


def test_possible_accepts_unassigned_numbers_valid_does_not() -> None:
    old_mobile = "551199999999"  # 10 digits after 55: a possible length, not a valid mobile
    with pytest.raises(InvalidRequestError):
        normalize_number(old_mobile)
    assert normalize_number(old_mobile, number_check="possible") == old_mobile
    # "Possible" still wants a full number: a US number without its area code is refused.
    with pytest.raises(InvalidRequestError):
        normalize_number("+1 253 0000", number_check="possible")
    with pytest.raises(InvalidRequestError, match="number_check"):
        normalize_number(old_mobile, number_check="loose")  # type: ignore[arg-type]


def test_jids_are_checked_as_possible_numbers() -> None:
    # WhatsApp made the JID: an old Brazilian mobile keeps one without the ninth digit.
    jid = "551199999999@s.whatsapp.net"
    assert normalize_number(jid) == jid
    fullwidth = "5511999999999".translate(FULLWIDTH)
    arabic = "5511999999999".translate(ARABIC_INDIC)
    for bad in ("0551199999999@s.whatsapp.net", "999999999@s.whatsapp.net",
                f"{fullwidth}@s.whatsapp.net", f"{arabic}@s.whatsapp.net"):
        with pytest.raises(InvalidRequestError):
            normalize_number(bad)


def test_lid_addresses_take_ascii_digits_only() -> None:
    assert normalize_number("555@lid", allow_lid=True) == "555@lid"
    bad_lids = ("555".translate(ARABIC_INDIC), "555".translate(FULLWIDTH), "5 5", "", "\u00b2")
    for bad in (f"{user}@lid" for user in bad_lids):
        with pytest.raises(InvalidRequestError, match="not a valid @lid"):
            normalize_number(bad, allow_lid=True)


def test_other_scripts_digits_are_the_same_number_in_ascii_on_the_wire() -> None:
    assert normalize_number("+55 11 99999-9999".translate(ARABIC_INDIC)) == "5511999999999"
    assert normalize_number("+55 11 99999-9999".translate(FULLWIDTH)) == "5511999999999"


@pytest.mark.parametrize(
    "raw",
    ["+55 11 FLOWERS", "tel:+5511999999999", "+5511999999999;ext=3", "+55 11 99999-9999 x12",
     "+55 11 99999-9999 ext. 3", "5511999999999/1", "++5511999999999", "55+11999999999",
     "+" + "9" * 80],
)
def test_letters_extensions_and_uris_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequestError, match="not a phone number"):
        normalize_number(raw)


def test_the_client_takes_its_region_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RYZE_DEFAULT_REGION", " br ")
    client = RyzeClient("t", "i", rate_limit=None)
    assert client.default_region == "BR"
    assert RyzeClient("t", "i", default_region="PT").default_region == "PT"
    monkeypatch.delenv("RYZE_DEFAULT_REGION")
    assert RyzeClient("t", "i").default_region is None
    assert RyzeClient("t", "i").number_check == "valid"
    for bad in ("XX", "Brazil", "", 55):
        with pytest.raises(InvalidRequestError, match="default_region"):
            RyzeClient("t", "i", default_region=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="number_check"):
        RyzeClient("t", "i", number_check="strict")  # type: ignore[arg-type]


async def test_a_campaign_reads_national_numbers_in_the_clients_region(
    ryze_server: FakeRyzeServer, make_client: ClientFactory, tmp_path: Path
) -> None:
    source = tmp_path / "numbers.csv"
    source.write_text("number\n(11) 99999-0001\n+55 11 99999-0002\n5511999990003\n"
                      "+44 20 7946 0958\n")
    client = make_client(ryze_server, default_region="BR")
    summary = await Campaign(client, source, journal=tmp_path / "j.db", fake=True).run()
    assert summary.placed == 4
    assert sorted(r.json["number"] for r in ryze_server.requests if r.json) == [
        "442079460958", "5511999990001", "5511999990002", "5511999990003"]

    ryze_server.reset()
    plain = make_client(ryze_server)  # no region: the national entry fails, nothing dialled
    summary = await Campaign(plain, source, journal=tmp_path / "k.db", fake=True).run()
    assert (summary.placed, summary.invalid) == (3, 1)
    assert "11999990001" not in {r.json["number"] for r in ryze_server.requests if r.json}


async def test_cli_default_region(ryze_server: FakeRyzeServer) -> None:
    env = {"RYZE_TOKEN": "test-token", "RYZE_INSTANCE": "my-instance",
           "RYZE_BASE_URL": ryze_server.url}
    base = ["fake-call", "(11) 99999-9999"]
    for extra, code in (([], 2), (["--default-region", "BR"], 0)):
        got, _, err = await run_cli([*base, *extra, "--rate-limit", "100"], env)
        assert got == code, err
        if code == 2:
            assert "--default-region" in err
    assert [r.json for r in ryze_server.requests] == [{"number": "5511999999999"}]


def test_the_demo_numbers_are_valid_brazilian_mobiles() -> None:
    rows = [line.split(",")[0] for line in demo_numbers(300).splitlines()[2:]]
    valid = [normalize_number(n) for n in rows[:305]]
    assert len(set(valid)) == 300
    assert all(n.startswith("55119") for n in valid)
    assert wav_tone(0.01)


@pytest.mark.parametrize("raw", ["4930000000000000", "+4930000000000000", "49300000000000000",
                                 "+49 30 0000 0000 0000 0"])
@pytest.mark.parametrize("check", ["valid", "possible"])
def test_more_than_fifteen_digits_is_no_phone_number(raw: str, check: str) -> None:
    # E.164 caps a number at 15 digits with its country code; libphonenumber's German metadata
    # lets longer ones through (found by test_property_wire).
    with pytest.raises(InvalidRequestError):
        normalize_number(raw, number_check=check)  # type: ignore[arg-type]


def test_without_a_region_a_campaign_reads_each_entry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 18: the read-again check guards against a region's reading of the stored digits;
    # without a region the stored digits are E.164 and read as themselves (next test), so the
    # campaign's ingest parses each entry once, not twice.
    from ryze_async._campaign import inputs

    calls: list[str] = []

    def counting(raw: str, **options: object) -> str:
        calls.append(raw)
        return normalize_number(raw, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(inputs, "normalize_number", counting)
    assert inputs.number_normalizer()("+55 11 99999-9999") == "5511999999999"
    assert calls == ["+55 11 99999-9999"]
    calls.clear()
    assert inputs.number_normalizer("BR")("(11) 99999-9999") == "5511999999999"
    assert calls == ["(11) 99999-9999", "5511999999999"]  # with a region: read again


@pytest.mark.parametrize("check", ["valid", "possible"])
def test_stored_digits_read_as_themselves_without_a_region(check: str) -> None:
    # Why the read-again check is skipped without a region: every example number of every
    # region and type libphonenumber knows, once normalized, normalizes to itself.
    import phonenumbers

    seen = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            raw = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
            try:
                number = normalize_number(raw, number_check=check)  # type: ignore[arg-type]
            except InvalidRequestError:
                continue
            assert normalize_number(number, number_check=check) == number  # type: ignore[arg-type]
            seen += 1
    assert seen > 1000
