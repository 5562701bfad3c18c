"""Destination numbers: read what people type with libphonenumber, refuse what cannot be meant.

Every number goes through ``phonenumbers`` (the maintained port of Google's libphonenumber):
hand-written digit counting sent ``(11) 99999-9999`` to country code 1.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from typing import Literal, TypedDict

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
    ValidationResult,
)

from ._exceptions import InvalidRequestError
from ._public import public

__all__ = [
    "NumberCheck", "NumberOptions", "cli_hints", "normalize_number", "number_options",
]

NumberCheck = Literal["valid", "possible"]
_CHECKS = ("valid", "possible")
# What people type in a phone number: digits (any script: libphonenumber reads them, and the
# wire form is rebuilt in ASCII), one leading "+", and separators. Letters (vanity numbers),
# extensions and "tel:" URIs are refused: the call could not dial what they add.
_PLAIN = re.compile(r"\+?[\d\s().\-\u00a0]+")
_DIGIT = re.compile(r"\d")
# How a float prints (pandas writes an int column with a gap as "4930123456.0"; Excel numbers
# with a fraction): read with the dot as a separator, the fraction's digits join the number
# (+49 30 1234560: a valid German number, someone else's). No one groups digits that way.
_FLOAT_TEXT = re.compile(r"\+?\d{7,}\.\d{1,3}")
_MAX_CHARS = 64
_E164_MAX_DIGITS = 15
# "+" and ASCII digits, as many as a country code and a national number can have: the form a
# campaign file or a bot usually holds, read without phonenumbers.parse (see _international).
_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{2,19}")
_JID_USER = re.compile(r"[0-9]{8,15}")
_LID_USER = re.compile(r"[0-9]{1,32}")
_PERSONAL_DOMAIN = "s.whatsapp.net"
# Addresses that are not one person: a call to them is refused by WhatsApp, so refuse it here.
_NOT_CALLABLE = {
    "g.us": "a group address; calls are 1:1",
    "newsletter": "a channel (newsletter) address; calls are 1:1",
    "broadcast": "a broadcast or status address; calls are 1:1",
}
# How a refusal names the options that change it: the Python keywords, or on the command line
# (inside ``cli_hints``) the flags. A process-wide choice, not a context variable: a SQLite
# journal normalises numbers on its own thread, which no context reaches.
_OPTION_WORDS = {
    "api": {"region": "default_region='BR'", "check": "number_check='possible'"},
    "cli": {"region": "--default-region BR", "check": "--number-check possible"},
}
_words = [_OPTION_WORDS["api"]]


@contextlib.contextmanager
def cli_hints() -> Iterator[None]:
    """Inside: refusals name the CLI's flags (``--number-check``), not the keywords."""
    _words.append(_OPTION_WORDS["cli"])
    try:
        yield
    finally:
        _words.pop()


def _hint() -> str:
    return ("write it with its country code (+55 11 99999-9999 or 5511999999999), or give the "
            f"country it is written for: {_words[-1]['region']} (or env RYZE_DEFAULT_REGION)")


class NumberOptions(TypedDict):
    """``normalize_number``'s keywords, as a client holds them."""

    allow_lid: bool
    default_region: str | None
    number_check: NumberCheck


def number_options(
    *, allow_lid: bool, default_region: object, number_check: object
) -> NumberOptions:
    """Checked keywords for ``normalize_number`` (``InvalidRequestError`` when one is wrong)."""
    _check_check(number_check)
    check: NumberCheck = "possible" if number_check == "possible" else "valid"
    return {"allow_lid": bool(allow_lid), "default_region": check_default_region(default_region),
            "number_check": check}


def check_default_region(region: object) -> str | None:
    """``region`` as an upper-case CLDR region code libphonenumber knows, or None."""
    if region is None:
        return None
    if not isinstance(region, str) or region.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidRequestError(
            f"default_region {region!r} is not a region code libphonenumber knows "
            "(two letters, e.g. 'BR', 'US', 'PT')",
            field="default_region",
        )
    return region.strip().upper()


def _check_check(number_check: object) -> None:
    if number_check not in _CHECKS:
        raise InvalidRequestError(
            f"number_check must be 'valid' or 'possible', not {number_check!r}",
            field="number_check",
        )


