"""Destination numbers: normalise what people type, refuse what cannot be called 1:1."""

from __future__ import annotations

import re

from ._errors import InvalidRequestError

__all__ = ["normalize_number"]

# Separators people type inside phone numbers; anything else left over makes the number invalid.
_SEPARATORS = str.maketrans("", "", "+ -.()\t\u00a0")
_DIGITS = re.compile(r"[0-9]{8,15}")
_PERSONAL_DOMAIN = "s.whatsapp.net"
# Addresses that are not one person: a call to them is refused by WhatsApp, so refuse it here.
_NOT_CALLABLE = {
    "g.us": "a group address; calls are 1:1",
    "newsletter": "a channel (newsletter) address; calls are 1:1",
    "broadcast": "a broadcast or status address; calls are 1:1",
}


def normalize_number(raw: str, *, allow_lid: bool = False) -> str:
    """Return the number as the API wants it, or raise ``InvalidRequestError``.

    ``"+55 (11) 99999-9999"`` becomes ``"5511999999999"`` (8 to 15 digits once ``+``, spaces,
    dashes, dots and parentheses are stripped). A personal JID (``5511999999999@s.whatsapp.net``)
    is kept as is. Group (``@g.us``), newsletter and broadcast addresses are refused. Whether
    ``@lid`` addresses can be called is not documented, so they are refused unless
    ``allow_lid=True``.
    """
    if not isinstance(raw, str):
        raise InvalidRequestError(
            f"number must be a string, not {type(raw).__name__}", field="number"
        )
    text = raw.strip()
    if not text:
        raise InvalidRequestError("number is empty", field="number")
    if "@" in text:
        return _normalize_jid(text, allow_lid=allow_lid)
    digits = text.translate(_SEPARATORS)
    if not _DIGITS.fullmatch(digits):
        raise InvalidRequestError(
            f"number {raw!r} is not a phone number: expected 8 to 15 digits "
            "(+, spaces, dashes, dots and parentheses are ignored)",
            field="number",
        )
    return digits


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
        if not user.isdigit():
            raise InvalidRequestError(f"{text!r} is not a valid @lid address", field="number")
        return f"{user}@lid"
    if domain != _PERSONAL_DOMAIN:
        raise InvalidRequestError(
            f"{text!r} is not a personal WhatsApp address (expected digits@{_PERSONAL_DOMAIN})",
            field="number",
        )
    if not _DIGITS.fullmatch(user):
        raise InvalidRequestError(
            f"{text!r} is not a personal WhatsApp address: "
            "the part before @ must be 8 to 15 digits",
            field="number",
        )
    return f"{user}@{_PERSONAL_DOMAIN}"
