"""Numbers as people type them: in forms, query strings, at a prompt and on the
command line."""

from __future__ import annotations

import re

# ASCII digits only: int() also reads other scripts' digits ("٣"), "1_000" and
# surrounding spaces. At most 19 digits, a 64-bit column's worth: int() raises
# on more than 4,300, which would surface as a 500.
_WHOLE = re.compile(r"-?[0-9]{1,19}")


def ascii_int(text: str) -> int | None:
    """The whole number `text` writes in ASCII digits (an optional minus, at most
    19 digits), or None. Range checks are the caller's."""
    return int(text) if _WHOLE.fullmatch(text) else None


# ASCII digits only, for the same reasons: float() also takes "1e3", "nan" and
# "inf", which nobody types into a share or a percentage on purpose. A comma is
# a decimal point too, as German administrators write it.
_DECIMAL = re.compile(r"[0-9]{1,3}(?:[.,][0-9]{1,12})?")


def ascii_decimal(text: str) -> float | None:
    """The non-negative decimal `text` writes in ASCII digits (at most three
    before the point, a dot or a comma), or None. Range checks are the caller's."""
    return float(text.replace(",", ".")) if _DECIMAL.fullmatch(text) else None