@public
def normalize_number(
    raw: str, *, allow_lid: bool = False, default_region: str | None = None,
    number_check: NumberCheck = "valid",
) -> str:
    """Return the number as the API wants it (E.164 digits, no ``+``), or raise.

    Without ``default_region`` a number must carry its country code: ``"+55 (11) 99999-9999"``
    and ``"5511999999999"`` both become ``"5511999999999"``. With ``default_region="BR"``,
    a number without ``+`` is read as libphonenumber reads it in that region (national formats
    such as ``"(11) 99999-9999"``, the region's international prefix, its own country code),
    and only when that is no valid number, as digits with their country code.
    ``number_check="valid"`` (the default) wants a number libphonenumber knows to be assigned;
    ``"possible"`` only a plausible length.

    A personal JID (``5511999999999@s.whatsapp.net``) is kept as is; it must be a possible
    number, not a valid one, because WhatsApp made it (old Brazilian mobiles keep JIDs without
    the ninth digit). Group (``@g.us``), newsletter and broadcast addresses are refused. Whether
    ``@lid`` addresses can be called is not documented, so they are refused unless
    ``allow_lid=True``.
    """
    if not isinstance(raw, str):
        raise InvalidRequestError(
            f"number must be a string, not {type(raw).__name__}", field="number"
        )
    text = raw.strip()
    if default_region is None and number_check == "valid":
        quick = _quick_e164(text)  # the usual number, decided by one pattern
        if quick is not None:
            return quick
    if not text:
        raise InvalidRequestError("number is empty", field="number")
    if "@" in text:
        return _normalize_jid(text, allow_lid=allow_lid)
    region = check_default_region(default_region)
    _check_check(number_check)
    # ASCII digits alone (a campaign's usual number) pass _PLAIN: two str tests, no regex.
    plain = text.isascii() and text.isdigit()
    if len(text) > _MAX_CHARS or not (plain or _PLAIN.fullmatch(text)):
        raise InvalidRequestError(
            f"number {raw!r} is not a phone number: only digits, one leading +, spaces, dashes, "
            "dots and parentheses are allowed",
            field="number",
        )
    if "." in text and _FLOAT_TEXT.fullmatch(text):
        raise InvalidRequestError(
            f"number {raw!r} is written like a float, with a fraction: its digits after the dot "
            "are not part of a phone number and dropping them would be a guess (a spreadsheet "
            "or pandas wrote it: store the numbers as text)",
            field="number",
        )
    return _plain_number(text, region, number_check)


@functools.lru_cache(maxsize=4096)
def _plain_number(text: str, region: str | None, check: NumberCheck) -> str:
    # Cached: parsing costs tens of microseconds, and a client calling the same numbers again
    # (or a campaign whose ingest normalised them) must not pay it per call. Errors are not cached.
    if text.startswith("+"):
        result = _e164(text, None, check)
    elif region is None:
        result = _e164("+" + text, None, check)
    else:
        # The region's reading first (national format, its international prefix, its own
        # country code): the user said numbers are written for it. Only digits that are no valid
        # number there are taken as carrying their country code (RyzeAPI's 5511999999999).
        result = _e164(text, region, check) or _e164(
            "+" + "".join(_DIGIT.findall(text)), None, check
        )
    if result is None:
        raise InvalidRequestError(_refusal(text, region, check), field="number")
    return result


def _e164(text: str, region: str | None, check: NumberCheck) -> str | None:
    reading = _international(text) if region is None else None
    if reading is not None and check == "valid":
        plan = _validity_plan(reading[0])
        if plan is not None:
            # parse's number (+code, national) formats back to the text itself: E.164 digits.
            valid = _valid_national(reading[1], plan)
            return text[1:] if valid and len(text) <= _E164_MAX_DIGITS + 1 else None
    if reading is not None:
        parsed = PhoneNumber(country_code=reading[0], national_number=int(reading[1]))
    else:
        try:
            parsed = phonenumbers.parse(text, region)
        except NumberParseException:
            return None
    if parsed.extension:
        return None
    if check == "valid":
        ok = _is_valid(parsed)
    else:
        # IS_POSSIBLE_LOCAL_ONLY (7 digits in the US, say) lacks an area code: not dialable.
        ok = phonenumbers.is_possible_number_with_reason(parsed) == ValidationResult.IS_POSSIBLE
        ok = ok and phonenumbers.region_code_for_country_code(parsed.country_code or 0) != "ZZ"
    if not ok:
        return None
    # E.164 in ASCII digits whatever script the input used; "+" dropped for the wire.
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)[1:]
    # E.164 caps a number at 15 digits; some countries' metadata (Germany's) lets longer through.
    return e164 if len(e164) <= _E164_MAX_DIGITS else None


