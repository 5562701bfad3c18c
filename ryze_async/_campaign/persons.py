"""How a campaign reads its numbers: the client's rules, and a stored form that reads the same."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from .. import InvalidRequestError, normalize_number

__all__ = [
    "Numeric", "Untrusted", "entry_text", "number_normalizer", "person_key", "whole_number",
]

NumberCheck = Literal["valid", "possible"]
#: E.164 numbers have at most 15 digits; a float holds 15 significant digits exactly.
_MAX_NUMBER = 10**15
_PERSONAL_JID = "@s.whatsapp.net"
# A Brazilian mobile's WhatsApp id from before the ninth digit: 55, an area code (DDD; the set
# libphonenumber's metadata for BR knows), 8 digits in an old mobile range (6 to 9). Since the
# ninth digit (2012-2016) mobiles are 9 + 8 digits, so such an id is the mobile with the 9 put
# back. Not merged: 2-5 (fixed lines, assigned today; 55 11 2345-6789 is not 55 11 9 2345-6789).
# 7 is ambiguous (an old mobile range, and some 8-digit 7 numbers are still assigned): merged,
# because this key also decides who an opt-out list names, and a missed call is the lesser harm
# than a call to someone who opted out (the second entry is skipped as a duplicate, never called).
_BR_OLD_MOBILE = re.compile(
    r"55((?:[14689][1-9]|2[12478]|3[1-578]|5[13-5]|7[13-579]))([6-9]\d{7})")


class Untrusted(str):
    """A typed value (an Excel cell, a JSON number) whose digits are not exactly what the user
    wrote: its text as found, and why. Invalid at ingest with that reason, never normalised
    (``"551190000000.5"`` read as text would be the number 5511900000005)."""

    reason: str

    def __new__(cls, text: str, reason: str) -> Untrusted:
        self = super().__new__(cls, text)
        self.reason = reason
        return self


class Numeric(str):
    """The digits of a number typed as a number (an Excel cell, a JSON int): any leading zero
    is gone, so read in a region they are checked against the same digits with one."""


def entry_text(cell: str) -> str:
    """A cell as an entry's raw text: stripped, a typed value kept as it is."""
    return cell if isinstance(cell, Untrusted | Numeric) else cell.strip()


def whole_number(value: int, what: str) -> str:
    """A non-negative integer's digits, or :class:`Untrusted` when they cannot be a number the
    user typed (``what`` names where it came from: "an Excel number", "a JSON number")."""
    if value < 0:
        return Untrusted(str(value), f"{what} that is negative ({value}): not a phone number")
    if value >= _MAX_NUMBER:
        return Untrusted(str(value), f"{what} with more than 15 digits: no phone number is "
                         "that long, and a float does not keep them exactly; store numbers "
                         "as text")
    return Numeric(str(value))


def _same_with_zero(digits: str, number: str, region: str, check: NumberCheck) -> None:
    """Refuse typed digits that are another valid number with the leading zero a typed number
    drops (Gabon's 06 03 12 34 typed as 6031234: +241 6031234 is someone else)."""
    try:
        other = normalize_number("0" + digits, default_region=region, number_check=check)
    except InvalidRequestError:
        return
    if other != number:
        raise InvalidRequestError(
            f"{digits} was typed as a number, which drops a leading zero: as {digits} it is "
            f"+{number}, as 0{digits} +{other} in {region}; store the numbers as text",
            field="number")


def number_normalizer(
    default_region: str | None = None, number_check: NumberCheck = "valid"
) -> Callable[[str], str]:
    """``normalize_number`` for a campaign's ingest: its result must read the same again.

    A campaign stores the wire form and the client normalises it once more when it calls, so a
    stored number must read the same again: with a region, a foreign number's E.164 digits may
    also be a valid national number there (+66 97 017 0001's digits are a Brazilian mobile).
    Such an entry is refused at ingest, before anyone could be called in the wrong country.
    """

    def normalize(raw: str) -> str:
        if isinstance(raw, Untrusted):
            raise InvalidRequestError(raw.reason, field="number")
        number = normalize_number(raw, default_region=default_region, number_check=number_check)
        if isinstance(raw, Numeric) and default_region is not None:
            _same_with_zero(raw, number, default_region, number_check)
        if "@" not in number:
            again = normalize_number(number, default_region=default_region,
                                     number_check=number_check)
            if again != number:
                raise InvalidRequestError(
                    f"number {raw!r} is +{number}, but its digits {number} read as +{again} in "
                    f"{default_region}, and a campaign stores the digits: run numbers of other "
                    "countries in a campaign without a default region",
                    field="number",
                )
        return number

    return normalize


def person_key(number: str) -> str:
    """The person a normalised number names, as one key: the digits, whether written as a
    number or as a personal JID, and a Brazilian mobile's old id without the ninth digit as
    the mobile (``551187654321@s.whatsapp.net`` is ``5511987654321``). The one rule for "the
    same person": the journal's dedupe and the opt-out lists both use it. Other addresses
    (``@lid``) keep their domain: they are no phone number."""
    digits = number.removesuffix(_PERSONAL_JID)
    old = _BR_OLD_MOBILE.fullmatch(digits)
    return f"55{old[1]}9{old[2]}" if old else digits
