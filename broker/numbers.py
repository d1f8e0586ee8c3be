"""Whole numbers as people type them, in forms, query strings and at a prompt."""

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