def _international(text: str) -> tuple[int, str] | None:
    """How ``phonenumbers.parse(text, None)`` reads "+" and ASCII digits: (country calling
    code, national number); None where only parse can tell (then it decides).

    parse costs about three quarters of a new number's check, mostly in steps that change
    nothing for such a text: finding the number in free text, the extension, normalising digits
    of any script. What is left are its steps for a country code after "+": the first one to
    three digits that are a country calling code, then the national number, kept whole when the
    country's national prefix does not match its start, of 2 to 17 digits, without leading zeros
    (Italy's are parse's). A property test holds this to parse's own result.
    """
    if not _INTERNATIONAL.fullmatch(text):
        return None
    reading = _split_country(text[1:])
    if reading is None or _national_prefix(reading[0]).match(reading[1]):
        return None  # parse strips a national prefix, or keeps it, by the country's rules
    return reading


def _split_country(digits: str) -> tuple[int, str] | None:
    """ASCII ``digits`` after "+" as (country calling code, national number), as parse splits
    them: the first one to three digits that are a calling code, then 2 to 17 digits without a
    leading zero; None otherwise (parse decides)."""
    for size in (1, 2, 3):
        code = _CALLING_CODES.get(digits[:size])
        if code is not None:
            break
    else:
        return None
    national = digits[size:]
    if not 2 <= len(national) <= 17 or national[0] == "0":
        return None
    return code, national


def _quick_e164(text: str) -> str | None:
    """``text`` read as a valid number with its country code (``_e164``), without a region,
    when it is "+" and ASCII digits or those digits alone and its country has one region; else
    None, and the whole check decides. The usual number of a campaign or a bot: one pattern
    (`_quick_pattern`) instead of its steps, and no parse cache (a new number every call would
    evict one entry each). A property test holds it to libphonenumber's reading."""
    digits = text[1:] if text[:1] == "+" else text
    if not (3 <= len(digits) <= _E164_MAX_DIGITS and digits.isascii() and digits.isdigit()):
        return None
    reading = _split_country(digits)
    if reading is None:
        return None
    pattern = _quick_pattern(reading[0])
    return digits if pattern is not None and pattern.fullmatch(reading[1]) else None


@functools.cache
def _quick_pattern(code: int) -> re.Pattern[str] | None:
    """One pattern that a national number of ``code`` (ASCII digits) matches whole exactly when
    ``_international`` keeps it (the national prefix does not match its start) and
    ``_valid_national`` finds it valid: the country's general description and lengths, then
    any one kind's. None where the plan is not one region's (left to the whole check)."""
    plan = _validity_plan(code)
    prefix = _national_prefix(code)
    if plan is None or prefix is _ANY_START:
        return None
    (lengths, general), kinds = plan
    if general is None or not kinds:
        return None
    head = "" if prefix.pattern == "(?!)" else f"(?!(?:{prefix.pattern}))"
    any_kind = "|".join(f"{_lengths(sizes)}(?:{kind.pattern})\\Z" for sizes, kind in kinds)
    return re.compile(f"{head}{_lengths(lengths)}(?=(?:{general.pattern})\\Z)(?:{any_kind})")


def _lengths(sizes: frozenset[int]) -> str:
    """A look-ahead for a string of one of ``sizes`` characters ("" for any: no sizes given)."""
    if not sizes:
        return ""
    allowed = "|".join(f".{{{size}}}\\Z" for size in sorted(sizes) if size > 0)
    return f"(?={allowed or '(?!)'})"


# Every country calling code as its digits (they never start with 0): one look-up a prefix.
_CALLING_CODES = {str(code): code for code in COUNTRY_CODE_TO_REGION_CODE}
# Anything matches it: a country parse finds no metadata for is left to parse.
_ANY_START = re.compile("")


