"""How a campaign reads its numbers: the client's rules, and a stored form that reads the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from .. import InvalidRequestError, normalize_number

__all__ = ["number_normalizer"]

NumberCheck = Literal["valid", "possible"]

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
        number = normalize_number(raw, default_region=default_region, number_check=number_check)
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
