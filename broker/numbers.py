"""Numbers as people type them: in forms, query strings, at a prompt and on the
command line."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

# ASCII digits only: int() also reads other scripts' digits ("٣"), "1_000" and
# surrounding spaces. At most 19 digits, a 64-bit column's worth: int() raises
# on more than 4,300, which would surface as a 500.
_WHOLE = re.compile(r"-?[0-9]{1,19}")


def ascii_int(text: str) -> int | None:
    """The whole number `text` writes in ASCII digits (an optional minus, at most
    19 digits), or None. Range checks are the caller's."""
    return int(text) if _WHOLE.fullmatch(text) else None


def _written_whole(value: object) -> object:
    if isinstance(value, str) and ascii_int(value) is None:
        raise ValueError("must be a whole number written in digits")
    return value


# A whole number in a path or a query string, taken as ascii_int takes it:
# pydantic's own parsing also reads "1.0", "+1" and " 1", so that
# DELETE /schedules/1.0 would remove schedule 1.
WrittenInt = Annotated[int, BeforeValidator(_written_whole)]


# ASCII digits only, for the same reasons: float() also takes "1e3", "nan" and
# "inf", which nobody types into a share or a percentage on purpose. A comma is
# a decimal point too, as German administrators write it.
_DECIMAL = re.compile(r"[0-9]{1,3}(?:[.,][0-9]{1,12})?")


def ascii_decimal(text: str) -> float | None:
    """The non-negative decimal `text` writes in ASCII digits (at most three
    before the point, a dot or a comma), or None. Range checks are the caller's."""
    return float(text.replace(",", ".")) if _DECIMAL.fullmatch(text) else None