@functools.cache
def _national_prefix(code: int) -> re.Pattern[str]:
    """The national prefix parse would strip after country code ``code`` (a pattern that never
    matches when it has none); compiled once per country calling code."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        code, phonenumbers.region_code_for_country_code(code))
    if metadata is None:
        return _ANY_START
    return re.compile(metadata.national_prefix_for_parsing or "(?!)")


# A number's kinds as libphonenumber's validity checks them; mobile and fixed line first (any
# order gives the same answer: a number is valid when any kind matches).
_KINDS = ("mobile", "fixed_line", "voip", "toll_free", "premium_rate", "shared_cost",
          "personal_number", "pager", "uan", "voicemail")
# A kind's (possible lengths, compiled pattern): a number of another length, or a kind without a
# pattern, never matches.
_Desc = tuple[frozenset[int], re.Pattern[str] | None]
_Plan = tuple[_Desc, tuple[tuple[frozenset[int], re.Pattern[str]], ...]]


def _is_valid(parsed: PhoneNumber) -> bool:
    """``phonenumbers.is_valid_number(parsed)``, its country's patterns looked up and compiled
    once: a country calling code of one region (Brazil's, India's, not NANPA's +1, whose
    region is found number by number, which is left to is_valid_number)."""
    plan = _validity_plan(parsed.country_code)
    if plan is None:
        return bool(phonenumbers.is_valid_number(parsed))
    return _valid_national(phonenumbers.national_significant_number(parsed), plan)


def _valid_national(national: str, plan: _Plan) -> bool:
    size = len(national)
    (lengths, pattern), kinds = plan
    if (lengths and size not in lengths) or pattern is None or not pattern.fullmatch(national):
        return False
    for lengths, kind in kinds:  # a loop, not any(): no generator per number
        if (not lengths or size in lengths) and kind.fullmatch(national):
            return True
    return False


@functools.cache
def _validity_plan(code: int | None) -> _Plan | None:
    """The general and per-kind descriptions is_valid_number checks for ``code``, or None."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code or 0)
    if code is None or regions is None or len(regions) != 1:
        return None
    region = regions[0]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region.upper())
    if metadata is None or (region != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
                            and code != phonenumbers.country_code_for_valid_region(region)):
        return None
    # With one pattern for both, libphonenumber does not try mobile once fixed line failed.
    kinds = [kind for kind in _KINDS
             if not (kind == "mobile" and metadata.same_mobile_and_fixed_line_pattern)]
    descs = [_desc(getattr(metadata, kind)) for kind in kinds]
    # A kind without a pattern, or whose only length is libphonenumber's -1 ("no numbers of
    # this kind"), never matches: left out, a valid mobile number is one pattern from its answer.
    useful = tuple((lengths, kind) for lengths, kind in descs
                   if kind is not None and lengths != frozenset({-1}))
    return _desc(metadata.general_desc), useful


def _desc(desc: phonenumbers.PhoneNumberDesc | None) -> _Desc:
    if desc is None:
        return frozenset(), None
    pattern = desc.national_number_pattern
    return frozenset(desc.possible_length or ()), re.compile(pattern) if pattern else None


@functools.lru_cache(maxsize=4096)
def _possible_jid_user(user: str) -> bool:
    return _e164("+" + user, None, "possible") == user


def _refusal(text: str, region: str | None, check: NumberCheck) -> str:
    what = "valid" if check == "valid" else "possible"
    where = f" in {region} or" if region is not None else ""
    head = f"number {text!r} is not a phone number {what}{where} with its country code"
    digits = "".join(_DIGIT.findall(text))
    if not text.startswith("+") and digits.startswith("00") and len(digits) > 4:
        # 00 is the international prefix of most countries, not part of the number: a looser
        # check would not help (and might accept someone else's number). Say how to write it.
        return (f"{head}: it starts with the international prefix 00; write a + instead "
                f"(+{digits[2:]})")
    if region is None:
        return f"{head}: {_hint()}"
    return (f"{head} ({_words[-1]['check']} also accepts numbers libphonenumber does not know "
            "as assigned)")


def _normalize_jid(text: str, *, allow_lid: bool) -> str:
    user, _, domain = text.rpartition("@")
    domain = domain.lower()
    if domain in _NOT_CALLABLE:
        raise InvalidRequestError(f"{text!r} is {_NOT_CALLABLE[domain]}", field="number")
    if domain == "lid":
        if not allow_lid:
            raise InvalidRequestError(
                f"{text!r} is an @lid address; whether those can be called is undocumented "
                "(pass allow_lid=True to send it anyway)",
                field="number",
            )
        # ASCII only: str.isdigit() accepts Arabic-Indic and other digits the wire cannot carry.
        if not _LID_USER.fullmatch(user):
            raise InvalidRequestError(f"{text!r} is not a valid @lid address", field="number")
        return f"{user}@lid"
    if domain != _PERSONAL_DOMAIN:
        raise InvalidRequestError(
            f"{text!r} is not a personal WhatsApp address (expected digits@{_PERSONAL_DOMAIN})",
            field="number",
        )
    if not _JID_USER.fullmatch(user) or not _possible_jid_user(user):
        raise InvalidRequestError(
            f"{text!r} is not a personal WhatsApp address: the part before @ must be a "
            "possible phone number with its country code, 8 to 15 ASCII digits",
            field="number",
        )
    return f"{user}@{_PERSONAL_DOMAIN}"
